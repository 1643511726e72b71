// Package replay re-reads a tenant's raw topic over a time range and
// rebuilds what the pipeline derived from it: the series the sinks store
// (into TSDB) and the rollups the Parquet files hold. Live ingest goes on
// meanwhile: replayed series are appended where the TSDB takes them
// (duplicates of stored samples are no-ops, older ones go through the
// out-of-order window) and recomputed rollup rows carry a generation that
// makes them replace the files of the hours they cover.
package replay

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/kafka"
	"github.com/weir-metrics/weir/pkg/pipeline"
	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
	"github.com/weir-metrics/weir/pkg/rollup"
)

// Targets a replay can rebuild.
const (
	IntoTSDB    = "tsdb"
	IntoRollups = "rollups"
	IntoAll     = "all"
)

// Options describe a replay.
type Options struct {
	Tenant   string
	From, To time.Time
	// Into is tsdb, rollups or all.
	Into string
	// ID names the replay; running it again with the same ID resumes it.
	ID             string
	TopicPrefix    string
	Partitions     int // of the series and rollup topics
	MaxRecordBytes int
	// Pipelines relabel and guard the replayed series as the stream stage
	// does. Series budgets are not applied: a replay rebuilds what the
	// data says, it does not compete with live series for the budget.
	Pipelines *pipeline.Set
	// Rollups are the tenant's rollup specs (for into rollups or all).
	Rollups []rollup.Spec
	// Generation marks recomputed rollup rows; it must exceed every
	// earlier replay's. Zero takes the current time in milliseconds.
	Generation int64
	// Progress, when set, is called about once a second and at the end.
	Progress func(Progress)
	Logger   *slog.Logger
}

// Progress is how far a replay got.
type Progress struct {
	Records, TotalRecords int64
	Bytes                 int64
	Samples               int64
	SeriesRecords         int64 // produced to the series topic
	RollupRows            int64 // produced to the rollup topic
	// RollupDiscarded counts samples the recomputation did not take, by
	// reason (late, duplicate, …).
	RollupDiscarded map[string]int64
	Elapsed         time.Duration
	Done            bool
}

// Rate is records per second so far.
func (p Progress) Rate() float64 { return float64(p.Records) / max(p.Elapsed.Seconds(), 1e-3) }

// ETA estimates the time left.
func (p Progress) ETA() time.Duration {
	r := p.Rate()
	if r <= 0 || p.Records >= p.TotalRecords {
		return 0
	}
	return time.Duration(float64(p.TotalRecords-p.Records) / r * float64(time.Second))
}

// GroupID is the consumer group a replay keeps its progress in.
func GroupID(id string) string { return "weir-replay-" + id }

// DefaultID names a replay after what it does, so the same command
// resumes.
func DefaultID(tenant string, from, to time.Time, into string) string {
	return fmt.Sprintf("%s-%d-%d-%s", tenant, from.UnixMilli(), to.UnixMilli(), into)
}

// Run replays with a Kafka client made of opts (which must include the
// producer options). It returns when every partition was read to the end
// of the range and everything produced was acknowledged, or ctx ended (the
// progress of the series output is committed, so the same ID resumes).
func Run(ctx context.Context, opts []kgo.Opt, o Options) (Progress, error) {
	switch o.Into {
	case IntoTSDB, IntoRollups, IntoAll:
	default:
		return Progress{}, fmt.Errorf("--into %q is not tsdb, rollups or all", o.Into)
	}
	if !o.From.Before(o.To) {
		return Progress{}, fmt.Errorf("--from %s is not before --to %s", o.From.UTC().Format(time.RFC3339), o.To.UTC().Format(time.RFC3339))
	}
	if o.Generation == 0 {
		o.Generation = time.Now().UnixMilli()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	admin, err := kgo.NewClient(opts...)
	if err != nil {
		return Progress{}, err
	}
	r, err := newRun(ctx, admin, o)
	admin.Close()
	if err != nil {
		return Progress{}, err
	}
	assign := map[string]map[int32]kgo.Offset{r.raw: {}}
	for p, s := range r.start {
		if s < r.end[p] {
			assign[r.raw][p] = kgo.NewOffset().At(s)
		}
	}
	cl, err := kgo.NewClient(append(opts, kgo.ConsumePartitions(assign))...)
	if err != nil {
		return Progress{}, err
	}
	defer cl.Close()
	r.cl, r.adm = cl, kadm.NewClient(cl)
	return r.run(ctx, len(assign[r.raw]))
}

type run struct {
	o      Options
	cl     *kgo.Client
	adm    *kadm.Client
	raw    string
	series string
	rollup string

	// Raw offsets: [start, end) per partition, the TSDB output's own
	// range [tsdbStart, tsdbEnd) within it, and where a resumed replay
	// had got to.
	start, end         map[int32]int64
	tsdbStart, tsdbEnd map[int32]int64
	resumed            map[int32]int64
	// Rollups: the hours [hourFrom, hourTo) recomputed, and the event
	// times of the samples that feed them, [eventFrom, hourTo+lateness).
	hourFrom, hourTo, eventFrom int64
	lateness                    time.Duration

	// workers each replay the records of some partitions; one when
	// rollups are recomputed (they collect into the run's state).
	workers []*worker
	parts   map[int32]*rollup.Partition
	offsets map[int32]int64 // synthetic offsets fed to rollup partitions
	// Kept for the rollups: samples, histograms and interned series.
	points []point
	hists  []prw.Histogram
	kept   []rollupSeries
	index  map[string]int32
	key    []byte

	mu      sync.Mutex
	prodErr error
	p       Progress
}

func newRun(ctx context.Context, cl *kgo.Client, o Options) (*run, error) {
	r := &run{
		o: o, adm: kadm.NewClient(cl),
		raw:     kafka.Topic(o.TopicPrefix, o.Tenant, kafka.KindRaw),
		series:  kafka.Topic(o.TopicPrefix, o.Tenant, kafka.KindSeries),
		rollup:  kafka.Topic(o.TopicPrefix, o.Tenant, kafka.KindRollup),
		parts:   map[int32]*rollup.Partition{},
		index:   map[string]int32{},
		offsets: map[int32]int64{},
	}
	var err error
	if r.tsdbStart, err = r.offsetsAt(ctx, o.From); err != nil {
		return nil, err
	}
	if r.tsdbEnd, err = r.offsetsAt(ctx, o.To); err != nil {
		return nil, err
	}
	r.start, r.end = r.tsdbStart, r.tsdbEnd
	if r.rollups() {
		if len(o.Rollups) == 0 {
			return nil, errors.New("the tenant has no rollups to recompute")
		}
		// Rollup files hold whole hours: recompute every hour the range
		// touches, by event time. Samples of those hours may have arrived
		// any time since (a backfill), so read from shortly before the
		// first hour to the end of the topic; take the samples of one
		// largest window before the first hour too, so counters have
		// their previous sample at the first boundary as live had.
		var largest time.Duration
		for _, s := range o.Rollups {
			largest = max(largest, time.Duration(s.Resolutions[len(s.Resolutions)-1]))
			r.lateness = max(r.lateness, time.Duration(s.AllowedLateness))
		}
		from := o.From.Truncate(time.Hour)
		to := o.To.Add(time.Hour - 1).Truncate(time.Hour)
		r.hourFrom, r.hourTo = from.UnixMilli(), to.UnixMilli()
		r.eventFrom = from.Add(-largest).UnixMilli()
		if now := time.Now(); to.Add(r.lateness).After(now) {
			return nil, fmt.Errorf("the hour ending %s is not complete yet (allowed lateness %s): replay rollups of hours that ended, with --to at most %s",
				to.UTC().Format(time.RFC3339), r.lateness, now.Add(-r.lateness).Truncate(time.Hour).UTC().Format(time.RFC3339))
		}
		// Event time is at most the edge's future skew ahead of receive
		// time; an hour's samples were received after it began, minus that.
		if r.start, err = r.offsetsAt(ctx, time.UnixMilli(r.eventFrom).Add(-maxFutureSkew)); err != nil {
			return nil, err
		}
		if r.end, err = r.endOffsets(ctx); err != nil {
			return nil, err
		}
	}
	committed, err := r.adm.FetchOffsets(ctx, GroupID(o.ID))
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return nil, fmt.Errorf("reading the progress of replay %s: %w", o.ID, err)
	}
	// Partitions are independent: replaying them on every core is what
	// makes a replay faster than live ingest. Rollups are collected into
	// one state, so they are recomputed on one.
	n := runtime.GOMAXPROCS(0)
	if r.rollups() {
		n = 1
	}
	cache := pipeline.NewCache(32 << 20) // shared: fastcache is safe for concurrent use
	for range n {
		r.workers = append(r.workers, &worker{proc: pipeline.NewProcessor(cache)})
	}
	r.resumed = map[int32]int64{}
	committed.Each(func(c kadm.OffsetResponse) {
		if c.Topic == r.raw && c.Err == nil {
			r.resumed[c.Partition] = c.At
		}
	})
	for p, s := range r.start {
		r.p.TotalRecords += max(0, r.end[p]-s)
		if !r.rollups() {
			// Only the TSDB output resumes: rollups are recomputed from
			// the start of their hours (they are emitted at the end).
			if at, ok := r.resumed[p]; ok && at > s {
				r.start[p] = min(at, r.end[p])
				r.p.Records += r.start[p] - s
			}
		}
	}
	return r, nil
}

func (r *run) rollups() bool { return r.o.Into == IntoRollups || r.o.Into == IntoAll }
func (r *run) tsdb() bool    { return r.o.Into == IntoTSDB || r.o.Into == IntoAll }

// maxFutureSkew bounds how far ahead of its receive time a sample's
// timestamp can be for replay to find it; the edge refuses samples further
// ahead than edge.max_future_skew (10m by default).
const maxFutureSkew = time.Hour

// endOffsets lists the end offset of each partition of the raw topic.
func (r *run) endOffsets(ctx context.Context) (map[int32]int64, error) {
	listed, err := r.adm.ListEndOffsets(ctx, r.raw)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing end offsets of %s: %w", r.raw, err)
	}
	out := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// offsetsAt lists, per partition of the raw topic, the first offset whose
// record time is at or after t (the end offset when there is none).
func (r *run) offsetsAt(ctx context.Context, t time.Time) (map[int32]int64, error) {
	listed, err := r.adm.ListOffsetsAfterMilli(ctx, t.UnixMilli(), r.raw)
	if err != nil {
		return nil, fmt.Errorf("listing offsets of %s at %s: %w", r.raw, t.UTC().Format(time.RFC3339), err)
	}
	if err := listed.Error(); err != nil {
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("tenant %s has no raw topic %s: nothing to replay", r.o.Tenant, r.raw)
		}
		return nil, fmt.Errorf("listing offsets of %s: %w", r.raw, err)
	}
	out := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

func (r *run) run(ctx context.Context, remaining int) (Progress, error) {
	start := time.Now()
	var lastReport, lastCommit time.Time
	report := func(done bool) {
		r.p.Elapsed = time.Since(start)
		r.p.Done = done
		if r.o.Progress != nil {
			r.o.Progress(r.p)
		}
	}
	next := map[int32]int64{}
	for remaining > 0 {
		fetches := r.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			// Commit what was acknowledged so far, the same ID resumes
			// from there; bounded, as Kafka may be what is gone.
			fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := r.finishTSDB(fctx, next); err != nil {
				r.o.Logger.Warn("saving the replay's progress", "err", err)
			}
			cancel()
			report(false)
			return r.p, ctx.Err()
		}
		if err := fetches.Err0(); err != nil && !errors.Is(err, context.Canceled) {
			return r.p, fmt.Errorf("reading %s: %w", r.raw, err)
		}
		// Each worker takes whole partitions, in order; the poll's
		// partitions are done when every worker is.
		var wg sync.WaitGroup
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			end := r.end[fp.Partition]
			var recs []*kgo.Record
			for _, rec := range fp.Records {
				if rec.Offset < end {
					recs = append(recs, rec)
				}
			}
			if len(recs) == 0 {
				return
			}
			last := recs[len(recs)-1].Offset
			next[fp.Partition] = last + 1
			if last+1 >= end {
				remaining--
				r.cl.RemoveConsumePartitions(map[string][]int32{r.raw: {fp.Partition}})
			}
			w := r.workers[int(fp.Partition)%len(r.workers)]
			w.queue = append(w.queue, recs...)
		})
		for _, w := range r.workers {
			if len(w.queue) == 0 {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, rec := range w.queue {
					r.one(ctx, w, rec)
				}
				clear(w.queue)
				w.queue = w.queue[:0]
			}()
		}
		wg.Wait()
		for _, w := range r.workers {
			r.p.Records += w.p.Records
			r.p.Bytes += w.p.Bytes
			r.p.Samples += w.p.Samples
			r.p.SeriesRecords += w.p.SeriesRecords
			w.p = Progress{}
		}
		if err := r.err(); err != nil {
			return r.p, err
		}
		if time.Since(lastCommit) >= 5*time.Second {
			r.finishTSDB(ctx, next)
			lastCommit = time.Now()
		}
		if time.Since(lastReport) >= time.Second {
			report(false)
			lastReport = time.Now()
		}
	}
	if r.rollups() {
		r.emitRollups(ctx)
	}
	if err := r.finishTSDB(ctx, next); err != nil {
		return r.p, err
	}
	report(true)
	return r.p, r.err()
}

// worker replays the records of some partitions with its own pipeline
// processor and buffers.
type worker struct {
	proc    *pipeline.Processor
	builder record.Builder
	req     prw.Request
	out     []prw.TimeSeries
	queue   []*kgo.Record
	// p counts what this worker did since the run last added it up.
	p Progress
}

// one replays one raw record.
func (r *run) one(ctx context.Context, w *worker, rec *kgo.Record) {
	w.p.Records++
	w.p.Bytes += int64(len(rec.Value))
	meta, err := record.ParseHeaders(rec.Headers)
	if err == nil {
		w.req.Reset()
		err = record.Decode(meta, rec.Value, &w.req)
	}
	if err != nil {
		r.o.Logger.Warn("skipping unreadable raw record", "partition", rec.Partition, "offset", rec.Offset, "err", err)
		return
	}
	w.proc.BeginBatch()
	w.out = w.out[:0]
	// pass: every series stays as it is and where it is, so the raw value
	// is the series record as is (the common case, and the cheapest).
	pass := true
	for i := range w.req.Series {
		ts := w.req.Series[i]
		res := w.proc.Process(r.o.Pipelines, r.o.Tenant, ts.Labels)
		if res.Drop != "" {
			pass = false
			continue
		}
		if res.Changed || int32(res.RawHash%uint64(r.o.Partitions)) != rec.Partition {
			pass = false
		}
		if res.Changed {
			// The processor reuses these labels' memory; rollup windows
			// keep them.
			ts.Labels = cloneLabels(res.Labels)
		}
		w.p.Samples += int64(len(ts.Samples) + len(ts.Histograms))
		w.out = append(w.out, ts)
	}
	if len(w.out) == 0 {
		return
	}
	inTSDBRange := rec.Offset >= r.tsdbStart[rec.Partition] && rec.Offset < r.tsdbEnd[rec.Partition]
	if r.tsdb() && inTSDBRange && rec.Offset >= r.resumed[rec.Partition] {
		headers := append(append([]kgo.RecordHeader(nil), rec.Headers...), kgo.RecordHeader{Key: record.HeaderReplay, Value: []byte(r.o.ID)})
		if pass {
			w.p.SeriesRecords++
			r.cl.Produce(ctx, &kgo.Record{Topic: r.series, Partition: rec.Partition, Value: rec.Value, Headers: headers, Timestamp: rec.Timestamp}, r.promise)
			if r.rollups() {
				r.collectRollups(w.out)
			}
			return
		}
		enc, err := w.builder.Build(r.o.Tenant, w.out, r.o.Partitions, r.o.MaxRecordBytes)
		if err != nil {
			r.fail(err)
			return
		}
		for _, e := range enc {
			w.p.SeriesRecords++
			r.cl.Produce(ctx, &kgo.Record{Topic: r.series, Partition: e.Partition, Value: e.Value, Headers: headers, Timestamp: rec.Timestamp}, r.promise)
		}
	}
	if r.rollups() {
		r.collectRollups(w.out)
	}
}

// collectRollups keeps the samples of the record whose event times matter
// to the recomputed hours. They are fed to the rollup computations at the
// end, sorted by event time with each instant's own time as the
// computation's clock, rather than the receive time: history that arrived
// late (a backfill) then counts as it would have live, whatever order the
// raw topic holds it in. This costs memory: about 24 bytes per sample and
// the labels of each series once.
func (r *run) collectRollups(out []prw.TimeSeries) {
	until := r.hourTo + r.lateness.Milliseconds()
	for i := range out {
		ts := &out[i]
		idx := -1
		series := func() int32 {
			if idx < 0 {
				idx = int(r.seriesIndex(ts))
			}
			return int32(idx)
		}
		for _, s := range ts.Samples {
			if s.Timestamp >= r.eventFrom && s.Timestamp < until {
				r.points = append(r.points, point{t: s.Timestamp, v: s.Value, series: series(), hist: -1})
			}
		}
		for _, h := range ts.Histograms {
			if h.Timestamp >= r.eventFrom && h.Timestamp < until {
				r.hists = append(r.hists, prw.Histogram{Timestamp: h.Timestamp, Raw: bytes.Clone(h.Raw)})
				r.points = append(r.points, point{t: h.Timestamp, series: series(), hist: int32(len(r.hists) - 1)})
			}
		}
	}
}

// point is one sample kept for the rollups.
type point struct {
	t      int64
	v      float64
	series int32
	hist   int32 // index into run.hists, or -1 for a float sample
}

// rollupSeries is a series kept for the rollups, with its partition.
type rollupSeries struct {
	labels   []prw.Label
	metadata prw.Metadata
	part     int32
}

// seriesIndex interns a series' labels (copied: they alias the record).
func (r *run) seriesIndex(ts *prw.TimeSeries) int32 {
	r.key = record.AppendSeriesKey(r.key[:0], "", ts.Labels)
	if i, ok := r.index[string(r.key)]; ok {
		return i
	}
	i := int32(len(r.kept))
	r.index[string(r.key)] = i
	r.kept = append(r.kept, rollupSeries{
		labels:   cloneLabels(ts.Labels),
		metadata: prw.Metadata{Type: ts.Metadata.Type, Help: strings.Clone(ts.Metadata.Help), Unit: strings.Clone(ts.Metadata.Unit)},
		part:     record.Partition(r.o.Tenant, ts.Labels, r.o.Partitions),
	})
	return i
}

// feedRollups gives the kept samples to the rollup computations in event
// time order.
func (r *run) feedRollups() error {
	slices.SortStableFunc(r.points, func(a, b point) int { return cmp.Compare(a.t, b.t) })
	byPart := map[int32][]prw.TimeSeries{}
	for len(r.points) > 0 {
		t := r.points[0].t
		n := 1
		for n < len(r.points) && r.points[n].t == t {
			n++
		}
		clear(byPart)
		for k := range r.points[:n] {
			pt := &r.points[k]
			sr := &r.kept[pt.series]
			one := prw.TimeSeries{Labels: sr.labels, Metadata: sr.metadata}
			if pt.hist >= 0 {
				one.Histograms = r.hists[pt.hist : pt.hist+1]
			} else {
				one.Samples = []prw.Sample{{Value: pt.v, Timestamp: pt.t}}
			}
			byPart[sr.part] = append(byPart[sr.part], one)
		}
		for p, series := range byPart {
			part, err := r.partition(p)
			if err != nil {
				return err
			}
			r.offsets[p]++
			part.Process(r.offsets[p], t, series)
		}
		r.points = r.points[n:]
	}
	return nil
}

func (r *run) partition(p int32) (*rollup.Partition, error) {
	if part, ok := r.parts[p]; ok {
		return part, nil
	}
	part, err := rollup.NewPartition(rollup.Options{Tenant: r.o.Tenant, Partition: p, Specs: r.o.Rollups}, nil)
	if err != nil {
		return nil, err
	}
	r.parts[p] = part
	return part, nil
}

// emitRollups closes every window and produces the rows of the replayed
// hours, marked with the replay's generation.
func (r *run) emitRollups(ctx context.Context) {
	if err := r.feedRollups(); err != nil {
		r.fail(err)
		return
	}
	lateness := r.lateness.Milliseconds()
	r.p.RollupDiscarded = map[string]int64{}
	for p, part := range r.parts {
		part.Flush()
		for k, n := range part.TakeDiscards() {
			r.p.RollupDiscarded[k.Reason] += n
		}
		var rows []rollup.Row
		for _, row := range part.TakeRows() {
			if row.WindowStartMs >= r.hourFrom && row.WindowStartMs < r.hourTo {
				rows = append(rows, row)
			}
		}
		values, err := rollup.EncodeRows(rows, min(1<<20, r.o.MaxRecordBytes))
		if err != nil {
			r.fail(err)
			return
		}
		headers := rollup.Headers(rollup.Meta{Tenant: r.o.Tenant, Watermark: r.hourTo + lateness, Generation: r.o.Generation})
		for _, v := range values {
			r.cl.Produce(ctx, &kgo.Record{Topic: r.rollup, Partition: p, Value: v, Headers: headers}, r.promise)
		}
		r.p.RollupRows += int64(len(rows))
	}
}

// finishTSDB waits until Kafka acknowledged what was produced, then
// records how far the series output got, so an interrupted replay resumes
// there.
func (r *run) finishTSDB(ctx context.Context, next map[int32]int64) error {
	if err := r.cl.Flush(ctx); err != nil {
		return fmt.Errorf("waiting for Kafka: %w", err)
	}
	if err := r.err(); err != nil || !r.tsdb() || len(next) == 0 {
		return err
	}
	offsets := kadm.Offsets{}
	for p, n := range next {
		offsets.Add(kadm.Offset{Topic: r.raw, Partition: p, At: n, LeaderEpoch: -1})
	}
	resp, err := r.adm.CommitOffsets(ctx, GroupID(r.o.ID), offsets)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("recording the progress of replay %s: %w", r.o.ID, err)
	}
	return nil
}

func (r *run) promise(_ *kgo.Record, err error) {
	if err != nil {
		r.fail(err)
	}
}

func (r *run) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.prodErr == nil {
		r.prodErr = err
	}
}

func (r *run) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.prodErr
}

func cloneLabels(ls []prw.Label) []prw.Label {
	out := make([]prw.Label, len(ls))
	for i, l := range ls {
		out[i] = prw.Label{Name: strings.Clone(l.Name), Value: strings.Clone(l.Value)}
	}
	return out
}
