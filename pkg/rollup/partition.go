package rollup

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/store"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/value"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
)

// Reasons a sample is left out of a window, as counted in
// weir_rollup_samples_discarded_total.
const (
	// ReasonLate: the window had closed (its end plus the allowed
	// lateness was at or below the watermark).
	ReasonLate = "late"
	// ReasonDuplicate: the series already had a sample with this
	// timestamp (a retried write).
	ReasonDuplicate = "duplicate"
	// ReasonOutOfOrder: the series already had a later sample.
	ReasonOutOfOrder = "out_of_order"
	// ReasonNonFinite: NaN or ±Inf (staleness markers are not samples and
	// are skipped silently).
	ReasonNonFinite = "non_finite"
	// ReasonFuture: more than the allowed lateness ahead of its record's
	// receive time; it would hold windows open far ahead.
	ReasonFuture = "future"
	// ReasonInvalidHistogram: a native histogram that cannot be decoded
	// or merged.
	ReasonInvalidHistogram = "invalid_histogram"
)

// DiscardKey groups discarded samples for counting.
type DiscardKey struct {
	Rollup     string
	Resolution string // ResolutionName
	Reason     string
}

// Options configure a Partition.
type Options struct {
	Tenant    string
	Partition int32
	// Specs are the tenant's rollups, validated.
	Specs []Spec
	// SketchRelativeAccuracy of the gauge sketches (0.01 when zero).
	SketchRelativeAccuracy float64
}

// unknownMark is the watermark before any record was seen.
const unknownMark = math.MinInt64

// Partition computes the rollups of one partition of a tenant's series
// topic. It is deterministic: given the same records in the same order,
// and restarted from any Checkpoint it returned, it emits rows with the
// same keys and values (docs/rollups.md explains why). It is not safe for
// concurrent use.
type Partition struct {
	opts    Options
	mapping *mapping.LogarithmicMapping
	specs   []*specState
	groups  map[uint64]*group
	hasher  record.Hasher

	watermark int64
	position  int64 // next offset to process
	started   bool  // position is known

	// resume is the checkpoint this state was restored from; until the
	// position reaches resume.Position the records were processed before,
	// so their rows were emitted and their discards counted already.
	resume Checkpoint
	quiet  bool

	out      []Row
	discards map[DiscardKey]int64
	accepted map[string]int64 // by rollup
	open     int
}

// group is a label set that windows aggregate: one series, or one group
// of an aggregating rollup. Windows share it; it is dropped when the last
// one closes.
type group struct {
	hash   uint64
	metric string
	labels map[string]string
	refs   int
}

type specState struct {
	spec     *Spec
	res      []int64 // ms, smallest first
	lateness int64
	// open windows per resolution, by window start.
	buckets []map[int64]*bucket
	// groupOf caches the group hash of a series hash (aggregating
	// rollups only).
	groupOf map[uint64]uint64
	// match caches whether a series' metric matches (rollups with a
	// metrics expression only).
	match map[uint64]bool
}

// bucket holds the windows of one rollup, resolution and start.
type bucket struct {
	start   int64
	windows map[uint64]*window
	// minOffset is the first record any of its windows depends on, and
	// minMark the watermark at that record: a restart must begin there.
	minOffset, minMark int64
}

func (b *bucket) depend(offset, mark int64) {
	if offset < b.minOffset {
		b.minOffset, b.minMark = offset, mark
	}
}

type window struct {
	group *group
	agg   aggregate
	// Coarsest windows only: what they remember of each member series.
	member  *memberState            // unaggregated rollups: the one series
	members map[uint64]*memberState // aggregating rollups
}

func (w *window) memberOf(hash uint64) *memberState {
	if w == nil {
		return nil
	}
	if w.members != nil {
		return w.members[hash]
	}
	return w.member
}

// NewPartition returns the state of a partition, restored from cp (nil
// for a partition never processed before).
func NewPartition(opts Options, cp *Checkpoint) (*Partition, error) {
	if opts.SketchRelativeAccuracy == 0 {
		opts.SketchRelativeAccuracy = 0.01
	}
	m, err := newMapping(opts.SketchRelativeAccuracy)
	if err != nil {
		return nil, fmt.Errorf("rollup sketch accuracy %v: %w", opts.SketchRelativeAccuracy, err)
	}
	p := &Partition{
		opts:      opts,
		mapping:   m,
		groups:    map[uint64]*group{},
		watermark: unknownMark,
		discards:  map[DiscardKey]int64{},
		accepted:  map[string]int64{},
	}
	// Specs are shared (a pipeline set); validating compiles into them.
	opts.Specs = slices.Clone(opts.Specs)
	for i := range opts.Specs {
		s := &opts.Specs[i]
		if err := s.Validate(); err != nil {
			return nil, err
		}
		ss := &specState{spec: s, lateness: time.Duration(s.AllowedLateness).Milliseconds()}
		for _, r := range s.Resolutions {
			ss.res = append(ss.res, time.Duration(r).Milliseconds())
			ss.buckets = append(ss.buckets, map[int64]*bucket{})
		}
		if s.Aggregated() {
			ss.groupOf = map[uint64]uint64{}
		}
		if s.metrics != nil {
			ss.match = map[uint64]bool{}
		}
		p.specs = append(p.specs, ss)
	}
	if cp != nil {
		p.resume = *cp
		p.position, p.started = cp.Offset, true
		p.watermark = cp.OffsetWatermark
		p.quiet = cp.Offset < cp.Position
		if !p.quiet {
			p.watermark = max(p.watermark, cp.Watermark)
		}
	}
	return p, nil
}

// Checkpoint is where the computation of a partition can restart. Offset
// is committed to Kafka as the group's offset, the rest travels in the
// commit's metadata (JSON, see Metadata).
type Checkpoint struct {
	// Offset is the first record any open window depends on (or the
	// position when none is open): a restart reads from here.
	Offset int64 `json:"-"`
	// OffsetWatermark is the watermark when that record was processed.
	OffsetWatermark int64 `json:"wr"`
	// Position is the next offset when the checkpoint was taken, and
	// Watermark the watermark then: every window with end + lateness at
	// or below it was closed and its row acknowledged by Kafka.
	Position  int64 `json:"p"`
	Watermark int64 `json:"w"`
}

// checkpointVersion tags the commit metadata.
const checkpointVersion = 1

// Metadata encodes the checkpoint for the offset commit's metadata.
func (c Checkpoint) Metadata() string {
	b, _ := json.Marshal(struct {
		V int `json:"weir_rollup"`
		Checkpoint
	}{checkpointVersion, c})
	return string(b)
}

// ParseCheckpoint reads a committed offset and its metadata. Metadata that
// is not a weir checkpoint (a commit by another tool) starts afresh at the
// offset.
func ParseCheckpoint(offset int64, metadata string) Checkpoint {
	var v struct {
		V int `json:"weir_rollup"`
		Checkpoint
	}
	if err := json.Unmarshal([]byte(metadata), &v); err != nil || v.V != checkpointVersion || v.Position < offset {
		return Checkpoint{Offset: offset, OffsetWatermark: unknownMark, Position: offset, Watermark: unknownMark}
	}
	v.Checkpoint.Offset = offset
	return v.Checkpoint
}

// Checkpoint returns where a restart would begin; ok is false before the
// partition's position is known.
func (p *Partition) Checkpoint() (cp Checkpoint, ok bool) {
	if !p.started {
		return Checkpoint{}, false
	}
	if p.quiet {
		// Still replaying: the restored checkpoint is the best there is.
		return p.resume, true
	}
	cp = Checkpoint{Offset: p.position, OffsetWatermark: p.watermark, Position: p.position, Watermark: p.watermark}
	for _, ss := range p.specs {
		for _, bs := range ss.buckets {
			for _, b := range bs {
				if b.minOffset < cp.Offset {
					cp.Offset, cp.OffsetWatermark = b.minOffset, b.minMark
				}
			}
		}
	}
	return cp, true
}

// Position is the next offset to process.
func (p *Partition) Position() int64 { return p.position }

// Watermark is the partition's watermark (Unix ms).
func (p *Partition) Watermark() int64 { return p.watermark }

// Replaying reports whether records processed before the checkpoint are
// being read again.
func (p *Partition) Replaying() bool { return p.quiet }

// OpenWindows is the number of open windows.
func (p *Partition) OpenWindows() int { return p.open }

// TakeRows returns the rows of the windows closed since the last call.
func (p *Partition) TakeRows() []Row {
	out := p.out
	p.out = nil
	return out
}

// TakeDiscards returns the discarded samples counted since the last call.
func (p *Partition) TakeDiscards() map[DiscardKey]int64 {
	if len(p.discards) == 0 {
		return nil
	}
	out := p.discards
	p.discards = map[DiscardKey]int64{}
	return out
}

// TakeAccepted returns, by rollup, the samples taken into at least one
// window since the last call.
func (p *Partition) TakeAccepted() map[string]int64 {
	if len(p.accepted) == 0 {
		return nil
	}
	out := p.accepted
	p.accepted = map[string]int64{}
	return out
}

// Skip moves past a record that carries no samples (a transaction marker,
// an unreadable record).
func (p *Partition) Skip(offset int64) {
	if p.started && offset < p.position {
		return
	}
	p.catchUp(offset)
	p.setPosition(offset + 1)
}

// Process takes one record of the series topic: its offset, its timestamp
// (the edge's receive time, Unix ms) and its series. Windows whose end
// plus allowed lateness the new watermark reaches close first; their rows
// are returned by TakeRows.
func (p *Partition) Process(offset, recordTime int64, series []prw.TimeSeries) {
	if p.started && offset < p.position {
		return
	}
	p.catchUp(offset)
	p.started = true
	if recordTime > p.watermark {
		p.watermark = recordTime
		p.closeReady()
	}
	for i := range series {
		p.processSeries(offset, recordTime, &series[i])
	}
	p.setPosition(offset + 1)
}

// Advance raises the watermark to mark (Unix ms) without a record, for a
// partition that received nothing for a while, and closes the windows it
// reaches. It is ignored while replaying.
func (p *Partition) Advance(mark int64) {
	if p.quiet || mark <= p.watermark {
		return
	}
	p.watermark = mark
	p.closeReady()
}

// Flush closes every open window, for the end of a recomputation.
func (p *Partition) Flush() {
	p.closeWhere(func(*specState, int, *bucket) bool { return true })
}

// catchUp ends the replay once the position of the restored checkpoint
// is reached: the watermark jumps to the checkpoint's (which an idle
// advance may have raised beyond the records'), closing quietly what was
// closed before.
func (p *Partition) catchUp(next int64) {
	if p.quiet && next >= p.resume.Position {
		p.watermark = max(p.watermark, p.resume.Watermark)
		p.closeReady()
		p.quiet = false
	}
}

func (p *Partition) setPosition(next int64) {
	p.position = next
	p.started = true
	p.catchUp(next)
}

func (ss *specState) closed(res int, start, mark int64) bool {
	return start+ss.res[res]+ss.lateness <= mark
}

func (p *Partition) closeReady() {
	mark := p.watermark
	p.closeWhere(func(ss *specState, res int, b *bucket) bool { return ss.closed(res, b.start, mark) })
}

// closeWhere closes the buckets cond selects, emitting their rows (unless
// replaying) in a fixed order: by window end, rollup, resolution, then
// series hash.
func (p *Partition) closeWhere(cond func(*specState, int, *bucket) bool) {
	type closing struct {
		spec, res int
		b         *bucket
		end       int64
	}
	var cs []closing
	for si, ss := range p.specs {
		for ri, bs := range ss.buckets {
			for _, b := range bs {
				if cond(ss, ri, b) {
					cs = append(cs, closing{si, ri, b, b.start + ss.res[ri]})
				}
			}
		}
	}
	sort.Slice(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.end != b.end {
			return a.end < b.end
		}
		if a.spec != b.spec {
			return a.spec < b.spec
		}
		return a.res < b.res
	})
	for _, c := range cs {
		ss := p.specs[c.spec]
		delete(ss.buckets[c.res], c.b.start)
		hashes := make([]uint64, 0, len(c.b.windows))
		for h := range c.b.windows {
			hashes = append(hashes, h)
		}
		slices.Sort(hashes)
		for _, h := range hashes {
			w := c.b.windows[h]
			if !p.quiet {
				p.out = append(p.out, p.row(ss, c.res, c.b.start, w))
			}
			p.release(w.group)
			p.open--
		}
	}
}

func (p *Partition) release(g *group) {
	g.refs--
	if g.refs == 0 {
		delete(p.groups, g.hash)
	}
}

func (p *Partition) discard(ss *specState, res int, reason string, n int64) {
	if p.quiet {
		return
	}
	p.discards[DiscardKey{ss.spec.Name, ResolutionName(ss.res[res]), reason}] += n
}

func (p *Partition) discardAll(ss *specState, reason string) {
	for i := range ss.res {
		p.discard(ss, i, reason, 1)
	}
}

// processSeries adds the samples of one series to every rollup taking it.
func (p *Partition) processSeries(offset, recordTime int64, ts *prw.TimeSeries) {
	metric := ""
	for _, l := range ts.Labels {
		if l.Name == model.MetricNameLabel {
			metric = l.Value
			break
		}
	}
	hash := p.hasher.Hash(p.opts.Tenant, ts.Labels)
	var hists []sample
	var histErrs int64
	for i := range ts.Histograms {
		h := &ts.Histograms[i]
		ih, fh, err := h.Decode()
		if err == nil && ih != nil {
			fh = ih.ToFloat(nil)
		}
		if err != nil || fh == nil {
			histErrs++
			continue
		}
		if value.IsStaleNaN(fh.Sum) {
			continue
		}
		hists = append(hists, sample{ts: h.Timestamp, h: fh, offset: offset, mark: p.watermark})
	}
	for _, ss := range p.specs {
		if !ss.takes(hash, metric) {
			continue
		}
		g := p.groupFor(ss, hash, metric, ts.Labels)
		fkind := floatKind(metric, ts.Metadata.Type)
		for i := range ts.Samples {
			s := &ts.Samples[i]
			if value.IsStaleNaN(s.Value) {
				continue
			}
			if math.IsNaN(s.Value) || math.IsInf(s.Value, 0) {
				p.discardAll(ss, ReasonNonFinite)
				continue
			}
			smp := sample{ts: s.Timestamp, v: s.Value, offset: offset, mark: p.watermark}
			p.add(ss, g, hash, fkind, recordTime, &smp)
		}
		for i := range hists {
			p.add(ss, g, hash, histogramKind(hists[i].h, ts.Metadata.Type), recordTime, &hists[i])
		}
		for i := int64(0); i < histErrs; i++ {
			p.discardAll(ss, ReasonInvalidHistogram)
		}
	}
}

func (ss *specState) takes(hash uint64, metric string) bool {
	if ss.match == nil {
		return true
	}
	m, ok := ss.match[hash]
	if !ok {
		if len(ss.match) > 1<<20 {
			clear(ss.match)
		}
		m = ss.spec.matches(metric)
		ss.match[hash] = m
	}
	return m
}

// groupFor returns the group a series belongs to in a rollup, interning
// its labels (copied: the series' strings alias the record).
func (p *Partition) groupFor(ss *specState, hash uint64, metric string, labels []prw.Label) *group {
	if ss.groupOf == nil {
		if g, ok := p.groups[hash]; ok {
			return g
		}
		return p.newGroup(hash, metric, labels)
	}
	if gh, ok := ss.groupOf[hash]; ok {
		if g, ok := p.groups[gh]; ok {
			return g
		}
	}
	kept := groupLabels(ss.spec, labels)
	gh := p.hasher.Hash(p.opts.Tenant, kept)
	if len(ss.groupOf) > 1<<20 {
		clear(ss.groupOf)
	}
	ss.groupOf[hash] = gh
	if g, ok := p.groups[gh]; ok {
		return g
	}
	return p.newGroup(gh, metric, kept)
}

// newGroup builds a group that no window references yet; it is interned
// when the first window opens for it.
func (p *Partition) newGroup(hash uint64, metric string, labels []prw.Label) *group {
	g := &group{hash: hash, metric: strings.Clone(metric), labels: make(map[string]string, len(labels))}
	for _, l := range labels {
		if l.Name != model.MetricNameLabel {
			g.labels[strings.Clone(l.Name)] = strings.Clone(l.Value)
		}
	}
	return g
}

// groupLabels are the labels a series keeps in an aggregating rollup:
// __name__, le and quantile always (so classic histogram buckets and
// summary quantiles stay apart), plus the by labels, or all but the
// without labels. labels are sorted, and so is the result.
func groupLabels(s *Spec, labels []prw.Label) []prw.Label {
	var out []prw.Label
	for _, l := range labels {
		keep := l.Name == model.MetricNameLabel || l.Name == "le" || l.Name == "quantile"
		if !keep {
			if len(s.By) > 0 {
				keep = slices.Contains(s.By, l.Name)
			} else {
				keep = !slices.Contains(s.Without, l.Name)
			}
		}
		if keep {
			out = append(out, l)
		}
	}
	return out
}

// add takes one sample of a series (member) into the windows of group g
// at every resolution of the rollup.
func (p *Partition) add(ss *specState, g *group, member uint64, kind string, recordTime int64, s *sample) {
	if s.ts > recordTime+ss.lateness {
		p.discardAll(ss, ReasonFuture)
		return
	}
	c := len(ss.res) - 1
	cstart := alignDown(s.ts, ss.res[c])
	if ss.closed(c, cstart, p.watermark) {
		p.discardAll(ss, ReasonLate)
		return
	}
	// Duplicates and order are judged in the coarsest window, which
	// contains the others, so every resolution decides alike.
	var cw *window
	if b := ss.buckets[c][cstart]; b != nil {
		cw = b.windows[g.hash]
	}
	m := cw.memberOf(member)
	if m != nil && s.ts <= m.lastTs {
		if s.ts == m.lastTs {
			p.discardAll(ss, ReasonDuplicate)
		} else {
			p.discardAll(ss, ReasonOutOfOrder)
		}
		return
	}
	// The previous sample, for counter steps: in this coarsest window, or
	// else in the previous one while it is still open.
	prev := m
	if prev == nil {
		if b := ss.buckets[c][cstart-ss.res[c]]; b != nil {
			prev = b.windows[g.hash].memberOf(member)
		}
	}
	taken := false
	for r := range ss.res {
		start := alignDown(s.ts, ss.res[r])
		if ss.closed(r, start, p.watermark) {
			p.discard(ss, r, ReasonLate, 1)
			continue
		}
		b, w := p.window(ss, r, start, g, kind, s)
		if s.h == nil {
			if w.agg.addFloat(s, prev, p.newSketch) {
				b.depend(prev.floatOffset, prev.floatMark)
			}
		} else {
			stepped, ok := w.agg.addHistogram(s, prev)
			if !ok {
				p.discard(ss, r, ReasonInvalidHistogram, 1)
				continue
			}
			if stepped {
				b.depend(prev.histOffset, prev.histMark)
			}
		}
		taken = true
		if r == c {
			cw = w
		}
	}
	if !taken {
		return
	}
	if !p.quiet {
		p.accepted[ss.spec.Name]++
	}
	// Remember the sample in the coarsest window.
	if m == nil {
		m = &memberState{}
		if cw.members != nil {
			cw.members[member] = m
		} else {
			cw.member = m
		}
	}
	m.lastTs = s.ts
	if s.h == nil {
		m.hasFloat, m.lastVal = true, s.v
		m.floatOffset, m.floatMark = s.offset, s.mark
	} else {
		m.lastHist = s.h
		m.histOffset, m.histMark = s.offset, s.mark
	}
}

// window returns the open window of group g at resolution r and start,
// opening it (and its bucket) for sample s if needed.
func (p *Partition) window(ss *specState, r int, start int64, g *group, kind string, s *sample) (*bucket, *window) {
	bs := ss.buckets[r]
	b := bs[start]
	if b == nil {
		b = &bucket{start: start, windows: map[uint64]*window{}, minOffset: math.MaxInt64}
		bs[start] = b
	}
	w := b.windows[g.hash]
	if w == nil {
		if _, ok := p.groups[g.hash]; !ok {
			p.groups[g.hash] = g
		}
		g.refs++
		w = &window{group: g, agg: aggregate{kind: kind}}
		if r == len(ss.res)-1 && ss.spec.Aggregated() {
			w.members = map[uint64]*memberState{}
		}
		b.windows[g.hash] = w
		p.open++
	}
	b.depend(s.offset, s.mark)
	return b, w
}

func (p *Partition) newSketch() *ddsketch.DDSketch {
	return ddsketch.NewDDSketchFromStoreProvider(p.mapping, store.DefaultProvider)
}

// row builds the row of a closing window.
func (p *Partition) row(ss *specState, r int, start int64, w *window) Row {
	a := &w.agg
	row := Row{
		Tenant:            p.opts.Tenant,
		Rollup:            ss.spec.Name,
		Partition:         p.opts.Partition,
		Metric:            w.group.metric,
		Labels:            w.group.labels,
		SeriesHash:        w.group.hash,
		ResolutionMs:      ss.res[r],
		WindowStartMs:     start,
		AllowedLatenessMs: ss.lateness,
		Kind:              a.kind,
		Count:             a.count,
		Resets:            a.resets,
		HistogramCount:    a.histCount,
	}
	if a.count > 0 {
		row.Sum, row.Min, row.Max = a.sum, a.min, a.max
		row.First, row.FirstTimestampMs = a.first, a.firstTs
		row.Last, row.LastTimestampMs = a.last, a.lastTs
	}
	if a.kind == KindCounter {
		inc := a.increase
		row.Increase = &inc
	}
	if a.sketch != nil {
		if b, err := EncodeSketch(a.sketch); err == nil {
			row.Sketch = b
		}
	}
	if a.hist != nil {
		h := a.hist.Copy().Compact(0)
		if a.kind == KindHistogram {
			// An increase is not a counter any more.
			h.CounterResetHint = histogram.GaugeType
		}
		wh := writev2.FromFloatHistogram(0, start, h)
		if b, err := wh.Marshal(); err == nil {
			row.Histogram = b
		}
	}
	return row
}

// alignDown returns the start of the window of size res holding ts.
func alignDown(ts, res int64) int64 {
	m := ts % res
	if m < 0 {
		m += res
	}
	return ts - m
}
