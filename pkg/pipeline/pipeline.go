// Package pipeline holds weir's per-tenant stream pipelines: their YAML
// definitions (a default plus one file per tenant), validation with
// file:line messages, hot reload, and the stateless stages applied to every
// series — relabeling (Prometheus metric_relabel_configs through
// prometheus/model/relabel) and guard rails — with a bounded cache of
// per-series decisions so that a series already seen costs one lookup.
//
// Stages run in a fixed order: relabel, guard rails, then the series
// budget, which is stateful and lives in pkg/cardinality; this package
// only carries the budget's limits.
package pipeline

import (
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/rollup"
)

// TenantLabel carries the tenant ID while relabel rules run, so rules can
// match on it; it is removed afterwards.
const TenantLabel = "__tenant__"

// DefaultFile is the pipeline of every tenant without a file of its own,
// and the base a tenant file's missing sections come from.
const DefaultFile = "default.yaml"

// Long-value actions of guard rails.
const (
	LongValueTruncate = "truncate"
	LongValueDrop     = "drop"
)

// Definition is one pipeline file. A nil section is absent from the file:
// a tenant file inherits it from default.yaml.
type Definition struct {
	Relabel    []*relabel.Config
	GuardRails *GuardRails
	Budget     *Budget
	// Rollups are the tenant's rollups (docs/rollups.md); nil when the
	// file has no rollups section.
	Rollups []rollup.Spec

	hasRelabel bool
	hasRollups bool
}

// GuardRails bound the shape of every series after relabeling.
type GuardRails struct {
	// MaxLabelCount bounds the labels of a series besides __name__; extra
	// labels are removed and the series is kept (like Telegraf's
	// tag_limit). 0 means no bound.
	MaxLabelCount int `yaml:"max_label_count"`
	// KeepLabels are kept first when labels must be removed; the
	// remaining room goes to the other labels in name order.
	KeepLabels []string `yaml:"keep_labels"`
	// MaxLabelValueLength bounds every label value in bytes, the metric
	// name included. 0 means no bound.
	MaxLabelValueLength int `yaml:"max_label_value_length"`
	// LongValueAction is truncate (cut the value at the bound, on a UTF-8
	// boundary) or drop (drop the series). Default truncate.
	LongValueAction string `yaml:"long_value_action"`
	// Metrics override the settings above for single metrics, by the
	// metric name after relabeling; unset fields inherit.
	Metrics map[string]MetricGuardRails `yaml:"metrics"`
}

// MetricGuardRails overrides guard rails for one metric; nil fields
// inherit the tenant's.
type MetricGuardRails struct {
	MaxLabelCount       *int     `yaml:"max_label_count"`
	KeepLabels          []string `yaml:"keep_labels"`
	MaxLabelValueLength *int     `yaml:"max_label_value_length"`
	LongValueAction     *string  `yaml:"long_value_action"`
}

// Budget limits a tenant's active series (seen within
// stream.active_series_window). 0 means no limit.
type Budget struct {
	// MaxSeries bounds the tenant's active series.
	MaxSeries int `yaml:"max_series"`
	// MaxSeriesPerMetric bounds the active series of every metric.
	MaxSeriesPerMetric int `yaml:"max_series_per_metric"`
	// Metrics set the bound of single metrics, overriding
	// MaxSeriesPerMetric.
	Metrics map[string]int `yaml:"metrics"`
}

// MetricLimit is the active-series bound of one metric; 0 is none.
func (b *Budget) MetricLimit(metric string) int {
	if b == nil {
		return 0
	}
	if n, ok := b.Metrics[metric]; ok {
		return n
	}
	return b.MaxSeriesPerMetric
}

// Pipeline is the compiled pipeline of one tenant.
type Pipeline struct {
	// Sources names the files it was built from, for messages.
	Sources []string
	relabel []*relabel.Config
	rails   rails
	// Budget is never nil.
	Budget *Budget
	// Rollups are the tenant's rollups; nil means the configured default
	// (rollup.resolutions), empty means none.
	Rollups []rollup.Spec
}

// rails are guard rails resolved for lookups: the tenant's, and the
// per-metric overrides merged with them.
type rails struct {
	base    rule
	metrics map[string]rule
}

type rule struct {
	maxLabels int
	keep      map[string]struct{}
	maxValue  int
	drop      bool // drop the series on a long value instead of truncating
}

func (r *rails) forMetric(name string) *rule {
	if m, ok := r.metrics[name]; ok {
		return &m
	}
	return &r.base
}

func compileRails(g *GuardRails) rails {
	if g == nil {
		return rails{}
	}
	base := rule{maxLabels: g.MaxLabelCount, maxValue: g.MaxLabelValueLength, drop: g.LongValueAction == LongValueDrop, keep: set(g.KeepLabels)}
	out := rails{base: base}
	if len(g.Metrics) > 0 {
		out.metrics = make(map[string]rule, len(g.Metrics))
		for name, m := range g.Metrics {
			r := base
			if m.MaxLabelCount != nil {
				r.maxLabels = *m.MaxLabelCount
			}
			if m.KeepLabels != nil {
				r.keep = set(m.KeepLabels)
			}
			if m.MaxLabelValueLength != nil {
				r.maxValue = *m.MaxLabelValueLength
			}
			if m.LongValueAction != nil {
				r.drop = *m.LongValueAction == LongValueDrop
			}
			out.metrics[name] = r
		}
	}
	return out
}

func set(ss []string) map[string]struct{} {
	if len(ss) == 0 {
		return nil
	}
	m := make(map[string]struct{}, len(ss))
	for _, s := range ss {
		m[s] = struct{}{}
	}
	return m
}

// Set is the pipelines of every tenant, as loaded at one moment. It is
// immutable; a reload builds a new Set.
type Set struct {
	gen     uint32
	def     *Pipeline
	tenants map[string]*Pipeline
}

// For returns the pipeline of tenant.
func (s *Set) For(tenant string) *Pipeline {
	if p, ok := s.tenants[tenant]; ok {
		return p
	}
	return s.def
}

// Tenants lists the tenants with a file of their own.
func (s *Set) Tenants() []string {
	out := make([]string, 0, len(s.tenants))
	for t := range s.tenants {
		out = append(out, t)
	}
	return out
}

// Generation identifies the Set; cached decisions are keyed by it, so a
// reload never serves a decision of the previous pipelines.
func (s *Set) Generation() uint32 { return s.gen }

// DropReason says why a series was dropped; "" keeps it.
type DropReason string

// Drop reasons, the reason label of the stream's discard counters.
const (
	DropRelabel      DropReason = "relabel_drop"
	DropNoMetricName DropReason = "relabel_removed_metric_name"
	DropLongValue    DropReason = "label_value_too_long"
)

// Decision is what the stateless stages do with one series.
type Decision struct {
	Drop DropReason
	// Changed reports that Labels differ from the input.
	Changed bool
	// Labels are the output labels, sorted; the input when !Changed.
	Labels []prw.Label
	// LabelsLimited reports that max_label_count removed labels.
	LabelsLimited bool
	// ValuesTruncated reports that long values were truncated.
	ValuesTruncated bool
}
