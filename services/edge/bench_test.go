package edge

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/limits"
	"github.com/weir-metrics/weir/pkg/prw"
)

// benchRequest is a 2000-series remote-write 1.0 request with 11 labels per
// series, the shape of the anchors in ANCHORS.md, snappy-encoded.
func benchRequest(round int) []byte {
	b, _ := benchRequestAt(0, round).Marshal()
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
		rsv := unlimited.reserve("bench", &lim)
		if rf := decodeSnappy(st.body, &st.decoded, "bench", &lim, &rsv); rf != nil {
			b.Fatal(rf)
		}
		rsv.release()
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

// benchRequestAt is the request of benchRequest for the 2000 series
// starting at series first, so that several bodies together make a larger
// population.
func benchRequestAt(first, round int) *prompb.WriteRequest {
	req := &prompb.WriteRequest{}
	for i := first; i < first+2000; i++ {
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
	return req
}

// BenchmarkEdgeKafka measures the whole edge for remote-write: the
// /api/v1/write handler from snappy body to Kafka's acknowledgement, with
// the broker (weir broker) in another process so that samples/cpu-s is the
// edge's own cost (HTTP routing and TCP are not included). 10,000 series
// in five 2000-series bodies, each sent with values and timestamps that
// change every round; four senders keep requests in flight.
func BenchmarkEdgeKafka(b *testing.B) {
	for _, v := range []prw.Version{prw.V1, prw.V2} {
		b.Run(v.String(), func(b *testing.B) { benchRemoteWriteKafka(b, v) })
	}
}

func benchRemoteWriteKafka(b *testing.B, v prw.Version) {
	e := startBenchEdge(b)
	const templates, rounds = 5, 4
	var bodies [templates * rounds][]byte
	for r := 0; r < rounds; r++ {
		for t := 0; t < templates; t++ {
			req := benchRequestAt(t*2000, r)
			raw, err := req.Marshal()
			if err != nil {
				b.Fatal(err)
			}
			if v == prw.V2 {
				var dec prw.Request
				if err := dec.Unmarshal(prw.V1, raw); err != nil {
					b.Fatal(err)
				}
				var enc prw.Encoder
				for i := range dec.Series {
					enc.Append(&dec.Series[i])
				}
				raw = enc.Bytes()
			}
			bodies[r*templates+t] = snappy.Encode(nil, raw)
		}
	}
	contentType := "application/x-protobuf"
	if v == prw.V2 {
		contentType += ";proto=io.prometheus.write.v2.Request"
	}
	h := e.remoteWriteHandler()
	send := func(body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Content-Encoding", "snappy")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			b.Errorf("write answered %d: %s", rec.Code, rec.Body.String())
		}
	}
	send(bodies[0]) // creates the tenant's topics
	runSenders(b, 4, 2000, func(i int) { send(bodies[i%len(bodies)]) })
}
