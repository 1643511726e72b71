package rollupparquet

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/rollup"
)

// BenchmarkWrite measures writing one file: an hour of 5m rows of 10k
// series (half gauges with sketches, half counters), as the writer does
// for a complete hour. Reported: rows per second and bytes per row.
func BenchmarkWrite(b *testing.B) {
	specs, err := rollup.DefaultSpecs([]time.Duration{5 * time.Minute}, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	p, err := rollup.NewPartition(rollup.Options{Tenant: "t1", Partition: 0, Specs: specs}, nil)
	if err != nil {
		b.Fatal(err)
	}
	series := make([]prw.TimeSeries, 10_000)
	for i := range series {
		name, typ := "bench_gauge", prw.MetricTypeGauge
		if i%2 == 1 {
			name, typ = "bench_requests_total", prw.MetricTypeCounter
		}
		series[i] = prw.TimeSeries{Labels: []prw.Label{{Name: "__name__", Value: name}, {Name: "instance", Value: fmt.Sprint(i)}, {Name: "job", Value: "bench"}},
			Metadata: prw.Metadata{Type: typ}, Samples: make([]prw.Sample, 1)}
	}
	for n := 0; n < 240; n++ { // an hour of 15s scrapes
		ts := hour0 + int64(n)*15_000
		for i := range series {
			series[i].Samples[0] = prw.Sample{Value: float64(n*i%977) + 0.5, Timestamp: ts}
		}
		p.Process(int64(n), ts, series)
	}
	p.Flush()
	var rows []FileRow
	for _, r := range p.TakeRows() {
		fr, err := ToFileRow(&r)
		if err != nil {
			b.Fatal(err)
		}
		rows = append(rows, fr)
	}
	b.ResetTimer()
	var size int64
	for n := 0; n < b.N; n++ {
		cw := &countWriter{}
		if err := Write(cw, rows, WriteOptions{RowGroupRows: 128 << 10}); err != nil {
			b.Fatal(err)
		}
		size = cw.n
	}
	b.ReportMetric(float64(len(rows)*b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(size)/float64(len(rows)), "bytes/row")
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)
