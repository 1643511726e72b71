package prw

import (
	"fmt"
	"math"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// Test request generators. Label names and values imitate what a
// Prometheus scraping node_exporter and kube-state-metrics in Kubernetes
// sends: 11 labels per series, values shared between many series.

var metricNames = []string{
	"node_cpu_seconds_total", "node_memory_MemAvailable_bytes", "node_network_receive_bytes_total",
	"node_network_transmit_bytes_total", "node_filesystem_avail_bytes", "node_disk_read_bytes_total",
	"node_disk_io_time_seconds_total", "node_load1", "kube_pod_container_status_restarts_total",
	"kube_pod_status_phase", "container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
	"http_requests_total", "process_resident_memory_bytes", "go_goroutines",
}

// realisticV1 returns a 1.0 request of n series with 11 labels and one
// sample each.
func realisticV1(n int) *prompb.WriteRequest {
	req := &prompb.WriteRequest{}
	const ts = 1_726_000_000_000
	for i := 0; i < n; i++ {
		node := i / 200
		pod := i / 20
		ls := []prompb.Label{
			{Name: "__name__", Value: metricNames[i%len(metricNames)]},
			{Name: "cluster", Value: "prod-eu-west-1"},
			{Name: "container", Value: fmt.Sprintf("app-%d", pod%7)},
			{Name: "cpu", Value: fmt.Sprintf("%d", i%16)},
			{Name: "endpoint", Value: "http-metrics"},
			{Name: "instance", Value: fmt.Sprintf("10.12.%d.%d:9100", node, 10+node)},
			{Name: "job", Value: "kubernetes-pods"},
			{Name: "mode", Value: []string{"idle", "user", "system", "iowait"}[i%4]},
			{Name: "namespace", Value: fmt.Sprintf("team-%d", pod%9)},
			{Name: "node", Value: fmt.Sprintf("ip-10-12-%d-%d.eu-west-1.compute.internal", node, 10+node)},
			{Name: "pod", Value: fmt.Sprintf("api-server-7d9f8b6c4-%05x", pod*7919)},
		}
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
			Labels:  ls,
			Samples: []prompb.Sample{{Value: float64(i) * 1.37, Timestamp: ts + int64(i%1000)}},
		})
	}
	return req
}

// v1ToV2 converts a 1.0 request to 2.0 the way a sender would, with a
// SymbolsTable.
func v1ToV2(req *prompb.WriteRequest) *writev2.Request {
	st := writev2.NewSymbolTable()
	out := &writev2.Request{}
	for _, ts := range req.Timeseries {
		var refs []uint32
		for _, l := range ts.Labels {
			refs = append(refs, st.Symbolize(l.Name), st.Symbolize(l.Value))
		}
		t := writev2.TimeSeries{LabelsRefs: refs}
		for _, s := range ts.Samples {
			t.Samples = append(t.Samples, writev2.Sample{Value: s.Value, Timestamp: s.Timestamp})
		}
		out.Timeseries = append(out.Timeseries, t)
	}
	out.Symbols = st.Symbols()
	return out
}

func mustMarshal(m interface{ Marshal() ([]byte, error) }) []byte {
	b, err := m.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

// Native histograms covering the encodings: integer with both bucket sides
// and a zero bucket, float, and custom buckets (schema -53).
func testIntHistogram() *histogram.Histogram {
	return &histogram.Histogram{
		Schema:          1,
		ZeroThreshold:   0.001,
		ZeroCount:       2,
		Count:           14,
		Sum:             18.4,
		PositiveSpans:   []histogram.Span{{Offset: 0, Length: 2}, {Offset: 1, Length: 2}},
		PositiveBuckets: []int64{1, 1, -1, 0}, // counts 1 2 1 1
		NegativeSpans:   []histogram.Span{{Offset: -2, Length: 2}},
		NegativeBuckets: []int64{3, 1}, // counts 3 4
	}
}

func testFloatHistogram() *histogram.FloatHistogram {
	return &histogram.FloatHistogram{
		CounterResetHint: histogram.GaugeType,
		Schema:           0,
		ZeroThreshold:    0.01,
		ZeroCount:        1.5,
		Count:            10.5,
		Sum:              -3.25,
		PositiveSpans:    []histogram.Span{{Offset: 1, Length: 3}},
		PositiveBuckets:  []float64{1, 2.5, 3},
		NegativeSpans:    []histogram.Span{{Offset: 0, Length: 1}},
		NegativeBuckets:  []float64{2.5},
	}
}

func testCustomHistogram() *histogram.Histogram {
	return &histogram.Histogram{
		Schema:          histogram.CustomBucketsSchema,
		Count:           6,
		Sum:             2.2,
		PositiveSpans:   []histogram.Span{{Offset: 0, Length: 2}, {Offset: 1, Length: 1}},
		PositiveBuckets: []int64{1, 2, -1}, // counts 1 3 2
		CustomValues:    []float64{0.1, 0.5, 1, 5},
	}
}

// richV1 is a 1.0 request using every message and field the package reads.
func richV1() *prompb.WriteRequest {
	const t0 = 1_726_000_000_000
	return &prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{
			{
				Labels: []prompb.Label{{Name: "__name__", Value: "http_requests_total"}, {Name: "code", Value: "200"}, {Name: "job", Value: "api"}},
				Samples: []prompb.Sample{
					{Value: 1, Timestamp: t0}, {Value: math.Inf(1), Timestamp: t0 + 1}, {Value: math.Copysign(0, -1), Timestamp: -5},
					{Value: math.Float64frombits(0x7ff8000000000bad), Timestamp: t0 + 2},
				},
				Exemplars: []prompb.Exemplar{
					{Labels: []prompb.Label{{Name: "trace_id", Value: "4bf92f3577b34da6a3ce929d0e0e4736"}}, Value: 0.25, Timestamp: t0},
					{Value: 3},
				},
			},
			{
				Labels: []prompb.Label{{Name: "__name__", Value: "rpc_duration_seconds"}, {Name: "job", Value: "api"}},
				Histograms: []prompb.Histogram{
					prompb.FromIntHistogram(t0, testIntHistogram()),
					prompb.FromFloatHistogram(t0+15000, testFloatHistogram()),
					prompb.FromIntHistogram(t0+30000, testCustomHistogram()),
				},
				Exemplars: []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "abc"}, {Name: "span_id", Value: "def"}}, Value: 0.3, Timestamp: t0}},
			},
			{
				Labels:  []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "instance", Value: "a:9100"}, {Name: "job", Value: "node"}},
				Samples: []prompb.Sample{{Value: 1, Timestamp: t0}},
			},
			{
				Labels:  []prompb.Label{{Name: "__name__", Value: "rpc_latency_bucket"}, {Name: "le", Value: "+Inf"}},
				Samples: []prompb.Sample{{Value: 7, Timestamp: t0}},
			},
			{
				// No __name__: gets no metadata.
				Labels:  []prompb.Label{{Name: "job", Value: "x"}},
				Samples: []prompb.Sample{{Value: 2, Timestamp: t0}},
			},
		},
		Metadata: []prompb.MetricMetadata{
			{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "http_requests", Help: "Requests.", Unit: ""},
			{Type: prompb.MetricMetadata_HISTOGRAM, MetricFamilyName: "rpc_duration_seconds", Help: "RPC latency.", Unit: "seconds"},
			{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "up", Help: "first, overridden"},
			{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "up", Help: "Target up."},
			{Type: prompb.MetricMetadata_HISTOGRAM, MetricFamilyName: "rpc_latency", Help: "Classic."},
			{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "unused_family"},
		},
	}
}

// richV2 is a 2.0 request using every message and field the package reads.
func richV2() *writev2.Request {
	const t0 = 1_726_000_000_000
	st := writev2.NewSymbolTable()
	refs := func(kv ...string) []uint32 {
		var r []uint32
		for _, s := range kv {
			r = append(r, st.Symbolize(s))
		}
		return r
	}
	req := &writev2.Request{
		Timeseries: []writev2.TimeSeries{
			{
				LabelsRefs: refs("__name__", "http_requests_total", "code", "200", "job", "api"),
				Samples: []writev2.Sample{
					{Value: 1, Timestamp: t0, StartTimestamp: t0 - 60000}, {Value: 2, Timestamp: t0 + 1},
					{Value: math.Copysign(0, -1), Timestamp: -5},
				},
				Exemplars: []writev2.Exemplar{{LabelsRefs: refs("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"), Value: 0.25, Timestamp: t0}, {Value: 9}},
				Metadata:  writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: st.Symbolize("Requests."), UnitRef: 0},
			},
			{
				LabelsRefs: refs("__name__", "rpc_duration_seconds", "job", "api"),
				Histograms: []writev2.Histogram{
					writev2.FromIntHistogram(t0-3600000, t0, testIntHistogram()),
					writev2.FromFloatHistogram(0, t0+15000, testFloatHistogram()),
					writev2.FromIntHistogram(0, t0+30000, testCustomHistogram()),
				},
				Metadata: writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM, HelpRef: st.Symbolize("RPC latency."), UnitRef: st.Symbolize("seconds")},
			},
			{
				LabelsRefs: refs("__name__", "up", "instance", "a:9100", "job", "node"),
				Samples:    []writev2.Sample{{Value: 1, Timestamp: t0}},
				Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_STATESET + 5}, // unknown enum value
			},
		},
	}
	req.Symbols = st.Symbols()
	return req
}
