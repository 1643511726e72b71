package sink

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-metrics/weir/pkg/tsdbstore"
)

type metrics struct {
	samplesAppended    *prometheus.CounterVec
	samplesDiscarded   *prometheus.CounterVec
	exemplarsAppended  *prometheus.CounterVec
	exemplarsDiscarded *prometheus.CounterVec
	recordsDiscarded   *prometheus.CounterVec
	appendFailures     prometheus.Counter
	flushDuration      prometheus.Histogram
	endToEnd           prometheus.Histogram
	strongReadWait     prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, store *tsdbstore.Store) *metrics {
	m := &metrics{
		samplesAppended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_sink_samples_appended_total",
			Help: "Samples (floats and histograms) stored in the TSDB, by tenant.",
		}, []string{"tenant"}),
		samplesDiscarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_sink_samples_discarded_total",
			Help: "Samples the TSDB refused, by tenant and reason (out_of_order, out_of_bounds, too_old, duplicate_timestamp, invalid_histogram, other).",
		}, []string{"tenant", "reason"}),
		exemplarsAppended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_sink_exemplars_appended_total",
			Help: "Exemplars stored in the TSDB, by tenant.",
		}, []string{"tenant"}),
		exemplarsDiscarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_sink_exemplars_discarded_total",
			Help: "Exemplars the TSDB refused, by tenant.",
		}, []string{"tenant"}),
		recordsDiscarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_sink_records_discarded_total",
			Help: "Records the sink could not read and skipped, by tenant and reason.",
		}, []string{"tenant", "reason"}),
		appendFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weir_sink_append_failures_total",
			Help: "Failed attempts to store a record in the TSDB (disk errors); the record is retried.",
		}),
		flushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "weir_sink_flush_duration_seconds",
			Help:    "Time to sync the WAL, checkpoint and commit offsets.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		endToEnd: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:                        "weir_sink_end_to_end_latency_seconds",
			Help:                        "Time from the edge receiving a record to the sink storing it.",
			Buckets:                     []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
			NativeHistogramBucketFactor: 1.1,
		}),
	}
	m.strongReadWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "weir_sink_strong_read_wait_seconds",
		Help:    "Time strong-consistency queries waited for the pipeline to catch up.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
	})
	reg.MustRegister(m.strongReadWait, m.samplesAppended, m.samplesDiscarded, m.exemplarsAppended, m.exemplarsDiscarded,
		m.recordsDiscarded, m.appendFailures, m.flushDuration, m.endToEnd, headCollector{store})
	return m
}

// headCollector reports the series in each tenant's TSDB heads.
type headCollector struct{ store *tsdbstore.Store }

var headSeriesDesc = prometheus.NewDesc("weir_sink_head_series", "Series in the TSDB heads, by tenant.", []string{"tenant"}, nil)

func (headCollector) Describe(ch chan<- *prometheus.Desc) { ch <- headSeriesDesc }

func (c headCollector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.store.Tenants() {
		var n uint64
		for _, sh := range c.store.Shards(t) {
			n += sh.HeadSeries()
		}
		ch <- prometheus.MustNewConstMetric(headSeriesDesc, prometheus.GaugeValue, float64(n), t)
	}
}
