package pipeline

import (
	"slices"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/weir-metrics/weir/pkg/prw"
)

const metricNameLabel = "__name__"

// Apply runs the stateless stages — relabel, then guard rails — over one
// series' sorted labels. It allocates; Processor caches its decisions.
// The returned labels never alias in.
func (p *Pipeline) Apply(tenant string, in []prw.Label) Decision {
	var d Decision
	out := in
	if len(p.relabel) > 0 {
		var sb labels.ScratchBuilder
		for _, l := range in {
			sb.Add(l.Name, l.Value)
		}
		sb.Add(TenantLabel, tenant)
		sb.Sort()
		lb := labels.NewBuilder(sb.Labels())
		if !relabel.ProcessBuilder(lb, p.relabel...) {
			d.Drop = DropRelabel
			return d
		}
		lb.Del(TenantLabel)
		out = out[:0:0]
		lb.Labels().Range(func(l labels.Label) {
			out = append(out, prw.Label{Name: l.Name, Value: l.Value})
		})
		d.Changed = !equalLabels(out, in)
	}
	name := ""
	for _, l := range out {
		if l.Name == metricNameLabel {
			name = l.Value
			break
		}
	}
	if name == "" {
		d.Drop = DropNoMetricName
		return d
	}
	r := p.rails.forMetric(name)
	if r.maxLabels > 0 && len(out)-1 > r.maxLabels {
		out = limitLabels(out, r)
		d.Changed, d.LabelsLimited = true, true
	}
	if r.maxValue > 0 {
		for i, l := range out {
			if len(l.Value) <= r.maxValue {
				continue
			}
			if r.drop {
				d.Drop = DropLongValue
				return d
			}
			if !d.Changed {
				out = slices.Clone(out)
			}
			out[i].Value = truncateUTF8(l.Value, r.maxValue)
			d.Changed, d.ValuesTruncated = true, true
		}
	}
	if d.Changed {
		// Strings may alias a request buffer; the decision outlives it.
		owned := make([]prw.Label, len(out))
		for i, l := range out {
			owned[i] = prw.Label{Name: clone(l.Name), Value: clone(l.Value)}
		}
		d.Labels = owned
	} else {
		d.Labels = in
	}
	return d
}

func clone(s string) string { return string([]byte(s)) }

// limitLabels keeps __name__, then the keep list's labels, then the others
// in name order, up to r.maxLabels besides __name__. out stays sorted.
func limitLabels(in []prw.Label, r *rule) []prw.Label {
	room := r.maxLabels
	keep := make([]bool, len(in))
	for i, l := range in {
		if l.Name == metricNameLabel {
			keep[i] = true
			continue
		}
		if _, ok := r.keep[l.Name]; ok && room > 0 {
			keep[i] = true
			room--
		}
	}
	for i, l := range in {
		if room == 0 {
			break
		}
		if !keep[i] && l.Name != metricNameLabel {
			keep[i] = true
			room--
		}
	}
	out := make([]prw.Label, 0, r.maxLabels+1)
	for i, l := range in {
		if keep[i] {
			out = append(out, l)
		}
	}
	return out
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func equalLabels(a, b []prw.Label) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// MetricName returns the value of __name__ in sorted labels.
func MetricName(ls []prw.Label) string {
	for _, l := range ls {
		if l.Name == metricNameLabel {
			return l.Value
		}
	}
	return ""
}
