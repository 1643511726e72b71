package edge

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-metrics/weir/pkg/limits"
)

type metrics struct {
	samplesReceived  *prometheus.CounterVec
	samplesWritten   *prometheus.CounterVec
	samplesRefused   *prometheus.CounterVec
	exemplarsWritten *prometheus.CounterVec
	requestsRefused  *prometheus.CounterVec
	recordsProduced  *prometheus.CounterVec
	produceFailures  *prometheus.CounterVec
	produceDuration  prometheus.Histogram
	requestBytes     *prometheus.HistogramVec
	fieldsDropped    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, tracker *limits.Tracker) *metrics {
	m := &metrics{
		samplesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_edge_samples_received_total",
			Help: "Samples (floats and histograms) in requests that decoded, by tenant and source protocol.",
		}, []string{"tenant", "source"}),
		samplesWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_edge_samples_written_total",
			Help: "Samples acknowledged by Kafka and answered with 2xx, by tenant and source protocol.",
		}, []string{"tenant", "source"}),
		samplesRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_edge_samples_refused_total",
			Help: "Samples of decoded requests that were refused, by tenant and reason. received = written + refused.",
		}, []string{"tenant", "reason"}),
		exemplarsWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_edge_exemplars_written_total",
			Help: "Exemplars acknowledged by Kafka, by tenant.",
		}, []string{"tenant"}),
		requestsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_edge_requests_refused_total",
			Help: "Write requests refused, by tenant and reason (including those whose samples could not be counted).",
		}, []string{"tenant", "reason"}),
		recordsProduced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_edge_records_produced_total",
			Help: "Kafka records acknowledged, by tenant.",
		}, []string{"tenant"}),
		produceFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_edge_produce_failures_total",
			Help: "Requests whose records Kafka did not acknowledge, by reason.",
		}, []string{"reason"}),
		produceDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:                        "weir_edge_produce_duration_seconds",
			Help:                        "Time from handing a request's records to the producer until Kafka acknowledged all of them.",
			Buckets:                     []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
			NativeHistogramBucketFactor: 1.1,
		}),
		requestBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "weir_edge_request_body_bytes",
			Help:    "Size of write request bodies as sent (compressed), by source protocol.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 10),
		}, []string{"source"}),
		fieldsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_edge_influx_fields_dropped_total",
			Help: "Line-protocol field values of written requests that became no sample, by tenant and reason (string_field: string fields under influx_string_fields: drop).",
		}, []string{"tenant", "reason"}),
	}
	reg.MustRegister(m.samplesReceived, m.samplesWritten, m.samplesRefused, m.exemplarsWritten,
		m.requestsRefused, m.recordsProduced, m.produceFailures, m.produceDuration, m.requestBytes,
		m.fieldsDropped, usageCollector{tracker})
	return m
}

// usageCollector exposes how close each tenant comes to each of its limits.
type usageCollector struct{ tracker *limits.Tracker }

var usageDesc = prometheus.NewDesc("weir_edge_limit_usage_ratio",
	"Peak use of a limit by a tenant over the last 15-30 s divided by the limit in force (ingestion_rate: samples/s; body sizes, label counts and lengths, exemplars: the largest seen; max_future_skew: the furthest ahead). 1 or more means requests were refused for it. Only limits in force (non-zero) are reported.",
	[]string{"tenant", "limit"}, nil)

func (usageCollector) Describe(ch chan<- *prometheus.Desc) { ch <- usageDesc }

func (c usageCollector) Collect(ch chan<- prometheus.Metric) {
	for _, u := range c.tracker.Usage() {
		ch <- prometheus.MustNewConstMetric(usageDesc, prometheus.GaugeValue, u.Ratio, u.Tenant, u.Limit)
	}
}
