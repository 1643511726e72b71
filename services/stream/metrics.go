package stream

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	recordsConsumed  *prometheus.CounterVec
	recordsProduced  *prometheus.CounterVec
	recordsDiscarded *prometheus.CounterVec
	transactions     *prometheus.CounterVec
	samplesAdmitted  *prometheus.CounterVec
	samplesDiscarded *prometheus.CounterVec
	samplesModified  *prometheus.CounterVec
	ledgerReplay     prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, s *Stream) *metrics {
	m := &metrics{
		recordsConsumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_stream_records_consumed_total",
			Help: "Raw records read by the stream stage, by tenant (counted again when a transaction aborts and they are re-read).",
		}, []string{"tenant"}),
		recordsProduced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_stream_records_produced_total",
			Help: "Series records committed by the stream stage, by tenant.",
		}, []string{"tenant"}),
		recordsDiscarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_stream_records_discarded_total",
			Help: "Raw records the stream stage could not read, by tenant and reason.",
		}, []string{"tenant", "reason"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_stream_transactions_total",
			Help: "Transactions ended by the stream stage, by result (committed, aborted, failed).",
		}, []string{"result"}),
		samplesAdmitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_stream_samples_admitted_total",
			Help: "Samples (floats and histograms) committed to the series topics, by tenant.",
		}, []string{"tenant"}),
		samplesDiscarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_stream_samples_discarded_total",
			Help: "Samples the stream stage did not admit, by tenant and reason (relabel_drop, relabel_removed_metric_name, label_value_too_long, tenant_series_limit, metric_series_limit, series_too_large). Counted once per committed transaction.",
		}, []string{"tenant", "reason"}),
		samplesModified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_stream_samples_modified_total",
			Help: "Admitted samples whose series guard rails changed, by tenant and reason (labels_limited, value_truncated).",
		}, []string{"tenant", "reason"}),
		ledgerReplay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:                        "weir_stream_ledger_replay_duration_seconds",
			Help:                        "Time to rebuild one partition's series budget state from its ledger (on assignment, restart or aborted transaction).",
			Buckets:                     prometheus.ExponentialBuckets(0.001, 4, 10),
			NativeHistogramBucketFactor: 1.1,
		}),
	}
	reg.MustRegister(m.recordsConsumed, m.recordsProduced, m.recordsDiscarded, m.transactions,
		m.samplesAdmitted, m.samplesDiscarded, m.samplesModified, m.ledgerReplay, budgetCollector{s})
	return m
}

// add adds a committed poll's counts.
func (m *metrics) add(c *pollCounts) {
	for t, tc := range c.tenants {
		if tc.admitted > 0 {
			m.samplesAdmitted.WithLabelValues(t).Add(float64(tc.admitted))
		}
		if tc.recordsProduced > 0 {
			m.recordsProduced.WithLabelValues(t).Add(float64(tc.recordsProduced))
		}
		for r, n := range tc.discarded {
			if n > 0 {
				m.samplesDiscarded.WithLabelValues(t, r).Add(float64(n))
			}
		}
		for r, n := range tc.modified {
			if n > 0 {
				m.samplesModified.WithLabelValues(t, r).Add(float64(n))
			}
		}
		for r, n := range tc.discardedRecords {
			if n > 0 {
				m.recordsDiscarded.WithLabelValues(t, r).Add(float64(n))
			}
		}
	}
}

var (
	activeDesc = prometheus.NewDesc("weir_stream_active_series",
		"Active series of the tenant's partitions this worker owns (seen within stream.active_series_window).", []string{"tenant"}, nil)
	limitDesc = prometheus.NewDesc("weir_stream_series_limit",
		"The tenant's series budget (budget.max_series of its pipeline); absent without one.", []string{"tenant"}, nil)
	metricActiveDesc = prometheus.NewDesc("weir_stream_metric_active_series",
		"Active series of a metric with a budget of its own, or within 80% of the per-metric budget, over the partitions this worker owns.", []string{"tenant", "metric"}, nil)
	metricLimitDesc = prometheus.NewDesc("weir_stream_metric_series_limit",
		"The series budget of a metric listed in weir_stream_metric_active_series.", []string{"tenant", "metric"}, nil)
	cacheDesc = prometheus.NewDesc("weir_stream_relabel_cache_requests_total",
		"Lookups of the per-series pipeline decision cache, by result (hit, miss).", []string{"result"}, nil)
)

// budgetCollector reports usage and limits at scrape time, so metric
// label sets follow the tenants and metrics that exist.
type budgetCollector struct{ s *Stream }

func (c budgetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- activeDesc
	ch <- limitDesc
	ch <- metricActiveDesc
	ch <- metricLimitDesc
	ch <- cacheDesc
}

func (c budgetCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	hits, misses := s.stage.proc.Stats()
	ch <- prometheus.MustNewConstMetric(cacheDesc, prometheus.CounterValue, float64(hits), "hit")
	ch <- prometheus.MustNewConstMetric(cacheDesc, prometheus.CounterValue, float64(misses), "miss")
	set := s.pipes.Set()
	s.track.Lock()
	tenants := s.track.TenantsLocked()
	s.track.Unlock()
	for _, t := range tenants {
		active, _ := s.track.Active(t, "")
		ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, float64(active), t)
		b := set.For(t).Budget
		if b.MaxSeries > 0 {
			ch <- prometheus.MustNewConstMetric(limitDesc, prometheus.GaugeValue, float64(b.MaxSeries), t)
		}
		if b.MaxSeriesPerMetric <= 0 && len(b.Metrics) == 0 {
			continue
		}
		for _, m := range s.track.Metrics(t) {
			lim := b.MetricLimit(m.Name)
			_, own := b.Metrics[m.Name]
			if lim <= 0 || !own && float64(m.Active) < 0.8*float64(lim) {
				continue
			}
			ch <- prometheus.MustNewConstMetric(metricActiveDesc, prometheus.GaugeValue, float64(m.Active), t, m.Name)
			ch <- prometheus.MustNewConstMetric(metricLimitDesc, prometheus.GaugeValue, float64(lim), t, m.Name)
		}
	}
}
