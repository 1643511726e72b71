// Package rollup is the rollup stage: it consumes every tenant's series
// topic in the weir-rollup group, aggregates the samples into windows by
// sample time (pkg/rollup) and produces the rows of closed windows to the
// tenant's rollup topic. It is exactly once by deterministic
// recomputation: the committed offset is the first record an open window
// depends on, the commit metadata holds the watermarks a restart needs,
// and rows are acknowledged by Kafka before the commit that moves past
// them (docs/rollups.md).
package rollup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/kafka"
	"github.com/weir-metrics/weir/pkg/pipeline"
	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
	"github.com/weir-metrics/weir/pkg/rollup"
	"github.com/weir-metrics/weir/pkg/tenant"
	"github.com/weir-metrics/weir/services/app"
)

// Stage is the rollup target.
type Stage struct {
	cfg     *config.Config
	log     *slog.Logger
	reg     prometheus.Registerer
	specs   rollup.Specs
	metrics *metrics
	lag     *kafka.LagTracker

	mu    sync.Mutex
	ready error
	// parts is the state of every owned partition. The consume loop owns
	// it; the rebalance callbacks take mu too, as the assign side may run
	// concurrently with a poll.
	parts map[topicPartition]*partition

	cl *kgo.Client // set once Run connected
	// topicIDs caches the IDs of series topics: offset commits from v10
	// on name topics by ID.
	topicIDs map[string][16]byte

	// failed holds records Kafka did not acknowledge; they are produced
	// again before the next commit.
	failedMu sync.Mutex
	failed   []*kgo.Record
}

type topicPartition struct {
	topic     string
	partition int32
}

// partition is the state of one owned partition of a series topic.
type partition struct {
	num       int32
	tenant    string
	rollupTo  string // the tenant's rollup topic
	proc      *rollup.Partition
	committed rollup.Checkpoint
	// emittedMark is the watermark the last produced record announced.
	emittedMark   int64
	lastHeartbeat time.Time
	topicReady    bool
}

// New creates the rollup stage; specs gives each tenant's rollups.
func New(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer, specs rollup.Specs) *Stage {
	return &Stage{
		cfg:      cfg,
		log:      log.With("service", "rollup"),
		reg:      reg,
		specs:    specs,
		metrics:  newMetrics(reg),
		lag:      kafka.NewLagTracker(reg, "rollup", cfg.Kafka.TopicPrefix),
		ready:    errors.New("not joined to its consumer group yet"),
		parts:    map[topicPartition]*partition{},
		topicIDs: map[string][16]byte{},
	}
}

// DefaultSpecs returns the rollups every tenant gets until its pipeline
// declares its own: every admitted series at rollup.resolutions.
func DefaultSpecs(cfg *config.Config) (rollup.Specs, error) {
	specs, err := rollup.DefaultSpecs(cfg.Rollup.ResolutionDurations(), cfg.Rollup.AllowedLateness)
	if err != nil {
		return nil, fmt.Errorf("rollup.resolutions: %w", err)
	}
	return rollup.Static(specs), nil
}

// FromPipelines returns each tenant's rollups from its pipeline (the
// rollups section), or defaults when the pipeline has none. A tenant's
// rollups are read when the stage takes one of its partitions: a changed
// pipeline applies from the next rebalance or restart, so windows already
// open keep the rollups they began with.
func FromPipelines(pipelines func() *pipeline.Set, defaults rollup.Specs) rollup.Specs {
	return func(tenant string) []rollup.Spec {
		if r := pipelines().For(tenant).Rollups; r != nil {
			return r
		}
		return defaults(tenant)
	}
}

// Name implements app.Service.
func (s *Stage) Name() string { return "rollup" }

// RegisterRoutes implements app.Service; the stage serves no routes.
func (s *Stage) RegisterRoutes(*app.Mux) {}

// Ready implements app.Service.
func (s *Stage) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

func (s *Stage) setReady(err error) {
	s.mu.Lock()
	s.ready = err
	s.mu.Unlock()
}

// maxRowBytes bounds one rollup record: small enough for any broker's
// defaults, large enough for thousands of rows.
func (s *Stage) maxRowBytes() int { return min(1<<20, s.cfg.Kafka.MaxRecordBytes) }

// Run consumes and rolls up until ctx is done, then produces what closed,
// commits and leaves.
func (s *Stage) Run(ctx context.Context) error {
	opts, err := kafka.ClientOpts(s.cfg, s.log)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(append(opts, kafka.ProducerOpts(s.cfg)...), append(kafka.ConsumerOpts(s.cfg),
		kgo.ConsumerGroup(s.cfg.Rollup.GroupID),
		// Static membership: a restarted worker gets its partitions back at
		// once instead of after the session timeout.
		kgo.InstanceID(s.cfg.Stream.InstanceID),
		kgo.ConsumeRegex(),
		kgo.ConsumeTopics(kafka.TopicRegex(s.cfg.Kafka.TopicPrefix, kafka.KindSeries)),
		kgo.DisableAutoCommit(),
		// Transaction markers come back as records so the position moves
		// past them and can be compared with the end of the partition.
		kgo.KeepControlRecords(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.AdjustFetchOffsetsFn(s.restore),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
			s.log.Info("partitions assigned", "partitions", assigned)
			s.setReady(nil)
		}),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsLost(s.onLost),
	)...)...)
	if err != nil {
		return fmt.Errorf("creating rollup consumer: %w", err)
	}
	defer cl.Close()
	s.mu.Lock()
	s.cl = cl
	s.mu.Unlock()
	kafka.RegisterProducerGauges(s.reg, "rollup", cl)
	topics := kafka.NewTopics(cl, s.cfg.Kafka)
	s.setReady(nil)

	var (
		req        prw.Request
		lastCommit = time.Now()
		lastIdle   = time.Now()
		idleEvery  = min(max(s.cfg.Rollup.IdleTimeout/4, time.Second), 10*time.Second)
	)
	for {
		pollCtx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := cl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			// Rows of windows that closed are produced and committed; open
			// windows are recomputed from the committed offset on restart.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Kafka.ProduceTimeout)
			s.emitAll(fctx, cl, topics)
			s.commit(fctx, cl, nil, true)
			cancel()
			cl.AllowRebalance()
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				s.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
			}
		})
		s.mu.Lock()
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			ps := s.parts[topicPartition{fp.Topic, fp.Partition}]
			if ps == nil {
				return
			}
			for _, r := range fp.Records {
				s.process(ps, r, &req)
			}
		})
		s.mu.Unlock()
		s.lag.Observe(fetches)
		s.emitAll(ctx, cl, topics)
		if time.Since(lastIdle) >= idleEvery {
			s.advanceIdle(ctx, cl, topics)
			lastIdle = time.Now()
		}
		if time.Since(lastCommit) >= s.cfg.Rollup.CommitInterval {
			s.commit(ctx, cl, nil, false)
			lastCommit = time.Now()
		}
		cl.AllowRebalance()
	}
}

// process feeds one record to its partition's computation.
func (s *Stage) process(ps *partition, r *kgo.Record, req *prw.Request) {
	if r.Attrs.IsControl() {
		ps.proc.Skip(r.Offset)
		return
	}
	meta, err := record.ParseHeaders(r.Headers)
	if err == nil {
		req.Reset()
		err = record.Decode(meta, r.Value, req)
	}
	if err != nil {
		// A record that cannot be read must not block the partition.
		s.metrics.recordsDiscarded.WithLabelValues(ps.tenant, "invalid_record").Inc()
		s.log.Warn("skipping unreadable record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		ps.proc.Skip(r.Offset)
		return
	}
	if meta.Replay != "" {
		// A replay recomputes the rollups of what it replays itself.
		ps.proc.Skip(r.Offset)
		return
	}
	ps.proc.Process(r.Offset, r.Timestamp.UnixMilli(), req.Series)
}

// emitAll produces the rows of every partition's closed windows and
// publishes what the computations counted.
func (s *Stage) emitAll(ctx context.Context, cl *kgo.Client, topics *kafka.Topics) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ps := range s.parts {
		s.emit(ctx, cl, topics, ps, false)
	}
}

// emit produces the rows ps closed. With heartbeat and no rows, it
// produces an empty record that only carries the watermark, so that the
// Parquet writer learns that an idle partition's hours are complete.
func (s *Stage) emit(ctx context.Context, cl *kgo.Client, topics *kafka.Topics, ps *partition, heartbeat bool) {
	for k, n := range ps.proc.TakeDiscards() {
		s.metrics.samplesDiscarded.WithLabelValues(ps.tenant, k.Rollup, k.Resolution, k.Reason).Add(float64(n))
	}
	for name, n := range ps.proc.TakeAccepted() {
		s.metrics.samples.WithLabelValues(ps.tenant, name).Add(float64(n))
	}
	rows := ps.proc.TakeRows()
	mark := ps.proc.Watermark()
	if len(rows) == 0 && (!heartbeat || mark <= ps.emittedMark) {
		return
	}
	if !ps.topicReady {
		// Tenants created before rollups existed have no rollup topic.
		if err := topics.EnsureTenant(ctx, ps.tenant); err != nil {
			s.log.Warn("cannot create the rollup topic; producing anyway", "tenant", ps.tenant, "err", err)
		}
		ps.topicReady = true
	}
	values, err := rollup.EncodeRows(rows, s.maxRowBytes())
	if err != nil {
		// Rows are plain numbers and strings; this cannot happen.
		s.log.Error("cannot encode rollup rows", "tenant", ps.tenant, "err", err)
		return
	}
	if len(values) == 0 {
		values = [][]byte{nil}
	}
	for i, v := range values {
		// Only the last record of a batch announces the new watermark: a
		// file is complete once all of the batch's rows have arrived.
		m := ps.emittedMark
		if i == len(values)-1 {
			m = mark
		}
		cl.Produce(ctx, &kgo.Record{
			Topic:     ps.rollupTo,
			Partition: ps.num,
			Value:     v,
			Headers:   rollup.Headers(rollup.Meta{Tenant: ps.tenant, Watermark: m}),
		}, func(r *kgo.Record, err error) {
			if err != nil {
				s.noteFailed(r)
			}
		})
	}
	ps.emittedMark = max(ps.emittedMark, mark)
	for _, r := range rows {
		s.metrics.rowsEmitted.WithLabelValues(ps.tenant, r.Rollup, rollup.ResolutionName(r.ResolutionMs)).Inc()
	}
}

// advanceIdle lets the watermark of partitions that receive nothing follow
// the clock, rollup.idle_timeout behind, so their last windows close. It
// does so only when nothing older can still arrive: the partition is read
// to its end and the stream stage has consumed all of the tenant's raw
// topic, so every record still to come was received by an edge less than
// kafka.produce_timeout ago. Under that rule the advance changes no
// decision a recomputation would take; it is committed at once so that a
// restart repeats it.
func (s *Stage) advanceIdle(ctx context.Context, cl *kgo.Client, topics *kafka.Topics) {
	mark := time.Now().Add(-s.cfg.Rollup.IdleTimeout).UnixMilli()
	s.mu.Lock()
	var series, raws []string
	seen := map[string]bool{}
	for tp, ps := range s.parts {
		if ps.proc.Replaying() || ps.proc.Watermark() >= mark {
			continue
		}
		if !seen[tp.topic] {
			seen[tp.topic] = true
			series = append(series, tp.topic)
			raws = append(raws, kafka.Topic(s.cfg.Kafka.TopicPrefix, ps.tenant, kafka.KindRaw))
		}
	}
	s.mu.Unlock()
	if len(series) == 0 {
		return
	}
	// Upstream first, the series ends last: a transaction of the stream
	// stage that commits in between puts its records below the ends read
	// here, so the partition does not count as read to its end before
	// they are processed.
	adm := kadm.NewClient(cl)
	rawEnds, err := adm.ListEndOffsets(ctx, raws...)
	if err != nil {
		return
	}
	streamed, err := adm.FetchOffsetsForTopics(ctx, s.cfg.Stream.GroupID, raws...)
	if err != nil {
		return
	}
	upstreamDone := map[string]bool{}
	for _, raw := range raws {
		done := true
		rawEnds.Each(func(o kadm.ListedOffset) {
			if o.Topic != raw {
				return
			}
			c, ok := streamed.Lookup(raw, o.Partition)
			if o.Err != nil || o.Offset > 0 && (!ok || c.Err != nil || c.At < o.Offset) {
				done = false
			}
		})
		upstreamDone[raw] = done
	}
	ends, err := adm.ListCommittedOffsets(ctx, series...)
	if err != nil {
		return
	}
	advanced := map[string][]int32{}
	s.mu.Lock()
	for tp, ps := range s.parts {
		end, ok := ends.Lookup(tp.topic, tp.partition)
		raw := kafka.Topic(s.cfg.Kafka.TopicPrefix, ps.tenant, kafka.KindRaw)
		if !ok || end.Err != nil || ps.proc.Replaying() || ps.proc.Position() < end.Offset || !upstreamDone[raw] || ps.proc.Watermark() >= mark {
			continue
		}
		ps.proc.Advance(mark)
		heartbeat := time.Since(ps.lastHeartbeat) >= s.cfg.Rollup.IdleTimeout
		if heartbeat {
			ps.lastHeartbeat = time.Now()
		}
		s.emit(ctx, cl, topics, ps, heartbeat)
		advanced[tp.topic] = append(advanced[tp.topic], tp.partition)
	}
	s.mu.Unlock()
	if len(advanced) > 0 {
		s.commit(ctx, cl, advanced, false)
	}
}

func (s *Stage) noteFailed(r *kgo.Record) {
	s.failedMu.Lock()
	s.failed = append(s.failed, r)
	s.failedMu.Unlock()
}

// produced waits until Kafka acknowledged every record produced so far,
// producing again those it refused; it returns false only when ctx ended
// first. Offsets must not move past rows Kafka does not hold.
func (s *Stage) produced(ctx context.Context, cl *kgo.Client) bool {
	for backoff := 200 * time.Millisecond; ; backoff = min(2*backoff, 10*time.Second) {
		if err := cl.Flush(ctx); err != nil {
			return false
		}
		s.failedMu.Lock()
		retry := s.failed
		s.failed = nil
		s.failedMu.Unlock()
		if len(retry) == 0 {
			return true
		}
		s.metrics.produceFailures.Add(float64(len(retry)))
		s.log.Error("Kafka did not acknowledge rollup rows; producing them again, offsets are not committed meanwhile", "records", len(retry), "retry_in", backoff)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		for _, r := range retry {
			r := r
			cl.Produce(ctx, r, func(r *kgo.Record, err error) {
				if err != nil {
					s.noteFailed(r)
				}
			})
		}
	}
}

// commit makes sure every row produced so far is acknowledged, then
// commits the checkpoint of each partition (only those in only, when not
// nil) with its watermarks in the commit metadata.
func (s *Stage) commit(ctx context.Context, cl *kgo.Client, only map[string][]int32, final bool) {
	if !s.produced(ctx, cl) {
		return
	}
	s.mu.Lock()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group = s.cfg.Rollup.GroupID
	req.MemberID, req.Generation = cl.GroupMetadata()
	instance := s.cfg.Stream.InstanceID
	req.InstanceID = &instance
	pending := map[topicPartition]rollup.Checkpoint{}
	byTopic := map[string]*kmsg.OffsetCommitRequestTopic{}
	open := map[string]int{}
	lagRecords := map[string]int64{}
	var keys []topicPartition
	for tp := range s.parts {
		keys = append(keys, tp)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].topic < keys[j].topic || keys[i].topic == keys[j].topic && keys[i].partition < keys[j].partition
	})
	for _, tp := range keys {
		ps := s.parts[tp]
		open[ps.tenant] += ps.proc.OpenWindows()
		cp, ok := ps.proc.Checkpoint()
		if !ok {
			continue
		}
		lagRecords[ps.tenant] += ps.proc.Position() - cp.Offset
		if only != nil && !contains(only[tp.topic], tp.partition) {
			continue
		}
		if cp == ps.committed && !final {
			continue
		}
		t := byTopic[tp.topic]
		if t == nil {
			nt := kmsg.NewOffsetCommitRequestTopic()
			nt.Topic = tp.topic
			t = &nt
			byTopic[tp.topic] = t
		}
		p := kmsg.NewOffsetCommitRequestTopicPartition()
		p.Partition = tp.partition
		p.Offset = cp.Offset
		p.LeaderEpoch = -1
		md := cp.Metadata()
		p.Metadata = &md
		t.Partitions = append(t.Partitions, p)
		pending[tp] = cp
	}
	for tenantID, n := range open {
		s.metrics.windowsOpen.WithLabelValues(tenantID).Set(float64(n))
		s.metrics.checkpointLag.WithLabelValues(tenantID).Set(float64(lagRecords[tenantID]))
	}
	s.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	names := map[[16]byte]string{}
	for topic, t := range byTopic {
		id, err := s.topicID(ctx, cl, topic)
		if err != nil {
			s.metrics.commits.WithLabelValues("failed").Inc()
			s.log.Warn("cannot resolve the topic ID to commit a rollup checkpoint; the next commit retries", "topic", topic, "err", err)
			return
		}
		t.TopicID = id
		names[id] = topic
		req.Topics = append(req.Topics, *t)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		s.metrics.commits.WithLabelValues("failed").Inc()
		if ctx.Err() == nil {
			s.log.Warn("committing rollup checkpoints failed; the next commit retries", "err", err)
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var failed int
	for _, t := range resp.Topics {
		topic := t.Topic
		if topic == "" {
			topic = names[t.TopicID]
		}
		for _, p := range t.Partitions {
			tp := topicPartition{topic, p.Partition}
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				failed++
				if errors.Is(err, kerr.UnknownTopicID) {
					delete(s.topicIDs, topic)
				}
				s.log.Warn("committing a rollup checkpoint failed; the next commit retries", "topic", topic, "partition", p.Partition, "err", err)
				continue
			}
			if ps := s.parts[tp]; ps != nil {
				ps.committed = pending[tp]
			}
		}
	}
	if failed > 0 {
		s.metrics.commits.WithLabelValues("failed").Inc()
	} else {
		s.metrics.commits.WithLabelValues("committed").Inc()
	}
}

// topicID returns the ID of a topic, from the cache or the brokers.
func (s *Stage) topicID(ctx context.Context, cl *kgo.Client, topic string) ([16]byte, error) {
	s.mu.Lock()
	id, ok := s.topicIDs[topic]
	s.mu.Unlock()
	if ok {
		return id, nil
	}
	md, err := kadm.NewClient(cl).Metadata(ctx, topic)
	if err != nil {
		return id, err
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil {
		return id, fmt.Errorf("no metadata for %s: %v", topic, td.Err)
	}
	s.mu.Lock()
	s.topicIDs[topic] = [16]byte(td.ID)
	s.mu.Unlock()
	return [16]byte(td.ID), nil
}

func contains(ps []int32, p int32) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

// restore builds the state of newly assigned partitions from their
// committed checkpoints; consumption starts at the committed offset, the
// first record an open window depended on.
func (s *Stage) restore(ctx context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	var topics []string
	for t := range assigned {
		topics = append(topics, t)
	}
	committed, err := kadm.NewClient(s.client()).FetchOffsetsForTopics(ctx, s.cfg.Rollup.GroupID, topics...)
	if err != nil {
		return nil, fmt.Errorf("fetching rollup checkpoints: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for topic, parts := range assigned {
		tenantID, _, ok := kafka.ParseTopic(s.cfg.Kafka.TopicPrefix, topic)
		if !ok || tenant.ValidateID(tenantID) != nil {
			continue
		}
		for p := range parts {
			var cp *rollup.Checkpoint
			if o, ok := committed.Lookup(topic, p); ok && o.Err == nil && o.At >= 0 {
				c := rollup.ParseCheckpoint(o.At, o.Metadata)
				cp = &c
				parts[p] = kgo.NewOffset().At(c.Offset)
			}
			proc, err := rollup.NewPartition(rollup.Options{
				Tenant:                 tenantID,
				Partition:              p,
				Specs:                  s.specs(tenantID),
				SketchRelativeAccuracy: s.cfg.Rollup.SketchRelativeAccuracy,
			}, cp)
			if err != nil {
				return nil, fmt.Errorf("rollup specs of tenant %s: %w", tenantID, err)
			}
			ps := &partition{
				num:         p,
				tenant:      tenantID,
				rollupTo:    kafka.Topic(s.cfg.Kafka.TopicPrefix, tenantID, kafka.KindRollup),
				proc:        proc,
				emittedMark: proc.Watermark(),
			}
			if cp != nil {
				ps.committed = *cp
			}
			s.parts[topicPartition{topic, p}] = ps
			if cp != nil {
				s.log.Info("resuming rollups", "topic", topic, "partition", p, "offset", cp.Offset, "replay_until", cp.Position)
			}
		}
	}
	return assigned, nil
}

func (s *Stage) client() *kgo.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cl
}

func (s *Stage) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	s.commit(ctx, cl, revoked, true)
	s.forget(revoked)
}

func (s *Stage) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	s.forget(lost)
}

func (s *Stage) forget(parts map[string][]int32) {
	s.mu.Lock()
	for topic, ps := range parts {
		for _, p := range ps {
			delete(s.parts, topicPartition{topic, p})
		}
	}
	s.mu.Unlock()
	s.lag.Revoke(parts)
}
