package edge

import "github.com/prometheus/client_golang/prometheus"

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
}

func newMetrics(reg prometheus.Registerer) *metrics {
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
	}
	reg.MustRegister(m.samplesReceived, m.samplesWritten, m.samplesRefused, m.exemplarsWritten,
		m.requestsRefused, m.recordsProduced, m.produceFailures, m.produceDuration, m.requestBytes)
	return m
}
