package cardinality

import (
	"sort"
	"time"

	"github.com/weir-metrics/weir/pkg/budget"
	"github.com/weir-metrics/weir/pkg/pipeline"
)

// snapshotMetrics bounds the metrics one partition state lists: the
// largest by active series, then the fastest growing and those with a
// limit of their own.
const snapshotMetrics = 200

// Version changes whenever the partition's published state would.
func (p *Partition) Version() uint64 { return p.version + p.filterVersion }

// Snapshot is the partition's state for the state topic. withFilter adds
// the Bloom filter of raw series that add nothing to the budget (the edge
// needs it near a limit). Call with the lock held.
func (p *Partition) Snapshot(b *pipeline.Budget, partitions int, at time.Time, withFilter bool) *budget.PartitionState {
	s := &budget.PartitionState{
		Version:       budget.StateVersion,
		Tenant:        p.t.name,
		Partition:     p.id,
		Partitions:    partitions,
		At:            at.UnixMilli(),
		WindowSeconds: int(p.tr.Window() / time.Second),
		Active:        len(p.series),
	}
	if b != nil {
		s.Limit, s.MetricLimit, s.MetricLimits = b.MaxSeries, b.MaxSeriesPerMetric, b.Metrics
	}
	now := p.tr.now
	all := make([]budget.MetricUsage, 0, len(p.metrics))
	for m, pm := range p.metrics {
		n, r := pm.growth.sums(now)
		if pm.active == 0 && n == 0 && r == 0 {
			continue
		}
		all = append(all, budget.MetricUsage{Name: m.name, Active: pm.active, New: n, Refused: r})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Active != all[j].Active {
			return all[i].Active > all[j].Active
		}
		return all[i].Name < all[j].Name
	})
	if len(all) <= snapshotMetrics {
		s.Metrics = all
	} else {
		s.Metrics = all[:snapshotMetrics]
		rest := all[snapshotMetrics:]
		sort.Slice(rest, func(i, j int) bool { return rest[i].Grew() > rest[j].Grew() })
		for i, m := range rest {
			_, limited := s.MetricLimits[m.Name]
			if i < 10 && m.Grew() > 0 || limited {
				s.Metrics = append(s.Metrics, m)
			}
		}
	}
	if withFilter {
		f := budget.NewFilter(len(p.raw))
		for h := range p.raw {
			f.Add(h)
		}
		s.Filter = f
	}
	return s
}

// Active returns a tenant's active series and those of one metric over
// the owned partitions (metric "" gives 0 for it).
func (t *Tracker) Active(tenant, metric string) (int, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.activeLocked(tenant, metric)
}

// ActiveLocked is Active with the lock held.
func (t *Tracker) ActiveLocked(tenant, metric string) (int, int) {
	return t.activeLocked(tenant, metric)
}

func (t *Tracker) activeLocked(tenant, metric string) (int, int) {
	ten := t.tenants[tenant]
	if ten == nil {
		return 0, 0
	}
	m := ten.metrics[metric]
	if m == nil {
		return ten.active, 0
	}
	return ten.active, m.active
}

// MaxMetricShare returns the largest active/limit ratio among the
// tenant's metrics with a limit, over the owned partitions, plus remote.
func (t *Tracker) maxMetricShareLocked(ten *Tenant, b *pipeline.Budget, remote Remote) float64 {
	share := 0.0
	for name, m := range ten.metrics {
		lim := b.MetricLimit(name)
		if lim <= 0 {
			continue
		}
		a := m.active
		if remote != nil {
			a += remote.MetricActive(ten.name, name)
		}
		share = max(share, float64(a)/float64(lim))
	}
	return share
}

// NearLimit reports whether a tenant is within share of its series limit
// or of a metric's, counting remote. Call with the lock held.
func (t *Tracker) NearLimit(tenant string, b *pipeline.Budget, remote Remote, share float64) bool {
	ten := t.tenants[tenant]
	if ten == nil || b == nil {
		return false
	}
	if b.MaxSeries > 0 {
		a := ten.active
		if remote != nil {
			a += remote.Active(tenant)
		}
		if float64(a) >= share*float64(b.MaxSeries) {
			return true
		}
	}
	if b.MaxSeriesPerMetric <= 0 && len(b.Metrics) == 0 {
		return false
	}
	return t.maxMetricShareLocked(ten, b, remote) >= share
}

// Partitions lists a tenant's partitions with state, with the lock held.
func (t *Tracker) PartitionsLocked(tenant string) []*Partition {
	ten := t.tenants[tenant]
	if ten == nil {
		return nil
	}
	out := make([]*Partition, 0, len(ten.parts))
	for _, p := range ten.parts {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// ID is the partition number.
func (p *Partition) ID() int32 { return p.id }

// Tenant is the partition's tenant.
func (p *Partition) Tenant() string { return p.t.name }

// TenantsLocked lists the tenants with state, with the lock held.
func (t *Tracker) TenantsLocked() []string {
	out := make([]string, 0, len(t.tenants))
	for n := range t.tenants {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
