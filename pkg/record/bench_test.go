package record

import (
	"fmt"
	"testing"

	"github.com/weir-metrics/weir/pkg/prw"
)

// benchSeries is n series of 11 labels and one sample, shaped like a
// node-exporter scrape (the edge's benchmark request).
func benchSeries(n int) []prw.TimeSeries {
	out := make([]prw.TimeSeries, n)
	for i := range out {
		out[i] = prw.TimeSeries{
			Labels: []prw.Label{
				{Name: "__name__", Value: fmt.Sprintf("node_metric_%d_total", i%50)},
				{Name: "cluster", Value: "eu-west-1"},
				{Name: "container", Value: "node-exporter"},
				{Name: "cpu", Value: fmt.Sprint(i % 16)},
				{Name: "endpoint", Value: "metrics"},
				{Name: "instance", Value: fmt.Sprintf("10.0.%d.%d:9100", i/250, i%250)},
				{Name: "job", Value: "node-exporter"},
				{Name: "mode", Value: "idle"},
				{Name: "namespace", Value: "monitoring"},
				{Name: "pod", Value: fmt.Sprintf("node-exporter-%05d", i/40)},
				{Name: "service", Value: "node-exporter"},
			},
			Samples: []prw.Sample{{Value: float64(i) + 0.5, Timestamp: 1_700_000_000_000}},
		}
	}
	return out
}

// BenchmarkBuild measures grouping a 2000-series request by partition
// (8) and encoding the records: hashing, sizing and the encoders.
func BenchmarkBuild(b *testing.B) {
	series := benchSeries(2000)
	var bl Builder
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bl.Build("bench", series, 8, 4<<20); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(series))*float64(b.N)/b.Elapsed().Seconds(), "series/s")
}

// BenchmarkSeriesHash measures the partitioning hash of one series.
func BenchmarkSeriesHash(b *testing.B) {
	series := benchSeries(2000)
	var h Hasher
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		h.Hash("bench", series[i%len(series)].Labels)
		i++
	}
}
