package edge

import (
	"fmt"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/limits"
	"github.com/weir-metrics/weir/pkg/prw"
)

// benchRequest is a 2000-series remote-write 1.0 request with 11 labels per
// series, the shape of the anchors in ANCHORS.md.
func benchRequest(round int) []byte {
	req := &prompb.WriteRequest{}
	for i := 0; i < 2000; i++ {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
			Labels: []prompb.Label{
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
			Samples: []prompb.Sample{{Value: float64(round*i) + 0.5, Timestamp: int64(1_700_000_000_000 + round*15_000)}},
		})
	}
	b, _ := req.Marshal()
	return snappy.Encode(nil, b)
}

// BenchmarkEdgePath measures what the edge does per request apart from
// HTTP and Kafka: snappy, decode, validate and sort, partition, encode
// the records.
func BenchmarkEdgePath(b *testing.B) {
	cfg := config.Default()
	lim := limits.Defaults(&cfg)
	body := benchRequest(1)
	st := &writeState{}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	samples := 0
	for i := 0; i < b.N; i++ {
		st.body = append(st.body[:0], body...)
		if rf := decodeSnappy(st.body, &st.decoded, "bench", &lim); rf != nil {
			b.Fatal(rf)
		}
		st.req.Reset()
		if err := st.req.Unmarshal(prw.V1, st.decoded); err != nil {
			b.Fatal(err)
		}
		for j := range st.req.Series {
			if err := st.req.Series[j].Normalize(); err != nil {
				b.Fatal(err)
			}
		}
		recs, err := st.builder.Build("bench", st.req.Series, cfg.Kafka.Partitions, cfg.Kafka.MaxRecordBytes)
		if err != nil || len(recs) != cfg.Kafka.Partitions {
			b.Fatal(err, len(recs))
		}
		n, _, _ := st.req.Counts()
		samples += n
	}
	b.ReportMetric(float64(samples)/b.Elapsed().Seconds(), "samples/s")
}
