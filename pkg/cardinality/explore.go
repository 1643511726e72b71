package cardinality

import "sort"

// MetricStats is one metric as the explorer shows it, over the owned
// partitions.
type MetricStats struct {
	Name    string
	Active  int
	New     int // series first admitted in the last 5 minutes
	Refused int // distinct series refused in the last 5 minutes
}

// LabelStats is one label of a metric: distinct values among the series
// seen within the window, admitted or refused. AtLeast marks a label that
// reached Options.LabelValuesLimit: it has at least that many.
type LabelStats struct {
	Name           string
	DistinctValues int
	AtLeast        bool
}

// Metrics returns the tenant's metrics over the owned partitions.
func (t *Tracker) Metrics(tenant string) []MetricStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	ten := t.tenants[tenant]
	if ten == nil {
		return nil
	}
	byName := map[string]*MetricStats{}
	for name, m := range ten.metrics {
		byName[name] = &MetricStats{Name: name, Active: m.active}
	}
	for _, p := range ten.parts {
		for m, pm := range p.metrics {
			ms := byName[m.name]
			if ms == nil {
				continue
			}
			n, r := pm.growth.sums(t.now)
			ms.New += n
			ms.Refused += r
		}
	}
	out := make([]MetricStats, 0, len(byName))
	for _, ms := range byName {
		if ms.Active > 0 || ms.New > 0 || ms.Refused > 0 {
			out = append(out, *ms)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Active != out[j].Active {
			return out[i].Active > out[j].Active
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Labels ranks a metric's labels by distinct values, most first. ok is
// false when the metric is unknown.
func (t *Tracker) Labels(tenant, metric string) (out []LabelStats, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ten := t.tenants[tenant]
	if ten == nil {
		return nil, false
	}
	m := ten.metrics[metric]
	if m == nil {
		return nil, false
	}
	cut := uint32(0)
	if t.now > t.window {
		cut = t.now - t.window
	}
	for name, lv := range m.labels {
		n := 0
		for _, v := range lv.values {
			if v >= cut {
				n++
			}
		}
		out = append(out, LabelStats{Name: name, DistinctValues: n, AtLeast: lv.full})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].DistinctValues != out[j].DistinctValues {
			return out[i].DistinctValues > out[j].DistinctValues
		}
		return out[i].Name < out[j].Name
	})
	return out, true
}
