// Package edge is the edge target: it receives writes, admits them and
// writes them to the tenants' raw Kafka topics, answering 2xx only once
// Kafka acknowledged every record.
package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/auth"
	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/kafka"
	"github.com/weir-metrics/weir/pkg/limits"
	"github.com/weir-metrics/weir/pkg/logrepeat"
	"github.com/weir-metrics/weir/pkg/record"
	"github.com/weir-metrics/weir/pkg/seriescache"
	"github.com/weir-metrics/weir/services/app"
)

// Edge is the edge target.
type Edge struct {
	cfg     *config.Config
	log     *slog.Logger
	client  *kgo.Client
	topics  *kafka.Topics
	metrics *metrics

	auth      *auth.Authenticator
	overrides *limits.Overrides
	tracker   *limits.Tracker
	runtime   *limits.Runtime
	// ownRuntime: the edge opened runtime and runs its reloads.
	ownRuntime bool
	budget     *budgetState
	// inflight bounds the request memory of writes in flight.
	inflight *inflight
	// seriesCache keeps the normalised labels and series hashes of the
	// remote-write series seen (pkg/seriescache).
	seriesCache *seriescache.Cache
	// refusalLog keeps an overloaded edge's log readable.
	refusalLog *logrepeat.Limiter

	mu    sync.Mutex
	ready error
}

// New creates the edge and its Kafka producer. authn resolves the tenant of
// each request; nil means no authentication (X-Scope-OrgID, then the
// InfluxDB org or db, then anonymous). rt holds the tenants' limits; nil
// makes the edge open (and reload) edge.runtime_file itself, failing when
// that does not load.
func New(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer, authn *auth.Authenticator, rt *limits.Runtime) (*Edge, error) {
	log = log.With("service", "edge")
	if authn == nil {
		var err error
		if authn, err = auth.New(auth.Options{Logger: log}); err != nil {
			return nil, err
		}
	}
	ownRuntime := rt == nil
	if ownRuntime {
		var err error
		if rt, err = limits.Open(cfg, log, reg); err != nil {
			return nil, err
		}
	}
	opts, err := kafka.ClientOpts(cfg, log)
	if err != nil {
		return nil, err
	}
	opts = append(opts, kafka.ProducerOpts(cfg)...)
	// A write must be answered within the produce timeout even when a
	// broker stops answering mid-request. Cancelling an in-flight record
	// may let the sender's retry duplicate it; the edge answers 503 then,
	// so the sender retries anyway, and duplicates of a sample are no-ops
	// in the TSDB.
	opts = append(opts, kgo.AllowIdempotentProduceCancellation(),
		// The edge's records carry the time they arrived: a delivery
		// timeout from then is the answer the sender waits for.
		kgo.RecordDeliveryTimeout(cfg.Kafka.ProduceTimeout))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating Kafka producer: %w", err)
	}
	kafka.RegisterProducerGauges(reg, "edge", cl)
	tracker := limits.NewTracker()
	held := newInflight(cfg.Edge.MaxInflightBytes)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "weir_edge_inflight_bytes",
		Help: "Request memory the writes in flight hold (bodies, decompressed bodies and the memory decoding them takes), bounded by edge.max_inflight_bytes.",
	}, func() float64 { return float64(held.held()) }))
	return &Edge{
		inflight:    held,
		refusalLog:  logrepeat.New(5 * time.Second),
		seriesCache: seriescache.New(64 << 20),
		cfg:         cfg,
		log:         log,
		client:      cl,
		topics:      kafka.NewTopics(cl, cfg.Kafka),
		metrics:     newMetrics(reg, tracker),
		auth:        authn,
		overrides:   rt.Overrides,
		tracker:     tracker,
		runtime:     rt,
		ownRuntime:  ownRuntime,
		budget:      newBudgetState(opts, cfg.Kafka.TopicPrefix, log),
		ready:       errors.New("Kafka brokers not reached yet"),
	}, nil
}

// ReloadRuntime checks edge.runtime_file for changes at once (Run does so
// every edge.runtime_reload_interval) and returns the error that refused
// new content.
func (e *Edge) ReloadRuntime() error {
	return e.runtime.Check()
}

// Name implements app.Service.
func (e *Edge) Name() string { return "edge" }

// RegisterRoutes implements app.Service.
func (e *Edge) RegisterRoutes(mux *app.Mux) {
	mux.Handle("POST /api/v1/write", "remote_write", e.remoteWriteHandler())
	mux.Handle("POST /api/v2/write", "influx_v2_write", e.influxWriteHandler(influxV2))
	mux.Handle("POST /write", "influx_v1_write", e.influxWriteHandler(influxV1))
	mux.Handle("/query", "influx_v1_query", e.influxQueryHandler())
	mux.Handle("GET /ping", "influx_ping", http.HandlerFunc(e.servePing))
	mux.Handle("GET /health", "influx_health", http.HandlerFunc(e.serveHealth))
}

// Ready implements app.Service: ready once the brokers answered.
func (e *Edge) Ready() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ready
}

// Run waits for the brokers, then idles until ctx is done and flushes the
// producer. Requests are served by the process' HTTP server, which stops
// before Run is asked to.
func (e *Edge) Run(ctx context.Context) error {
	if e.ownRuntime {
		go e.runtime.Run(ctx)
	}
	go e.budget.run(ctx)
	if err := kafka.WaitReady(ctx, e.client); err == nil {
		e.mu.Lock()
		e.ready = nil
		e.mu.Unlock()
		e.log.Info("edge ready", "brokers", e.cfg.SeedBrokers())
	}
	<-ctx.Done()
	flushCtx, cancel := context.WithTimeout(context.Background(), e.cfg.Kafka.ProduceTimeout)
	defer cancel()
	if err := e.client.Flush(flushCtx); err != nil {
		e.log.Warn("producer did not flush before shutdown", "err", err)
	}
	e.client.Close()
	return nil
}

// produce writes recs and waits until Kafka acknowledged all of them or
// one failed. It never waits for buffer space: a full producer buffer
// fails at once, so memory stays bounded under overload.
func (e *Edge) produce(ctx context.Context, tenant string, recs []*kgo.Record) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Kafka.ProduceTimeout)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	wg.Add(len(recs))
	for _, r := range recs {
		e.client.TryProduce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
			wg.Done()
		})
	}
	acked := make(chan struct{})
	go func() { wg.Wait(); close(acked) }()
	select {
	case <-acked:
	case <-ctx.Done():
		// The client fails the records on its own shortly, but the
		// sender is answered now: the timeout is a promise to it.
		mu.Lock()
		if firstErr == nil {
			firstErr = fmt.Errorf("no acknowledgement from Kafka within kafka.produce_timeout (%s): %w", e.cfg.Kafka.ProduceTimeout, context.Cause(ctx))
		}
		mu.Unlock()
	}
	e.metrics.produceDuration.Observe(time.Since(start).Seconds())
	mu.Lock()
	defer mu.Unlock()
	if firstErr != nil {
		e.metrics.produceFailures.WithLabelValues(produceFailureReason(firstErr)).Inc()
		return firstErr
	}
	e.metrics.recordsProduced.WithLabelValues(tenant).Add(float64(len(recs)))
	return nil
}

func produceFailureReason(err error) string {
	switch {
	case errors.Is(err, kgo.ErrMaxBuffered):
		return "buffer_full"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, kgo.ErrRecordTimeout):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "error"
}

// newRecords turns encoded records into Kafka records of tenant's raw
// topic. Their timestamp is now, when they are handed to Kafka, rather
// than when the request began to arrive: however slowly a body came, its
// records reach Kafka within kafka.produce_timeout of their timestamp (a
// produce request already in flight then may land a little later), which
// the rollup stage's idle watermark relies on.
func (e *Edge) newRecords(tenant, source string, received time.Time, enc []record.Encoded) []*kgo.Record {
	topic := kafka.Topic(e.cfg.Kafka.TopicPrefix, tenant, kafka.KindRaw)
	headers := record.Headers(record.Meta{Tenant: tenant, Source: source, ReceivedAt: received})
	now := time.Now()
	recs := make([]*kgo.Record, len(enc))
	for i, en := range enc {
		recs[i] = &kgo.Record{Topic: topic, Partition: en.Partition, Value: en.Value, Headers: headers, Timestamp: now}
	}
	return recs
}
