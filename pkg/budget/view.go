package budget

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/weir-metrics/weir/pkg/prw"
)

// View aggregates the latest state of every partition of every tenant.
// Each tenant's aggregate is rebuilt when one of its partitions changes
// and then read without locks, so Check costs one map lookup for a tenant
// far from its limits.
type View struct {
	mu      sync.RWMutex
	tenants map[string]*TenantUsage
	parts   map[string]map[int32]*PartitionState
}

// NewView returns an empty view.
func NewView() *View {
	return &View{tenants: map[string]*TenantUsage{}, parts: map[string]map[int32]*PartitionState{}}
}

// TenantUsage is a tenant's budget state over all partitions. It is
// immutable.
type TenantUsage struct {
	Tenant     string
	Partitions int
	// Active sums the partitions' active series.
	Active int
	Limit  int
	// Window is the active-series window.
	Window time.Duration
	// Metrics sums each metric over partitions (those partitions
	// published).
	Metrics map[string]MetricUsage
	// GrewMost is the metric that added the most series recently.
	GrewMost MetricUsage
	// UpdatedAt is the newest partition state's time.
	UpdatedAt time.Time

	metricLimit  int
	metricLimits map[string]int
	parts        map[int32]*PartitionState
	hasFilter    bool
}

// MetricLimitOf is the active-series bound of one metric; 0 is none.
func (u *TenantUsage) MetricLimitOf(metric string) int {
	if n, ok := u.metricLimits[metric]; ok {
		return n
	}
	return u.metricLimit
}

// Partition returns the state one partition published.
func (u *TenantUsage) Partition(p int32) *PartitionState { return u.parts[p] }

// Apply replaces one partition's state.
func (v *View) Apply(s *PartitionState) {
	v.mu.Lock()
	defer v.mu.Unlock()
	ps := v.parts[s.Tenant]
	if ps == nil {
		ps = map[int32]*PartitionState{}
		v.parts[s.Tenant] = ps
	}
	if old := ps[s.Partition]; old != nil && old.At > s.At {
		return // an older state replayed after a newer one
	}
	ps[s.Partition] = s
	v.tenants[s.Tenant] = aggregate(s.Tenant, ps)
}

// Expire forgets partition states not republished for their active window
// plus a heartbeat: their owner stopped publishing, and every series they
// counted has expired since.
func (v *View) Expire(now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for t, ps := range v.parts {
		changed := false
		for p, s := range ps {
			if s.At+int64(s.WindowSeconds)*1000+PublishHeartbeat.Milliseconds() < now.UnixMilli() {
				delete(ps, p)
				changed = true
			}
		}
		if !changed {
			continue
		}
		if len(ps) == 0 {
			delete(v.parts, t)
			delete(v.tenants, t)
			continue
		}
		v.tenants[t] = aggregate(t, ps)
	}
}

// Tenant returns a tenant's usage, nil if no state was published.
func (v *View) Tenant(tenant string) *TenantUsage {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.tenants[tenant]
}

// Tenants lists the tenants with published state.
func (v *View) Tenants() []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]string, 0, len(v.tenants))
	for t := range v.tenants {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

func aggregate(tenant string, ps map[int32]*PartitionState) *TenantUsage {
	u := &TenantUsage{Tenant: tenant, Metrics: map[string]MetricUsage{}, parts: make(map[int32]*PartitionState, len(ps))}
	var newest int64
	for p, s := range ps {
		u.parts[p] = s
		u.Active += s.Active
		u.Partitions = max(u.Partitions, s.Partitions)
		if s.Filter != nil {
			u.hasFilter = true
		}
		for _, m := range s.Metrics {
			a := u.Metrics[m.Name]
			a.Name = m.Name
			a.Active += m.Active
			a.New += m.New
			a.Refused += m.Refused
			u.Metrics[m.Name] = a
		}
		if s.At >= newest {
			// Limits are the same in every partition but for a reload
			// in flight: take the newest.
			newest = s.At
			u.Limit, u.metricLimit, u.metricLimits = s.Limit, s.MetricLimit, s.MetricLimits
			u.Window = time.Duration(s.WindowSeconds) * time.Second
		}
	}
	u.UpdatedAt = time.UnixMilli(newest)
	for _, m := range u.Metrics {
		if m.Grew() > u.GrewMost.Grew() || m.Grew() == u.GrewMost.Grew() && m.Grew() > 0 && m.Name < u.GrewMost.Name {
			u.GrewMost = m
		}
	}
	return u
}

// Exceeded says why a request would add series beyond a budget.
type Exceeded struct {
	Tenant string
	// Metric is set when a metric's budget is exceeded, empty for the
	// tenant's.
	Metric string
	// Limit and Active are of the tenant, or of Metric.
	Limit, Active int
	// New is the series of the request that are not active.
	New int
	// GrewMost is the tenant's metric that added the most series in the
	// last GrowthWindow minutes.
	GrewMost MetricUsage
	Window   time.Duration
}

func (e *Exceeded) Error() string {
	grew := ""
	if e.GrewMost.Name != "" {
		grew = fmt.Sprintf("; the metric that grew most is %q (%d new series in the last %dm, %d of them refused)", e.GrewMost.Name, e.GrewMost.Grew(), GrowthWindow, e.GrewMost.Refused)
	}
	window := ""
	if e.Window > 0 {
		window = fmt.Sprintf(" (inactive for %s)", e.Window)
	}
	if e.Metric != "" {
		return fmt.Sprintf("series budget of metric %q of tenant %q exceeded: %d active series of a limit of %d (budget.metrics or budget.max_series_per_metric in the tenant's pipeline); this request would add %d new series of it%s. Series already active are accepted; new series are accepted again when active ones expire%s or the limit is raised",
			e.Metric, e.Tenant, e.Active, e.Limit, e.New, grew, window)
	}
	return fmt.Sprintf("series budget of tenant %q exceeded: %d active series of a limit of %d (budget.max_series in the tenant's pipeline); this request would add %d new series%s. Series already active are accepted; new series are accepted again when active ones expire%s or the limit is raised",
		e.Tenant, e.Active, e.Limit, e.New, grew, window)
}

var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Check reports whether series (labels sorted, as the edge normalises
// them) would add series beyond tenant's budget. Only tenants near a
// limit carry filters; for the others Check returns nil at once. A series
// counts as new when its partition's filter does not hold it; partitions
// without a filter count nothing as new, so an incomplete view errs
// towards admitting (the stream stage still enforces the budget).
func (v *View) Check(tenant string, series []prw.TimeSeries) *Exceeded {
	u := v.Tenant(tenant)
	if u == nil || !u.hasFilter || u.Partitions == 0 {
		return nil
	}
	bp := keyBufs.Get().(*[]byte)
	defer keyBufs.Put(bp)
	newTotal := 0
	var newByMetric map[string]int
	for i := range series {
		ls := series[i].Labels
		b := (*bp)[:0]
		b = append(b, tenant...)
		b = append(b, 0xff)
		name := ""
		for _, l := range ls {
			if l.Name == "__name__" {
				name = l.Value
			}
			b = append(b, l.Name...)
			b = append(b, 0xff)
			b = append(b, l.Value...)
			b = append(b, 0xff)
		}
		*bp = b
		h := xxhash.Sum64(b)
		s := u.parts[int32(h%uint64(u.Partitions))]
		if s == nil || s.Filter == nil || s.Filter.Has(h) {
			continue
		}
		newTotal++
		if newByMetric == nil {
			newByMetric = map[string]int{}
		}
		newByMetric[name]++
	}
	if newTotal == 0 {
		return nil
	}
	// A metric's budget first: it names the cause more precisely. In a
	// deterministic order, so the same request always names the same metric.
	names := make([]string, 0, len(newByMetric))
	for n := range newByMetric {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		lim := u.MetricLimitOf(name)
		if lim <= 0 {
			continue
		}
		active := u.Metrics[name].Active
		if n := newByMetric[name]; active+n > lim {
			return &Exceeded{Tenant: tenant, Metric: name, Limit: lim, Active: active, New: n, GrewMost: u.GrewMost, Window: u.Window}
		}
	}
	if u.Limit > 0 && u.Active+newTotal > u.Limit {
		return &Exceeded{Tenant: tenant, Limit: u.Limit, Active: u.Active, New: newTotal, GrewMost: u.GrewMost, Window: u.Window}
	}
	return nil
}
