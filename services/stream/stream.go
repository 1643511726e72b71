// Package stream is the stream target: it consumes every tenant's raw
// topic in a consumer group, runs each tenant's pipeline (relabel, guard
// rails, series budget) over the series, and produces what it admits to
// the tenant's series topic. Output, the ledger that carries the budget
// state, and the consumed offsets are written in one Kafka transaction per
// poll, so a crash at any instant neither loses nor duplicates a sample
// and never lets a budget forget what it admitted.
package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/fastcache"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/auth"
	"github.com/weir-metrics/weir/pkg/budget"
	"github.com/weir-metrics/weir/pkg/cardinality"
	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/kafka"
	"github.com/weir-metrics/weir/pkg/pipeline"
	"github.com/weir-metrics/weir/pkg/record"
	"github.com/weir-metrics/weir/services/app"
)

// nearLimitShare is the share of a limit from which a partition's state
// carries the series filter the edge needs to refuse new series.
const nearLimitShare = 0.8

// Stream is the stream target.
type Stream struct {
	cfg     *config.Config
	tenants *auth.Authenticator
	log     *slog.Logger
	reg     prometheus.Registerer
	metrics *metrics
	lag     *kafka.LagTracker

	pipes *pipeline.Watcher
	cache *fastcache.Cache
	track *cardinality.Tracker
	owned ownership
	// client is the current session's, for the producer gauges.
	client atomic.Pointer[kgo.Client]
	states *budget.Reader
	remote remoteUsage

	mu    sync.Mutex
	ready error

	// Rebalance callbacks run on the client's goroutines; they queue
	// what changed and the poll loop applies it between polls.
	evMu     sync.Mutex
	assigned map[string][]int32
	revoked  map[string][]int32

	// Owned by the poll loop.
	toLoad    map[string]map[int32]bool
	published map[string]publishedState
	stage     *stage
	counts    pollCounts
}

type publishedState struct {
	part    *cardinality.Partition
	version uint64
	near    bool
	gen     uint32 // pipelines generation: limits are part of the state
	at      time.Time
}

// New creates the stream target and loads its pipelines; a pipeline file
// that does not parse is an error. It connects to Kafka in Run. tenants
// resolves who may read the cardinality explorer, as for writes and
// queries; nil means no authentication.
func New(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer, tenants *auth.Authenticator) (*Stream, error) {
	log = log.With("service", "stream")
	if tenants == nil {
		var err error
		if tenants, err = auth.New(auth.Options{Logger: log}); err != nil {
			return nil, err
		}
	}
	pipes, err := pipeline.NewWatcher(cfg.Stream.PipelinesDir, log, reg)
	if err != nil {
		return nil, err
	}
	opts, err := kafka.ClientOpts(cfg, log)
	if err != nil {
		return nil, err
	}
	s := &Stream{
		tenants: tenants,
		cfg:     cfg,
		log:     log,
		reg:     reg,
		lag:     kafka.NewLagTracker(reg, "stream", cfg.Kafka.TopicPrefix),
		pipes:   pipes,
		cache:   pipeline.NewCache(cfg.Stream.RelabelCacheBytes),
		track: cardinality.New(cardinality.Options{
			Window:           cfg.Stream.ActiveSeriesWindow,
			LabelValuesLimit: cfg.Stream.LabelValuesLimit,
		}),
		states:    budget.NewReader(opts, budget.Topic(cfg.Kafka.TopicPrefix), log),
		ready:     errors.New("not joined to its consumer group yet"),
		assigned:  map[string][]int32{},
		revoked:   map[string][]int32{},
		toLoad:    map[string]map[int32]bool{},
		published: map[string]publishedState{},
	}
	s.remote = remoteUsage{view: s.states.View(), owned: &s.owned}
	s.metrics = newMetrics(reg, s)
	s.stage = &stage{
		proc:       pipeline.NewProcessor(s.cache),
		track:      s.track,
		remote:     s.remote,
		partitions: cfg.Kafka.Partitions,
		maxRecord:  cfg.Kafka.MaxRecordBytes,
		counts:     &s.counts,
	}
	return s, nil
}

// Name implements app.Service.
func (s *Stream) Name() string { return "stream" }

// RegisterRoutes implements app.Service: the cardinality explorer.
func (s *Stream) RegisterRoutes(mux *app.Mux) { s.registerExplorer(mux) }

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

// Pipelines returns the pipelines in force.
func (s *Stream) Pipelines() *pipeline.Set { return s.pipes.Set() }

// TransactionalID is the transactional ID of the worker with the given
// instance ID.
func TransactionalID(instanceID string) string { return "weir-stream-" + instanceID }

func (s *Stream) clientOpts() ([]kgo.Opt, error) {
	opts, err := kafka.ClientOpts(s.cfg, s.log)
	if err != nil {
		return nil, err
	}
	// No delivery timeout (kafka.ProducerOpts sets none): the records keep
	// the time the edge received them, and franz-go would measure the
	// timeout from then, failing every record of a worker that is behind.
	// A slow broker delays a transaction; the transaction timeout bounds
	// it.
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
	kafka.RegisterProducerGaugesOf(s.reg, "stream", s.client.Load)
	bg, stopBG := context.WithCancel(ctx)
	var bgWG sync.WaitGroup
	defer func() { stopBG(); bgWG.Wait() }()
	bgWG.Add(2)
	go func() { defer bgWG.Done(); s.pipes.Run(bg, s.cfg.Stream.PipelinesReloadInterval) }()
	go func() { defer bgWG.Done(); s.states.Run(bg) }()

	backoff := time.Second
	for {
		began := time.Now()
		err := s.runSession(ctx, opts)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		// Whatever ended the session — fenced by a newer producer of this
		// transactional ID (a broker that lost its producer state, or a
		// second worker with this instance ID), or a transaction whose end
		// Kafka did not confirm (a broker away longer than the client's
		// retries) — start over as Kafka Streams does: the new session
		// fences the old producer, which aborts its open transaction, and
		// resumes from the committed offsets, so nothing of the failed
		// transaction counted twice or got lost.
		if time.Since(began) > time.Minute {
			backoff = time.Second
		}
		if fenced(err) {
			s.log.Warn("the stream worker's producer was fenced; starting a new session", "err", err)
		} else {
			s.log.Error("the stream worker's session failed; starting a new one", "err", err, "retry_in", backoff)
		}
		s.forgetPartitions()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// fenced reports whether err ends the session's transactional producer
// for good.
func fenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.InvalidProducerIDMapping) || errors.Is(err, kerr.TransactionalIDNotFound)
}

// forgetPartitions drops the state of every partition, as if all were
// revoked: the next session's assignment loads them again.
func (s *Stream) forgetPartitions() {
	s.evMu.Lock()
	s.assigned, s.revoked = map[string][]int32{}, map[string][]int32{}
	s.evMu.Unlock()
	s.track.Lock()
	defer s.track.Unlock()
	for ten, ps := range s.owned.all() {
		for _, p := range ps {
			s.track.Forget(ten, p)
			s.owned.set(ten, p, false)
			delete(s.published, ten+"/"+strconv.Itoa(int(p)))
		}
	}
	clear(s.toLoad)
}

// runSession runs one transactional session: from fencing the previous
// holder of the transactional ID until ctx ends or the session fails.
func (s *Stream) runSession(ctx context.Context, opts []kgo.Opt) error {
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
			s.queueEvent(assigned, nil)
			s.setReady(nil)
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
			s.lag.Revoke(revoked)
			s.queueEvent(nil, revoked)
		}),
	)...)...)
	if err != nil {
		return fmt.Errorf("creating stream consumer: %w", err)
	}
	s.client.Store(sess.Client())
	topics := kafka.NewTopics(sess.Client(), s.cfg.Kafka)
	adm := kadm.NewClient(sess.Client())
	st := &stateTopics{adm: adm, partitions: s.cfg.Kafka.Partitions, replication: int16(s.cfg.Kafka.ReplicationFactor), retention: s.cfg.Stream.ActiveSeriesWindow}
	s.setReady(nil)
	defer func() {
		// Leaving the group would make a restarted worker wait for a
		// rebalance; a static member keeps its partitions instead.
		sess.Close()
	}()

	consumerOpts, err := kafka.ClientOpts(s.cfg, s.log)
	if err != nil {
		return err
	}
	lastSweep, lastPublish := time.Now(), time.Time{}
	for {
		pollCtx, cancel := context.WithTimeout(ctx, s.cfg.Stream.BudgetPublishInterval)
		fetches := sess.PollRecords(pollCtx, s.cfg.Stream.MaxRecordsPerTransaction)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				s.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
			}
		})
		s.applyEvents()
		if err := s.loadPending(ctx, consumerOpts, adm); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		now := time.Now()
		if now.Sub(lastSweep) >= 30*time.Second {
			s.track.Sweep(now)
			lastSweep = now
		}
		publish := now.Sub(lastPublish) >= s.cfg.Stream.BudgetPublishInterval
		if fetches.NumRecords() == 0 && !publish {
			continue
		}
		if err := s.process(ctx, sess, topics, st, adm, consumerOpts, fetches, publish); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if publish {
			lastPublish = now
		}
		s.lag.Observe(fetches)
	}
}

func (s *Stream) queueEvent(assigned, revoked map[string][]int32) {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	for t, ps := range assigned {
		s.assigned[t] = append(s.assigned[t], ps...)
	}
	for t, ps := range revoked {
		s.revoked[t] = append(s.revoked[t], ps...)
	}
}

// applyEvents applies rebalances between polls: a revoked partition's
// state is dropped (its next owner replays the ledger), an assigned one is
// loaded before its records are processed.
func (s *Stream) applyEvents() {
	s.evMu.Lock()
	assigned, revoked := s.assigned, s.revoked
	s.assigned, s.revoked = map[string][]int32{}, map[string][]int32{}
	s.evMu.Unlock()
	s.track.Lock()
	defer s.track.Unlock()
	for topic, ps := range revoked {
		ten, _, ok := kafka.ParseTopic(s.cfg.Kafka.TopicPrefix, topic)
		if !ok {
			continue
		}
		for _, p := range ps {
			s.track.Forget(ten, p)
			s.owned.set(ten, p, false)
			delete(s.toLoad[ten], p)
			delete(s.published, ten+"/"+strconv.Itoa(int(p)))
		}
	}
	for topic, ps := range assigned {
		ten, _, ok := kafka.ParseTopic(s.cfg.Kafka.TopicPrefix, topic)
		if !ok {
			continue
		}
		for _, p := range ps {
			s.owned.set(ten, p, true)
			if !s.track.Partition(ten, p).Loaded() {
				if s.toLoad[ten] == nil {
					s.toLoad[ten] = map[int32]bool{}
				}
				s.toLoad[ten][p] = true
			}
		}
	}
}

// loadPending replays the ledger of every owned partition not loaded yet,
// retrying until it succeeds or ctx ends: a partition's records are never
// processed against a budget that forgot what it admitted.
func (s *Stream) loadPending(ctx context.Context, opts []kgo.Opt, adm *kadm.Client) error {
	for ten, ps := range s.toLoad {
		for p := range ps {
			for attempt := 0; ; attempt++ {
				err := s.load(ctx, opts, adm, ten, p)
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				s.log.Warn("cannot replay the series ledger; retrying", "tenant", ten, "partition", p, "err", err)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Duration(min(attempt+1, 5)) * time.Second):
				}
			}
			delete(ps, p)
		}
		delete(s.toLoad, ten)
	}
	return nil
}

// load replays one partition's ledger into a fresh state.
func (s *Stream) load(ctx context.Context, opts []kgo.Opt, adm *kadm.Client, tenant string, p int32) error {
	start := time.Now()
	s.track.Lock()
	s.track.Forget(tenant, p)
	part := s.track.Partition(tenant, p)
	s.track.SetNow(start)
	s.track.Unlock()
	since := start.Add(-s.cfg.Stream.ActiveSeriesWindow - time.Minute)
	topic := kafka.Topic(s.cfg.Kafka.TopicPrefix, tenant, KindLedger)
	n, err := replayLedger(ctx, opts, adm, topic, p, since, func(at time.Time, entries []cardinality.LedgerEntry) error {
		s.track.Lock()
		part.Replay(at, entries)
		s.track.Unlock()
		return nil
	})
	if err != nil {
		s.track.Lock()
		s.track.Forget(tenant, p)
		s.track.Unlock()
		return err
	}
	s.track.Lock()
	part.MarkLoaded()
	s.track.Unlock()
	s.metrics.ledgerReplay.Observe(time.Since(start).Seconds())
	s.log.Debug("series ledger replayed", "tenant", tenant, "partition", p, "entries", n, "took", time.Since(start))
	return nil
}

type partKey struct {
	tenant string
	p      int32
}

// process handles one poll in one transaction: the admitted series, the
// ledger entries of the budget state they changed, and (when due) the
// budget state for the edges.
func (s *Stream) process(ctx context.Context, sess *kgo.GroupTransactSession, topics *kafka.Topics, st *stateTopics, adm *kadm.Client, opts []kgo.Opt, fetches kgo.Fetches, publish bool) error {
	if err := sess.Begin(); err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	var (
		mu      sync.Mutex
		prodErr error
	)
	fail := func(err error) {
		mu.Lock()
		if prodErr == nil {
			prodErr = err
		}
		mu.Unlock()
	}
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			fail(err)
		}
	}
	s.counts.reset()
	// The series the stage gathers from the poll's records (see stage),
	// as records of the same transaction.
	s.stage.emit = func(meta record.Meta, ts time.Time, recs []record.Encoded) {
		series := kafka.Topic(s.cfg.Kafka.TopicPrefix, meta.Tenant, kafka.KindSeries)
		headers := record.Headers(meta)
		s.counts.tenant(meta.Tenant).recordsProduced += len(recs)
		for _, enc := range recs {
			sess.Produce(ctx, &kgo.Record{Topic: series, Partition: enc.Partition, Value: enc.Value, Headers: headers, Timestamp: ts}, promise)
		}
	}
	touched := map[partKey]*cardinality.Partition{}
	set := s.pipes.Set()
	s.track.Lock()
	s.track.SetNow(time.Now())
	s.track.Unlock()
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
		ledgerTopic := kafka.Topic(s.cfg.Kafka.TopicPrefix, meta.Tenant, KindLedger)
		if err := st.ensureLedger(ctx, ledgerTopic); err != nil {
			fail(err)
			return
		}
		if s.stage.holds(meta.Tenant, meta.Source, true) {
			s.stage.flush()
		}
		s.track.Lock()
		part := s.track.Partition(meta.Tenant, r.Partition)
		if !part.Loaded() {
			// Assigned before this worker heard of it (a new tenant).
			s.track.Unlock()
			if err := s.load(ctx, opts, adm, meta.Tenant, r.Partition); err != nil {
				fail(err)
				return
			}
			s.track.Lock()
			part = s.track.Partition(meta.Tenant, r.Partition)
		}
		pass := s.stage.run(set, meta, part, r.Partition, r.Value, r.Timestamp)
		s.track.Unlock()
		if s.stage.full() {
			s.stage.flush()
		}
		touched[partKey{meta.Tenant, r.Partition}] = part
		if pass {
			if s.stage.holds(meta.Tenant, "", false) {
				s.stage.flush()
			}
			s.counts.tenant(meta.Tenant).recordsProduced++
			series := kafka.Topic(s.cfg.Kafka.TopicPrefix, meta.Tenant, kafka.KindSeries)
			sess.Produce(ctx, &kgo.Record{Topic: series, Partition: r.Partition, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp}, promise)
		}
	})
	s.stage.flush()

	// The ledger entries of this poll, in its transaction: after a crash
	// the ledger holds exactly what the committed output admitted.
	now := time.Now()
	s.track.Lock()
	for k, part := range touched {
		entries := part.TakeLedger()
		topic := kafka.Topic(s.cfg.Kafka.TopicPrefix, k.tenant, KindLedger)
		for len(entries) > 0 {
			n := min(len(entries), cardinality.MaxLedgerEntries)
			sess.Produce(ctx, &kgo.Record{Topic: topic, Partition: k.p, Value: cardinality.EncodeLedger(entries[:n]), Timestamp: now}, promise)
			entries = entries[n:]
		}
	}
	var (
		states []*budget.PartitionState
		marks  map[string]publishedState
	)
	if publish {
		states, marks = s.snapshotsLocked(set, now)
	}
	s.track.Unlock()
	if len(states) > 0 {
		topic := budget.Topic(s.cfg.Kafka.TopicPrefix)
		if err := st.ensureState(ctx, topic); err != nil {
			fail(err)
		}
		for _, ps := range states {
			v, err := ps.Marshal()
			if err != nil {
				fail(err)
				continue
			}
			sess.Produce(ctx, &kgo.Record{Topic: topic, Key: budget.Key(ps.Tenant, ps.Partition), Value: v, Timestamp: now}, promise)
		}
	}

	endCtx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		endCtx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
	}
	// Every record must be acknowledged before deciding to commit: the
	// session's End commits even when some records of the transaction
	// failed, which would commit the input offsets of lost output.
	if err := sess.Client().Flush(endCtx); err != nil {
		fail(fmt.Errorf("flushing the transaction's records: %w", err))
	}
	commit := kgo.TryCommit
	mu.Lock()
	if prodErr != nil {
		commit = kgo.TryAbort
	}
	mu.Unlock()
	committed, err := sess.End(endCtx, commit)
	mu.Lock()
	perr := prodErr
	mu.Unlock()
	if err != nil || !committed {
		// The in-memory budget state of the touched partitions is ahead
		// of what Kafka holds: drop it and replay the ledger.
		s.track.Lock()
		for k := range touched {
			s.track.Forget(k.tenant, k.p)
			if s.owned.owns(k.tenant, k.p) {
				if s.toLoad[k.tenant] == nil {
					s.toLoad[k.tenant] = map[int32]bool{}
				}
				s.toLoad[k.tenant][k.p] = true
			}
		}
		s.track.Unlock()
	}
	switch {
	case err != nil:
		s.metrics.transactions.WithLabelValues("failed").Inc()
		return fmt.Errorf("ending transaction: %w", err)
	case !committed:
		s.metrics.transactions.WithLabelValues("aborted").Inc()
		s.log.Warn("transaction aborted; its records will be processed again", "produce_err", perr)
	default:
		s.metrics.transactions.WithLabelValues("committed").Inc()
		s.metrics.add(&s.counts)
		for k, m := range marks {
			s.published[k] = m
		}
	}
	return nil
}

// snapshotsLocked returns the states of owned partitions that changed
// since they were last published, or were not published for a
// heartbeat.
func (s *Stream) snapshotsLocked(set *pipeline.Set, now time.Time) ([]*budget.PartitionState, map[string]publishedState) {
	var out []*budget.PartitionState
	marks := map[string]publishedState{}
	for ten, ps := range s.owned.all() {
		pl := set.For(ten)
		near := s.track.NearLimit(ten, pl.Budget, s.remote, nearLimitShare)
		for _, p := range ps {
			part := s.track.Partition(ten, p)
			if !part.Loaded() {
				continue
			}
			k := ten + "/" + strconv.Itoa(int(p))
			last := s.published[k]
			v := part.Version()
			if last.part == part && last.version == v && last.near == near && last.gen == set.Generation() && now.Sub(last.at) < budget.PublishHeartbeat {
				continue
			}
			out = append(out, part.Snapshot(pl.Budget, s.cfg.Kafka.Partitions, now, near))
			marks[k] = publishedState{part: part, version: v, near: near, gen: set.Generation(), at: now}
		}
	}
	return out, marks
}
