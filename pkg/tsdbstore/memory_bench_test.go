package tsdbstore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/weir-metrics/weir/pkg/prw"
)

// BenchmarkHeadMemoryPerSeries reports the Go heap in use per active
// series after 200k series × 11 labels received 30 samples each: what the
// sink's memory goal (≤ 1.5 KiB RSS per series) is made of. Run with
// -benchtime 1x.
func BenchmarkHeadMemoryPerSeries(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.ReportMetric(float64(headMemoryPerSeries(b)), "heap-B/series")
	}
}

func headMemoryPerSeries(t testing.TB) uint64 {
	s, err := Open(Options{Dir: t.TempDir(), Shards: 2, BlockDuration: 2 * time.Hour, Retention: 24 * time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 200_000
	mk := func(lo, hi int) *prw.Request {
		req := &prw.Request{}
		for i := lo; i < hi; i++ {
			req.Series = append(req.Series, prw.TimeSeries{Labels: []prw.Label{
				{Name: "__name__", Value: fmt.Sprintf("node_metric_%d_total", i%50)},
				{Name: "cluster", Value: "eu-west-1"}, {Name: "container", Value: "node-exporter"},
				{Name: "cpu", Value: fmt.Sprint(i % 16)}, {Name: "endpoint", Value: "metrics"},
				{Name: "instance", Value: fmt.Sprintf("10.0.%d.%d:9100", i/250, i%250)},
				{Name: "job", Value: "node-exporter"}, {Name: "mode", Value: "idle"},
				{Name: "namespace", Value: "monitoring"}, {Name: "pod", Value: fmt.Sprintf("node-exporter-%05d", i/40)},
				{Name: "service", Value: "node-exporter"},
			}, Samples: []prw.Sample{{}}})
		}
		return req
	}
	var reqs []*prw.Request
	for lo := 0; lo < n; lo += 2000 {
		reqs = append(reqs, mk(lo, lo+2000))
	}
	for round := 0; round < 30; round++ {
		for i, r := range reqs {
			for j := range r.Series {
				r.Series[j].Samples[0] = prw.Sample{Value: float64(round * j), Timestamp: int64(1_700_000_000_000 + round*15000)}
			}
			sh, _ := s.Shard("t", int32(i))
			if _, err := sh.Append(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
	}
	reqs = nil
	runtime.GC()
	debug.FreeOSMemory()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	return after.HeapInuse / n
}
