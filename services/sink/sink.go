// Package sink is the sink target: it consumes every tenant's series topic,
// appends the samples to the tenant's TSDB shards, commits offsets only
// after the WAL holding them is durable, and serves the Prometheus query
// API over the shards.
package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weir-metrics/weir/pkg/auth"
	"github.com/weir-metrics/weir/pkg/bucket"
	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/kafka"
	"github.com/weir-metrics/weir/pkg/limits"
	"github.com/weir-metrics/weir/pkg/promapi"
	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
	"github.com/weir-metrics/weir/pkg/rollupparquet"
	"github.com/weir-metrics/weir/pkg/shipper"
	"github.com/weir-metrics/weir/pkg/tenant"
	"github.com/weir-metrics/weir/pkg/tsdbstore"
	"github.com/weir-metrics/weir/services/app"
)

// Sink is the sink target.
type Sink struct {
	cfg     *config.Config
	log     *slog.Logger
	store   *tsdbstore.Store
	api     *promapi.API
	metrics *metrics
	lag     *kafka.LagTracker
	runtime *limits.Runtime
	// ownRuntime: the sink opened runtime and runs its reloads.
	ownRuntime bool
	// shipping is nil when sink.ship_blocks is off.
	shipping *shipping
	// parquet writes the rollup files; nil when rollup.enabled is off.
	parquet *rollupparquet.Consumer

	tenantFromRequest func(*http.Request) (string, error)

	mu    sync.Mutex
	ready error

	// client is set once Run connected (guarded by mu: strong reads use
	// it from other goroutines).
	client *kgo.Client
	// positions is written by the consume loop and read by strong-read
	// queries.
	positions positions

	// Owned by the consume loop (and the rebalance callbacks, which
	// kgo runs only between polls because of BlockRebalanceOnPoll).
	dirty map[*tsdbstore.Shard]struct{}
	req   prw.Request
	// stalled is set when shutdown interrupted a retried append: no later
	// record of the poll may be stored, or offsets would skip it.
	stalled bool
}

// New opens the TSDB shards on disk and prepares the query API. tenants
// resolves the tenant of queries, as it does for writes at the edge; nil
// means no authentication (X-Scope-OrgID, else anonymous). rt holds the
// tenants' limits, of which the sink applies the out-of-order window;
// nil makes the sink open (and reload) edge.runtime_file itself.
func New(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer, build promapi.BuildInfo, tenants *auth.Authenticator, rt *limits.Runtime) (*Sink, error) {
	log = log.With("service", "sink")
	ownRuntime := rt == nil
	if ownRuntime {
		var err error
		if rt, err = limits.Open(cfg, log, reg); err != nil {
			return nil, err
		}
	}
	if tenants == nil {
		var err error
		if tenants, err = auth.New(auth.Options{Logger: log}); err != nil {
			return nil, err
		}
	}
	s := &Sink{cfg: cfg, log: log, runtime: rt, ownRuntime: ownRuntime}
	var canDelete func(*tsdbstore.Shard, ulid.ULID) bool
	if cfg.Sink.ShipBlocks {
		bkt, err := bucket.Open(cfg, log, reg, "sink")
		if err != nil {
			return nil, err
		}
		s.shipping = &shipping{bkt: bkt, metrics: shipper.NewMetrics(reg), s: s, shippers: map[*tsdbstore.Shard]*shipper.Shipper{}}
		canDelete = s.shipping.canDelete
	}
	parquet, err := newParquetWriter(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	s.parquet = parquet
	store, err := tsdbstore.Open(tsdbstore.Options{
		Dir:                 cfg.TSDBDir(),
		Shards:              cfg.Sink.TSDBShards,
		BlockDuration:       cfg.Sink.BlockDuration,
		Retention:           cfg.Sink.Retention,
		OutOfOrderWindow:    cfg.Sink.OutOfOrderWindow,
		OutOfOrderWindowFor: func(t string) time.Duration { return rt.For(t).OutOfOrderWindow },
		CanDeleteBlock:      canDelete,
		MinFreeDiskBytes:    cfg.Sink.MinFreeDiskBytes,
		Logger:              log,
	})
	if err != nil {
		return nil, err
	}
	tenantFromRequest := tenants.Tenant
	api, err := promapi.New(promapi.Options{
		Source:            store,
		TenantFromRequest: tenantFromRequest,
		Logger:            log,
		Registerer:        reg,
		MaxSamples:        cfg.Sink.QueryMaxSamples,
		Timeout:           cfg.Sink.QueryTimeout,
		BuildInfo:         build,
	})
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	s.tenantFromRequest = tenantFromRequest
	s.store = store
	s.api = api
	s.metrics = newMetrics(reg, store)
	s.lag = kafka.NewLagTracker(reg, "sink", cfg.Kafka.TopicPrefix)
	s.ready = errors.New("not caught up with its partitions yet")
	s.dirty = map[*tsdbstore.Shard]struct{}{}
	return s, nil
}

// Name implements app.Service.
func (s *Sink) Name() string { return "sink" }

// RegisterRoutes implements app.Service.
func (s *Sink) RegisterRoutes(mux *app.Mux) {
	mux.Handle("/api/v1/", "query_api", s.readConsistency(s.api.Handler()))
}

// Ready implements app.Service: ready once the sink consumed what its
// partitions held when it started.
func (s *Sink) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// Store is the sink's TSDB store.
func (s *Sink) Store() *tsdbstore.Store { return s.store }

// Run consumes until ctx is done, then commits what it stored and closes
// the TSDBs.
func (s *Sink) Run(ctx context.Context) error {
	defer func() {
		if err := s.store.Close(); err != nil {
			s.log.Error("closing TSDB shards", "err", err)
		}
	}()
	if s.shipping != nil {
		shipCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { s.shipping.run(shipCtx); close(done) }()
		// Stop shipping before the TSDBs close (deferred above, so it
		// runs after this).
		defer func() { cancel(); <-done }()
	}
	if s.parquet != nil {
		defer s.runParquet(ctx)()
	}
	if s.ownRuntime {
		go s.runtime.Run(ctx)
	}
	go s.applyLimits(ctx)
	opts, err := kafka.ClientOpts(s.cfg, s.log)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(opts, append(kafka.ConsumerOpts(s.cfg),
		kgo.ConsumerGroup(s.cfg.Sink.GroupID),
		kgo.InstanceID(s.cfg.Sink.InstanceID),
		kgo.ConsumeRegex(),
		kgo.ConsumeTopics(kafka.TopicRegex(s.cfg.Kafka.TopicPrefix, kafka.KindSeries)),
		kgo.DisableAutoCommit(),
		// Transaction markers come back as records so the sink's position
		// moves past them; strong reads compare it with end offsets.
		kgo.KeepControlRecords(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.AdjustFetchOffsetsFn(s.adjustOffsets),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsLost(s.onLost),
	)...)...)
	if err != nil {
		return fmt.Errorf("creating sink consumer: %w", err)
	}
	s.setClient(cl)
	defer cl.Close()

	lastFlush := time.Now()
	for {
		pollCtx, cancel := context.WithTimeout(ctx, s.cfg.Sink.CommitInterval)
		fetches := cl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			s.flush(context.Background())
			// Close leaves the group, which waits for the rebalance
			// that BlockRebalanceOnPoll holds back.
			cl.AllowRebalance()
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				s.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) { s.store1(ctx, r) })
		s.positions.publish()
		s.lag.Observe(fetches)
		if fetches.NumRecords() == 0 || s.lag.Total() == 0 {
			s.markCaughtUp()
		}
		if time.Since(lastFlush) >= s.cfg.Sink.CommitInterval {
			s.flush(ctx)
			lastFlush = time.Now()
		}
		cl.AllowRebalance()
	}
}

func (s *Sink) markCaughtUp() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready != nil {
		s.ready = nil
		s.log.Info("sink caught up with its partitions")
	}
}

// store1 appends one record's samples. A record that cannot be read is
// counted and skipped so it never blocks its partition.
func (s *Sink) store1(ctx context.Context, r *kgo.Record) {
	if s.stalled {
		return
	}
	if r.Attrs.IsControl() {
		s.positions.advance(r.Topic, r.Partition, r.Offset+1)
		return
	}
	defer func() {
		if !s.stalled {
			s.positions.advance(r.Topic, r.Partition, r.Offset+1)
		}
	}()
	meta, err := record.ParseHeaders(r.Headers)
	if err != nil {
		s.discardRecord("", "invalid_headers", r, err)
		return
	}
	if err := tenant.ValidateID(meta.Tenant); err != nil {
		s.discardRecord("", "invalid_tenant", r, err)
		return
	}
	s.req.Reset()
	if err := record.Decode(meta, r.Value, &s.req); err != nil {
		s.discardRecord(meta.Tenant, "invalid_record", r, err)
		return
	}
	// When the shard cannot be opened or written (disk full, I/O
	// errors), the record is fine and the disk is not: retry until it
	// works rather than skip data. The partition stalls meanwhile and
	// its lag shows it. Below sink.min_free_disk_bytes nothing is
	// written at all, so a disk filling up leaves the TSDB intact.
	var (
		sh  *tsdbstore.Shard
		res tsdbstore.AppendResult
	)
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 10*time.Second) {
		sh, err = s.store.Shard(meta.Tenant, r.Partition)
		if err == nil {
			res, err = sh.Append(ctx, &s.req)
			if err != nil && !errors.Is(err, tsdbstore.ErrLowDisk) {
				// The shard's WAL may now end in a torn record: reopen
				// it (repairing the log) before anything else is
				// appended behind it.
				delete(s.dirty, sh)
				if cerr := s.store.Reopen(meta.Tenant, r.Partition); cerr != nil {
					s.log.Warn("closing failed shard", "tenant", meta.Tenant, "partition", r.Partition, "err", cerr)
				}
			}
		}
		if err == nil {
			break
		}
		s.metrics.appendFailures.Inc()
		s.log.Error("cannot store record in TSDB; retrying", "tenant", meta.Tenant, "partition", r.Partition, "offset", r.Offset, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			s.stalled = true
			return
		case <-time.After(backoff):
		}
	}
	s.dirty[sh] = struct{}{}
	s.metrics.samplesAppended.WithLabelValues(meta.Tenant).Add(float64(res.Samples + res.Histograms))
	s.metrics.exemplarsAppended.WithLabelValues(meta.Tenant).Add(float64(res.Exemplars))
	for reason, n := range res.Discarded {
		s.metrics.samplesDiscarded.WithLabelValues(meta.Tenant, reason).Add(float64(n))
	}
	if res.ExemplarsDiscarded > 0 {
		s.metrics.exemplarsDiscarded.WithLabelValues(meta.Tenant).Add(float64(res.ExemplarsDiscarded))
	}
	s.metrics.endToEnd.Observe(time.Since(meta.ReceivedAt).Seconds())
}

func (s *Sink) discardRecord(ten, reason string, r *kgo.Record, err error) {
	s.metrics.recordsDiscarded.WithLabelValues(ten, reason).Inc()
	s.log.Warn("discarding unreadable record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "reason", reason, "err", err)
}

// flush makes the stored samples durable, records the offsets next to
// them, then commits the offsets to Kafka. In that order, a crash at any
// point leaves Kafka's offsets at or behind the data, never ahead.
func (s *Sink) flush(ctx context.Context) {
	start := time.Now()
	for sh := range s.dirty {
		if s.cfg.Sink.WALFsync {
			if err := sh.SyncWAL(); err != nil {
				s.log.Error("cannot sync WAL; offsets not committed", "tenant", sh.Tenant(), "shard", sh.Index(), "err", err)
				return
			}
		}
	}
	commit := map[string]map[int32]kgo.EpochOffset{}
	for topic, parts := range s.positions.snapshot() {
		ten, _, ok := kafka.ParseTopic(s.cfg.Kafka.TopicPrefix, topic)
		if !ok {
			continue
		}
		byShard := map[int]map[int32]int64{}
		for p, off := range parts {
			n := s.store.ShardOf(p)
			if byShard[n] == nil {
				byShard[n] = map[int32]int64{}
			}
			byShard[n][p] = off
			if commit[topic] == nil {
				commit[topic] = map[int32]kgo.EpochOffset{}
			}
			commit[topic][p] = kgo.EpochOffset{Epoch: -1, Offset: off}
		}
		for n, offs := range byShard {
			sh, err := s.store.Shard(ten, int32(n))
			if err != nil {
				s.log.Error("cannot open shard to checkpoint offsets", "tenant", ten, "err", err)
				return
			}
			if err := sh.SaveCheckpoint(offs); err != nil {
				s.log.Error("cannot save offsets checkpoint; offsets not committed", "tenant", ten, "shard", n, "err", err)
				return
			}
		}
	}
	clear(s.dirty)
	if len(commit) == 0 {
		return
	}
	var commitErr error
	s.client.CommitOffsetsSync(ctx, commit, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		commitErr = err
		if err != nil {
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil && commitErr == nil {
					commitErr = fmt.Errorf("committing %s/%d: %w", t.Topic, p.Partition, err)
				}
			}
		}
	})
	if commitErr != nil && ctx.Err() == nil {
		// The checkpoint already holds these offsets; the next flush
		// commits again.
		s.log.Warn("committing offsets failed", "err", commitErr)
	}
	s.metrics.flushDuration.Observe(time.Since(start).Seconds())
}

// adjustOffsets starts each assigned partition after what this sink's
// shards already hold: the checkpoint may be ahead of Kafka's committed
// offset when the process died between the two.
func (s *Sink) adjustOffsets(_ context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	for topic, parts := range assigned {
		ten, _, ok := kafka.ParseTopic(s.cfg.Kafka.TopicPrefix, topic)
		if !ok || tenant.ValidateID(ten) != nil {
			continue
		}
		for p, off := range parts {
			sh, err := s.store.Shard(ten, p)
			if err != nil {
				return nil, err
			}
			cp, ok := sh.Checkpoint()[p]
			if ok && cp > off.EpochOffset().Offset {
				s.log.Info("resuming after local checkpoint", "topic", topic, "partition", p, "committed", off.EpochOffset().Offset, "checkpoint", cp)
				parts[p] = kgo.NewOffset().At(cp)
			}
		}
	}
	return assigned, nil
}

func (s *Sink) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	s.flush(ctx)
	s.forget(revoked)
}

func (s *Sink) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	s.forget(lost)
}

func (s *Sink) forget(parts map[string][]int32) {
	s.positions.forget(parts)
	s.lag.Revoke(parts)
}

// applyLimits gives the tenants' shards their out-of-order window as the
// runtime file changes it.
func (s *Sink) applyLimits(ctx context.Context) {
	t := time.NewTicker(s.cfg.Edge.RuntimeReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.store.ApplyOutOfOrderWindows(); err != nil {
				s.log.Error("cannot change a tenant's out-of-order window", "err", err)
			}
		}
	}
}
