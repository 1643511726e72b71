package tsdbstore

import (
	"context"
	"fmt"
	"testing"

	"github.com/weir-metrics/weir/pkg/prw"
)

// BenchmarkShardAppend appends records of 2000 series × 11 labels × 1
// sample to one shard, 10k series in all, timestamps advancing each round:
// the sink's work per record after decoding.
func BenchmarkShardAppend(b *testing.B) {
	s := openStore(b, b.TempDir())
	defer s.Close()
	sh, _ := s.Shard("bench", 0)
	const perRecord, total = 2000, 10_000
	reqs := make([]*prw.Request, total/perRecord)
	for r := range reqs {
		req := &prw.Request{}
		for i := 0; i < perRecord; i++ {
			n := r*perRecord + i
			req.Series = append(req.Series, prw.TimeSeries{
				Labels: []prw.Label{
					{Name: "__name__", Value: fmt.Sprintf("node_metric_%d_total", n%50)},
					{Name: "cluster", Value: "eu-west-1"},
					{Name: "container", Value: "node-exporter"},
					{Name: "cpu", Value: fmt.Sprint(n % 16)},
					{Name: "endpoint", Value: "metrics"},
					{Name: "instance", Value: fmt.Sprintf("10.0.%d.%d:9100", n/250, n%250)},
					{Name: "job", Value: "node-exporter"},
					{Name: "mode", Value: "idle"},
					{Name: "namespace", Value: "monitoring"},
					{Name: "pod", Value: fmt.Sprintf("node-exporter-%05d", n/40)},
					{Name: "service", Value: "node-exporter"},
				},
				Samples: []prw.Sample{{}},
			})
		}
		reqs[r] = req
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := reqs[i%len(reqs)]
		ts := int64(1_700_000_000_000 + (i/len(reqs))*15_000)
		for j := range req.Series {
			req.Series[j].Samples[0] = prw.Sample{Value: float64(i + j), Timestamp: ts}
		}
		res, err := sh.Append(ctx, req)
		if err != nil || res.Samples != perRecord {
			b.Fatal(err, res)
		}
	}
	b.ReportMetric(float64(b.N*perRecord)/b.Elapsed().Seconds(), "samples/s")
}
