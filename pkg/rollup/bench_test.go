package rollup

import (
	"fmt"
	"testing"
	"time"

	"github.com/weir-metrics/weir/pkg/prw"
)

// BenchmarkProcess measures the rollup stage's computation alone: 10k
// series of 11 labels (half gauges, half counters), scraped every 15s,
// 2000 series per record, the default rollup (5m and 1h). Reported:
// samples per second of one core.
func BenchmarkProcess(b *testing.B) {
	const nSeries, perRecord = 10_000, 2000
	series := make([]prw.TimeSeries, nSeries)
	for i := range series {
		name, typ := "bench_gauge", prw.MetricTypeGauge
		if i%2 == 1 {
			name, typ = "bench_requests_total", prw.MetricTypeCounter
		}
		series[i] = prw.TimeSeries{Labels: labels("__name__", name, "a", "1", "b", "2", "c", "3", "d", "4", "e", "5",
			"f", "6", "g", "7", "h", "8", "instance", fmt.Sprint(i), "job", "bench"), Metadata: prw.Metadata{Type: typ}, Samples: make([]prw.Sample, 1)}
	}
	specs := []Spec{spec(b, "default", 5*time.Minute, 5*time.Minute, time.Hour)}
	p := newPartition(b, specs, nil)
	b.ResetTimer()
	var offset int64
	samples := 0
	for n := 0; n < b.N; n++ {
		ts := t0 + int64(n/(nSeries/perRecord))*15_000
		first := (n % (nSeries / perRecord)) * perRecord
		batch := series[first : first+perRecord]
		for i := range batch {
			batch[i].Samples[0] = prw.Sample{Value: float64(n*7 + i), Timestamp: ts}
		}
		p.Process(offset, ts+500, batch)
		offset++
		samples += perRecord
		p.TakeRows()
	}
	b.ReportMetric(float64(samples)/b.Elapsed().Seconds(), "samples/s")
	b.ReportMetric(float64(p.OpenWindows()), "open-windows")
}
