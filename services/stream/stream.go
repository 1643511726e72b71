// Package stream is the stream target: it consumes every tenant's raw
// topic in a consumer group and produces what it admits to the tenant's
// series topic, in Kafka transactions that also commit the consumed
// offsets, so a crash at any instant neither loses nor duplicates a
// record.
package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/kafka"
	"github.com/weir-metrics/weir/pkg/record"
	"github.com/weir-metrics/weir/services/app"
)

// Stream is the stream target.
type Stream struct {
	cfg     *config.Config
	log     *slog.Logger
	reg     prometheus.Registerer
	metrics *metrics
	lag     *kafka.LagTracker

	mu    sync.Mutex
	ready error
}

// New creates the stream target; it connects to Kafka in Run.
func New(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) *Stream {
	return &Stream{
		cfg:     cfg,
		log:     log.With("service", "stream"),
		reg:     reg,
		metrics: newMetrics(reg),
		lag:     kafka.NewLagTracker(reg, "stream", cfg.Kafka.TopicPrefix),
		ready:   errors.New("not joined to its consumer group yet"),
	}
}

// Name implements app.Service.
func (s *Stream) Name() string { return "stream" }

// RegisterRoutes implements app.Service; the stream serves no routes.
func (s *Stream) RegisterRoutes(*app.Mux) {}

// Ready implements app.Service.
func (s *Stream) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

func (s *Stream) setReady(err error) {
	s.mu.Lock()
	s.ready = err
	s.mu.Unlock()
}

// TransactionalID is the transactional ID of the worker with the given
// instance ID.
func TransactionalID(instanceID string) string { return "weir-stream-" + instanceID }

func (s *Stream) clientOpts() ([]kgo.Opt, error) {
	opts, err := kafka.ClientOpts(s.cfg, s.log)
	if err != nil {
		return nil, err
	}
	return append(opts, kafka.ProducerOpts(s.cfg)...), nil
}

// fence initialises the producer ID of this worker's transactional ID
// before the group session starts. That aborts a transaction a killed
// predecessor left open; otherwise the group's offset fetch reports
// UNSTABLE_OFFSET_COMMIT until the transaction times out.
func (s *Stream) fence(ctx context.Context, opts []kgo.Opt) error {
	cl, err := kgo.NewClient(append(opts,
		kgo.TransactionalID(TransactionalID(s.cfg.Stream.InstanceID)),
		kgo.TransactionTimeout(s.cfg.Stream.TransactionTimeout))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, _, err := cl.ProducerID(ctx); err != nil {
		return fmt.Errorf("initialising producer ID of %s: %w", TransactionalID(s.cfg.Stream.InstanceID), err)
	}
	return nil
}

// Run consumes and transforms until ctx is done.
func (s *Stream) Run(ctx context.Context) error {
	opts, err := s.clientOpts()
	if err != nil {
		return err
	}
	for {
		if err := s.fence(ctx, opts); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("cannot reach Kafka to start the stream worker; retrying", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
				continue
			}
		}
		break
	}
	sess, err := kgo.NewGroupTransactSession(append(opts, append(kafka.ConsumerOpts(s.cfg),
		kgo.TransactionalID(TransactionalID(s.cfg.Stream.InstanceID)),
		kgo.TransactionTimeout(s.cfg.Stream.TransactionTimeout),
		kgo.ConsumerGroup(s.cfg.Stream.GroupID),
		kgo.InstanceID(s.cfg.Stream.InstanceID),
		kgo.ConsumeRegex(),
		kgo.ConsumeTopics(kafka.TopicRegex(s.cfg.Kafka.TopicPrefix, kafka.KindRaw)),
		kgo.RequireStableFetchOffsets(),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
			s.log.Info("partitions assigned", "partitions", assigned)
			s.setReady(nil)
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
			s.lag.Revoke(revoked)
		}),
	)...)...)
	if err != nil {
		return fmt.Errorf("creating stream consumer: %w", err)
	}
	kafka.RegisterProducerGauges(s.reg, "stream", sess.Client())
	topics := kafka.NewTopics(sess.Client(), s.cfg.Kafka)
	s.setReady(nil)
	defer func() {
		// Leaving the group would make a restarted worker wait for a
		// rebalance; a static member keeps its partitions instead.
		sess.Close()
	}()

	for {
		fetches := sess.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			s.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
		})
		if fetches.NumRecords() == 0 {
			continue
		}
		if err := s.process(ctx, sess, topics, fetches); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		s.lag.Observe(fetches)
	}
}

// process handles one poll in one transaction.
func (s *Stream) process(ctx context.Context, sess *kgo.GroupTransactSession, topics *kafka.Topics, fetches kgo.Fetches) error {
	if err := sess.Begin(); err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	var (
		mu      sync.Mutex
		prodErr error
		out     = map[string]int{}
	)
	fail := func(err error) {
		mu.Lock()
		if prodErr == nil {
			prodErr = err
		}
		mu.Unlock()
	}
	fetches.EachRecord(func(r *kgo.Record) {
		meta, err := record.ParseHeaders(r.Headers)
		if err != nil {
			// A record weir cannot read must not stop the partition:
			// count it and move on.
			s.metrics.recordsDiscarded.WithLabelValues("", "invalid_headers").Inc()
			s.log.Warn("discarding unreadable record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			return
		}
		s.metrics.recordsConsumed.WithLabelValues(meta.Tenant).Inc()
		if err := topics.EnsureTenant(ctx, meta.Tenant); err != nil {
			fail(err)
			return
		}
		out[meta.Tenant]++
		sess.Produce(ctx, &kgo.Record{
			Topic:     kafka.Topic(s.cfg.Kafka.TopicPrefix, meta.Tenant, kafka.KindSeries),
			Partition: r.Partition,
			Value:     r.Value,
			Headers:   r.Headers,
			Timestamp: r.Timestamp,
		}, func(_ *kgo.Record, err error) {
			if err != nil {
				fail(err)
			}
		})
	})
	commit := kgo.TryCommit
	if prodErr != nil {
		commit = kgo.TryAbort
	}
	endCtx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		endCtx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
	}
	committed, err := sess.End(endCtx, commit)
	mu.Lock()
	perr := prodErr
	mu.Unlock()
	switch {
	case err != nil:
		s.metrics.transactions.WithLabelValues("failed").Inc()
		return fmt.Errorf("ending transaction: %w", err)
	case !committed:
		s.metrics.transactions.WithLabelValues("aborted").Inc()
		s.log.Warn("transaction aborted; its records will be processed again", "produce_err", perr)
	default:
		s.metrics.transactions.WithLabelValues("committed").Inc()
		for t, n := range out {
			s.metrics.recordsProduced.WithLabelValues(t).Add(float64(n))
		}
	}
	return nil
}

type metrics struct {
	recordsConsumed  *prometheus.CounterVec
	recordsProduced  *prometheus.CounterVec
	recordsDiscarded *prometheus.CounterVec
	transactions     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		recordsConsumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_stream_records_consumed_total",
			Help: "Raw records read by the stream stage, by tenant (counted again when a transaction aborts and they are re-read).",
		}, []string{"tenant"}),
		recordsProduced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_stream_records_produced_total",
			Help: "Series records committed by the stream stage, by tenant.",
		}, []string{"tenant"}),
		recordsDiscarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_stream_records_discarded_total",
			Help: "Raw records the stream stage could not read, by tenant and reason.",
		}, []string{"tenant", "reason"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_stream_transactions_total",
			Help: "Transactions ended by the stream stage, by result (committed, aborted, failed).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.recordsConsumed, m.recordsProduced, m.recordsDiscarded, m.transactions)
	return m
}
