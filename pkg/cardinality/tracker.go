// Package cardinality tracks the active series of the tenants' raw
// partitions a stream worker owns, enforces series budgets on them, keeps
// the statistics the cardinality explorer shows, and writes and replays
// the ledger that carries this state through Kafka.
//
// A series is active while it was seen within the window (minute
// resolution, as timestamps are kept in minutes). Series are tracked by
// 64-bit hash (record.SeriesHash): a collision merges two series in the
// counts, which at a billion series happens to a handful; decisions about
// labels never rely on hashes alone (see pkg/pipeline).
package cardinality

import (
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/weir-metrics/weir/pkg/pipeline"
	"github.com/weir-metrics/weir/pkg/prw"
)

// Options configure a Tracker.
type Options struct {
	// Window is how long a series stays active after its last sample.
	Window time.Duration
	// LabelValuesLimit bounds the distinct values tracked per metric and
	// label for the explorer; a label that reaches it reports "at least".
	LabelValuesLimit int
	// RefusedLimit bounds the refused series remembered per partition,
	// which makes refusals count once per series.
	RefusedLimit int
}

// Verdict is what the budget does with one series.
type Verdict uint8

// Verdicts.
const (
	Admitted Verdict = iota
	RefusedTenant
	RefusedMetric
)

// Reason is the reason label of a refusal.
func (v Verdict) Reason() string {
	switch v {
	case RefusedTenant:
		return "tenant_series_limit"
	case RefusedMetric:
		return "metric_series_limit"
	}
	return ""
}

// Remote is what other workers published about a tenant's partitions this
// worker does not own; budgets count them too.
type Remote interface {
	Active(tenant string) int
	MetricActive(tenant, metric string) int
}

// Tracker holds the state of every owned partition. Its methods are safe
// for concurrent use; the stream worker calls Lock/Unlock around a batch
// of Admit calls so the hot path takes the lock once per record.
type Tracker struct {
	mu      sync.Mutex
	opts    Options
	window  uint32 // minutes
	refresh uint32 // minutes between ledger entries of an active series
	now     uint32 // minutes since the epoch, set by SetNow
	tenants map[string]*Tenant
}

// New returns an empty tracker.
func New(opts Options) *Tracker {
	w := uint32(max(1, opts.Window/time.Minute))
	if opts.LabelValuesLimit <= 0 {
		opts.LabelValuesLimit = 10000
	}
	if opts.RefusedLimit <= 0 {
		opts.RefusedLimit = 100000
	}
	return &Tracker{opts: opts, window: w, refresh: max(1, w/4), tenants: map[string]*Tenant{}, now: minute(time.Now())}
}

func minute(t time.Time) uint32 { return uint32(t.Unix() / 60) }

// Lock and Unlock guard a batch of Admit/ObserveDropped calls.
func (t *Tracker) Lock()   { t.mu.Lock() }
func (t *Tracker) Unlock() { t.mu.Unlock() }

// SetNow sets the clock of the next calls (minute resolution). Call with
// the lock held.
func (t *Tracker) SetNow(now time.Time) { t.now = minute(now) }

// Window is the active-series window.
func (t *Tracker) Window() time.Duration { return time.Duration(t.window) * time.Minute }

// Tenant is one tenant's state over its owned partitions.
type Tenant struct {
	name    string
	active  int
	metrics map[string]*metric
	parts   map[int32]*Partition
}

type metric struct {
	name   string
	active int // over owned partitions
	labels map[string]*labelValues
}

type labelValues struct {
	values map[uint64]uint32 // value hash → minute last seen
	full   bool
}

// growth counts new and refused series per minute over GrowthWindow
// minutes.
type growth struct {
	minute  [5]uint32
	new     [5]uint32
	refused [5]uint32
}

func (g *growth) slot(now uint32) int {
	i := int(now % 5)
	if g.minute[i] != now {
		g.minute[i], g.new[i], g.refused[i] = now, 0, 0
	}
	return i
}

func (g *growth) sums(now uint32) (n, r int) {
	for i := range g.minute {
		if g.minute[i]+5 > now {
			n += int(g.new[i])
			r += int(g.refused[i])
		}
	}
	return n, r
}

type partMetric struct {
	active int
	growth growth
}

type seriesEntry struct {
	minute uint32
	m      *metric
}

// dropBit marks raw series the pipeline drops: known, adding nothing.
const dropBit = 1 << 31

// Partition is the state of one raw partition of one tenant.
type Partition struct {
	tr      *Tracker
	t       *Tenant
	id      int32
	loaded  bool
	raw     map[uint64]uint32 // raw hash → minute | dropBit
	series  map[uint64]seriesEntry
	metrics map[*metric]*partMetric
	refused map[uint64]uint32
	pending []LedgerEntry
	// version counts changes, for publishers; filterVersion counts
	// changes of the raw set.
	version, filterVersion uint64
}

// Partition returns the state of a tenant's partition, creating it
// empty. loaded is false until MarkLoaded: the caller replays the ledger
// first. Call with the lock held.
func (t *Tracker) Partition(tenant string, p int32) *Partition {
	ten := t.tenants[tenant]
	if ten == nil {
		ten = &Tenant{name: strings.Clone(tenant), metrics: map[string]*metric{}, parts: map[int32]*Partition{}}
		t.tenants[ten.name] = ten
	}
	pt := ten.parts[p]
	if pt == nil {
		pt = &Partition{tr: t, t: ten, id: p, raw: map[uint64]uint32{}, series: map[uint64]seriesEntry{}, metrics: map[*metric]*partMetric{}, refused: map[uint64]uint32{}}
		ten.parts[p] = pt
	}
	return pt
}

// Loaded reports whether the partition's ledger was replayed.
func (p *Partition) Loaded() bool { return p.loaded }

// MarkLoaded records that the ledger was replayed.
func (p *Partition) MarkLoaded() { p.loaded = true }

// Forget drops a partition's state: it was revoked, or its in-memory
// state may be ahead of what Kafka committed (an aborted transaction).
// The next owner replays the ledger. Call with the lock held.
func (t *Tracker) Forget(tenant string, p int32) {
	ten := t.tenants[tenant]
	if ten == nil {
		return
	}
	pt := ten.parts[p]
	if pt == nil {
		return
	}
	for m, pm := range pt.metrics {
		m.active -= pm.active
	}
	ten.active -= len(pt.series)
	delete(ten.parts, p)
}

// Owned lists the partitions of tenant with state.
func (t *Tracker) Owned(tenant string) map[int32]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[int32]bool{}
	if ten := t.tenants[tenant]; ten != nil {
		for p := range ten.parts {
			out[p] = true
		}
	}
	return out
}

func (ten *Tenant) metric(name string) *metric {
	m := ten.metrics[name]
	if m == nil {
		m = &metric{name: strings.Clone(name), labels: map[string]*labelValues{}}
		ten.metrics[m.name] = m
	}
	return m
}

func (p *Partition) partMetric(m *metric) *partMetric {
	pm := p.metrics[m]
	if pm == nil {
		pm = &partMetric{}
		p.metrics[m] = pm
	}
	return pm
}

// Admit decides whether a series the pipeline kept may pass the budget,
// and tracks it. A series already active always passes; a new one passes
// while the tenant and its metric are under their limits, counting what
// other workers published through remote (may be nil). Call with the lock
// held.
func (p *Partition) Admit(res *pipeline.Result, b *pipeline.Budget, remote Remote) Verdict {
	now := p.tr.now
	if v, ok := p.raw[res.RawHash]; ok && v&dropBit == 0 {
		if v == now {
			return Admitted // seen this minute: nothing to update
		}
		if e, ok := p.series[res.OutHash]; ok {
			p.raw[res.RawHash] = now
			p.touch(res, e, v)
			return Admitted
		}
		// The output series expired, or a reloaded pipeline maps this
		// raw series elsewhere: it is new again.
	}
	if e, ok := p.series[res.OutHash]; ok {
		// A raw series relabeled onto a series already active.
		p.raw[res.RawHash] = now
		p.filterVersion++
		p.touch(res, e, 0)
		return Admitted
	}
	m := p.t.metric(res.Metric)
	if b != nil && b.MaxSeries > 0 {
		usage := p.t.active
		if remote != nil {
			usage += remote.Active(p.t.name)
		}
		if usage >= b.MaxSeries {
			p.refuse(res, m)
			return RefusedTenant
		}
	}
	if lim := b.MetricLimit(res.Metric); lim > 0 {
		usage := m.active
		if remote != nil {
			usage += remote.MetricActive(p.t.name, m.name)
		}
		if usage >= lim {
			p.refuse(res, m)
			return RefusedMetric
		}
	}
	p.series[res.OutHash] = seriesEntry{minute: now, m: m}
	p.raw[res.RawHash] = now
	delete(p.refused, res.RawHash)
	m.active++
	p.t.active++
	pm := p.partMetric(m)
	pm.active++
	pm.growth.new[pm.growth.slot(now)]++
	p.noteLabels(m, res.Labels)
	p.pending = append(p.pending, LedgerEntry{Raw: res.RawHash, Out: res.OutHash, Metric: m.name})
	p.version++
	p.filterVersion++
	return Admitted
}

// touch refreshes an active output series; lastRaw is the raw series'
// previous minute (0 if new), which decides whether the ledger needs a
// new entry for it.
func (p *Partition) touch(res *pipeline.Result, e seriesEntry, lastRaw uint32) {
	now := p.tr.now
	if e.minute != now {
		if e.minute/p.tr.refresh != now/p.tr.refresh {
			p.noteLabels(e.m, res.Labels)
		}
		e.minute = now
		p.series[res.OutHash] = e
	}
	if lastRaw == 0 || lastRaw/p.tr.refresh != now/p.tr.refresh {
		p.pending = append(p.pending, LedgerEntry{Raw: res.RawHash, Out: res.OutHash, Metric: e.m.name})
	}
}

func (p *Partition) refuse(res *pipeline.Result, m *metric) {
	now := p.tr.now
	if _, seen := p.refused[res.RawHash]; seen {
		p.refused[res.RawHash] = now
		return
	}
	if len(p.refused) < p.tr.opts.RefusedLimit {
		p.refused[res.RawHash] = now
	}
	pm := p.partMetric(m)
	pm.growth.refused[pm.growth.slot(now)]++
	p.noteLabels(m, res.Labels)
	p.version++
}

// ObserveDropped tracks a raw series the pipeline drops: the edge may
// let it through even when the tenant is at its budget.
func (p *Partition) ObserveDropped(raw uint64) {
	now := p.tr.now
	v, ok := p.raw[raw]
	if ok && v == now|dropBit {
		return
	}
	p.raw[raw] = now | dropBit
	if !ok || v&dropBit == 0 {
		p.filterVersion++
	}
	if !ok || (v&^dropBit)/p.tr.refresh != now/p.tr.refresh {
		p.pending = append(p.pending, LedgerEntry{Raw: raw})
	}
}

// noteLabels records the values of a series' labels for the explorer.
func (p *Partition) noteLabels(m *metric, ls []prw.Label) {
	now := p.tr.now
	for _, l := range ls {
		if l.Name == "__name__" {
			continue
		}
		lv := m.labels[l.Name]
		if lv == nil {
			lv = &labelValues{values: map[uint64]uint32{}}
			m.labels[strings.Clone(l.Name)] = lv
		}
		h := xxhash.Sum64String(l.Value)
		if _, ok := lv.values[h]; ok || len(lv.values) < p.tr.opts.LabelValuesLimit {
			lv.values[h] = now
		} else {
			lv.full = true
		}
	}
}

func (ten *Tenant) growing(m *metric) bool {
	for _, p := range ten.parts {
		if _, ok := p.metrics[m]; ok {
			return true
		}
	}
	return false
}

// TakeLedger returns the ledger entries recorded since the last call.
func (p *Partition) TakeLedger() []LedgerEntry {
	out := p.pending
	p.pending = nil
	return out
}

// Sweep expires series not seen within the window. Call it about once a
// minute.
func (t *Tracker) Sweep(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.now = minute(now)
	if t.now < t.window {
		return
	}
	cut := t.now - t.window // entries last seen before cut are gone
	for name, ten := range t.tenants {
		for _, p := range ten.parts {
			for h, v := range p.raw {
				if v&^dropBit < cut {
					delete(p.raw, h)
					p.filterVersion++
				}
			}
			for h, e := range p.series {
				if e.minute < cut {
					delete(p.series, h)
					e.m.active--
					ten.active--
					p.partMetric(e.m).active--
					p.version++
				}
			}
			for h, v := range p.refused {
				if v < cut {
					delete(p.refused, h)
				}
			}
			for m, pm := range p.metrics {
				if n, r := pm.growth.sums(t.now); pm.active == 0 && n == 0 && r == 0 {
					delete(p.metrics, m)
				}
			}
		}
		for mn, m := range ten.metrics {
			for ln, lv := range m.labels {
				for h, v := range lv.values {
					if v < cut {
						delete(lv.values, h)
					}
				}
				if len(lv.values) < t.opts.LabelValuesLimit {
					lv.full = false
				}
				if len(lv.values) == 0 {
					delete(m.labels, ln)
				}
			}
			if m.active == 0 && len(m.labels) == 0 && !ten.growing(m) {
				delete(ten.metrics, mn)
			}
		}
		if len(ten.parts) == 0 && len(ten.metrics) == 0 {
			delete(t.tenants, name)
		}
	}
}
