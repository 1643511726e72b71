package edge

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/auth"
	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/kafka"
	"github.com/weir-metrics/weir/services/app"
)

type testEdge struct {
	edge   *Edge
	auth   *auth.Authenticator
	broker *kafka.Broker
	srv    *httptest.Server
	reg    *prometheus.Registry
	cfg    *config.Config
}

func startEdge(t *testing.T, mutate func(*config.Config)) *testEdge {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Kafka.Embedded.Addr = "127.0.0.1:0"
	cfg.Kafka.ProduceTimeout = 2 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := kafka.StartBroker(&cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Kafka.Embedded.Addr = b.Addr()
	reg := prometheus.NewRegistry()
	authn, err := auth.New(auth.Options{TenantsFile: cfg.Auth.TenantsFile, Logger: log, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(&cfg, log, reg, authn, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Run(ctx); close(done) }()
	proc := app.New(&cfg, log, reg)
	proc.Add(e)
	srv := httptest.NewServer(proc.Mux())
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
		b.Close()
	})
	weirtest.Eventually(t, 10*time.Second, e.Ready)
	return &testEdge{edge: e, auth: authn, broker: b, srv: srv, reg: reg, cfg: &cfg}
}

// rawRecords counts the records in a tenant's raw topic (0 when the topic
// does not exist).
func (te *testEdge) rawRecords(t *testing.T, tenant string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(te.broker.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), kafka.Topic("weir", tenant, kafka.KindRaw))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			n += o.Offset
		}
	})
	return n
}

func validV1() *prompb.WriteRequest {
	return &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "a"}},
		Samples: []prompb.Sample{{Value: 1, Timestamp: time.Now().UnixMilli()}},
	}}}
}

func marshalV1(t *testing.T, req *prompb.WriteRequest) []byte {
	t.Helper()
	b, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, b)
}

func TestRemoteWriteAccepted(t *testing.T) {
	te := startEdge(t, nil)
	res, err := weirtest.WriteV1(te.srv.URL, "", validV1())
	if err := weirtest.MustWrite(res, err); err != nil {
		t.Fatal(err)
	}
	if res.SamplesWritten != 1 {
		t.Fatalf("samples written header %d, want 1", res.SamplesWritten)
	}
	if n := te.rawRecords(t, "anonymous"); n != 1 {
		t.Fatalf("raw topic holds %d records, want 1", n)
	}
	if v := testutil.ToFloat64(te.edge.metrics.samplesWritten.WithLabelValues("anonymous", "prw1")); v != 1 {
		t.Fatalf("weir_edge_samples_written_total = %v, want 1", v)
	}
}

// TestRemoteWriteRefusals sends malformed, oversized and wrongly typed
// requests; each gets its documented status and a message naming the
// problem, and none reaches Kafka.
func TestRemoteWriteRefusals(t *testing.T) {
	te := startEdge(t, func(c *config.Config) {
		c.Edge.MaxRequestBytes = 128 << 10
		c.Edge.MaxDecompressedBytes = 1 << 20
		c.Kafka.MaxRecordBytes = 64 << 10
		c.Kafka.ProducerMaxBufferedBytes = 1 << 20
		// Off, so that the huge label reaches the record size check.
		c.Edge.MaxLabelValueLength = 0
	})
	v1 := weirtest.ContentTypeV1
	hdr := func(ct, enc, tenant string) map[string]string {
		h := map[string]string{"Content-Type": ct, "Content-Encoding": enc}
		if tenant != "" {
			h["X-Scope-OrgID"] = tenant
		}
		return h
	}
	withLabels := func(ls ...prompb.Label) []byte {
		r := validV1()
		r.Timeseries[0].Labels = ls
		return marshalV1(t, r)
	}
	// A snappy header that claims 1 GiB of output, followed by junk.
	bombHeader := binary.AppendUvarint(nil, 1<<30)
	bombHeader = append(bombHeader, bytes.Repeat([]byte{0}, 100)...)
	// A real bomb: 8 MiB of zeros compress to a few hundred KiB... keep
	// it under the body limit by compressing 2 MiB of zeros.
	realBomb := snappy.Encode(nil, make([]byte, 2<<20))
	huge := validV1()
	huge.Timeseries[0].Labels = append(huge.Timeseries[0].Labels, prompb.Label{Name: "blob", Value: strings.Repeat("x", 70<<10)})
	hugeBody, _ := huge.Marshal()
	badRef := &writev2.Request{Symbols: []string{"", "__name__", "up"}, Timeseries: []writev2.TimeSeries{{LabelsRefs: []uint32{1, 7}, Samples: []writev2.Sample{{Value: 1, Timestamp: 1}}}}}
	badRefBody, _ := badRef.Marshal()

	cases := []struct {
		name    string
		body    []byte
		headers map[string]string
		status  int
		msg     string
	}{
		{"json content type", marshalV1(t, validV1()), hdr("application/json", "snappy", ""), 415, "Content-Type"},
		{"unknown proto", marshalV1(t, validV1()), hdr("application/x-protobuf;proto=foo.Bar", "snappy", ""), 415, "foo.Bar"},
		{"gzip encoding", marshalV1(t, validV1()), hdr(v1, "gzip", ""), 415, "Content-Encoding"},
		{"not snappy", []byte("definitely not snappy"), hdr(v1, "snappy", ""), 400, "snappy"},
		{"not protobuf", snappy.Encode(nil, []byte{0xff, 0xff, 0xff, 0xff, 0xff}), hdr(v1, "snappy", ""), 400, "decoding prw1"},
		{"missing metric name", withLabels(prompb.Label{Name: "job", Value: "a"}), hdr(v1, "snappy", ""), 400, "metric name"},
		{"duplicate label", withLabels(prompb.Label{Name: "__name__", Value: "up"}, prompb.Label{Name: "job", Value: "a"}, prompb.Label{Name: "job", Value: "b"}), hdr(v1, "snappy", ""), 400, "duplicate label name"},
		{"empty label name", withLabels(prompb.Label{Name: "__name__", Value: "up"}, prompb.Label{Name: "", Value: "a"}), hdr(v1, "snappy", ""), 400, "empty label name"},
		{"invalid utf8", withLabels(prompb.Label{Name: "__name__", Value: "up"}, prompb.Label{Name: "job", Value: "a\xff"}), hdr(v1, "snappy", ""), 400, "UTF-8"},
		{"bad symbol ref", snappy.Encode(nil, badRefBody), hdr(weirtest.ContentTypeV2, "snappy", ""), 400, "decoding prw2"},
		{"invalid tenant", marshalV1(t, validV1()), hdr(v1, "snappy", "a.b"), 400, "tenant"},
		{"body too large", bytes.Repeat([]byte{1}, 129<<10), hdr(v1, "snappy", ""), 413, "edge.max_request_bytes"},
		{"snappy length bomb", bombHeader, hdr(v1, "snappy", ""), 413, "edge.max_decompressed_bytes"},
		{"snappy zeros bomb", realBomb, hdr(v1, "snappy", ""), 413, "edge.max_decompressed_bytes"},
		{"series too large for a record", snappy.Encode(nil, hugeBody), hdr(v1, "snappy", ""), 400, "Kafka record"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := weirtest.PostRaw(te.srv.URL+"/api/v1/write", c.body, c.headers)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != c.status {
				t.Fatalf("status %d, want %d; body %q", res.Status, c.status, res.Body)
			}
			if !strings.Contains(res.Body, c.msg) {
				t.Fatalf("body %q does not mention %q", res.Body, c.msg)
			}
			if res.SamplesWritten != 0 {
				t.Fatalf("samples written header %d on a refusal", res.SamplesWritten)
			}
		})
	}
	if n := te.rawRecords(t, "anonymous"); n != 0 {
		t.Fatalf("refused requests put %d records in Kafka", n)
	}
	if v := testutil.ToFloat64(te.edge.metrics.samplesWritten.WithLabelValues("anonymous", "prw1")); v != 0 {
		t.Fatalf("weir_edge_samples_written_total = %v after refusals only", v)
	}
	if v := testutil.ToFloat64(te.edge.metrics.requestsRefused.WithLabelValues("anonymous", "invalid_series")); v != 4 {
		t.Fatalf("weir_edge_requests_refused_total{reason=invalid_series} = %v, want 4", v)
	}
	// The edge still works after all that.
	if err := weirtest.MustWrite(weirtest.WriteV1(te.srv.URL, "", validV1())); err != nil {
		t.Fatal(err)
	}
}

// TestChunkedBodyTooLarge sends an oversized body without Content-Length.
func TestChunkedBodyTooLarge(t *testing.T) {
	te := startEdge(t, func(c *config.Config) { c.Edge.MaxRequestBytes = 4096 })
	req, _ := http.NewRequest(http.MethodPost, te.srv.URL+"/api/v1/write", io.MultiReader(bytes.NewReader(make([]byte, 8192))))
	req.ContentLength = -1
	req.Header.Set("Content-Type", weirtest.ContentTypeV1)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
}

// TestKafkaUnavailable stops the broker: the edge answers 503 with
// Retry-After within its produce timeout and acknowledges nothing.
func TestKafkaUnavailable(t *testing.T) {
	te := startEdge(t, func(c *config.Config) { c.Kafka.ProduceTimeout = time.Second })
	// Create the topics first so the failure is the produce, not the
	// topic creation.
	if err := weirtest.MustWrite(weirtest.WriteV1(te.srv.URL, "", validV1())); err != nil {
		t.Fatal(err)
	}
	te.broker.Close()
	start := time.Now()
	res, err := weirtest.WriteV1(te.srv.URL, "", validV1())
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d Retry-After %q, want 503 with Retry-After; body %s", res.Status, res.Header.Get("Retry-After"), res.Body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("refusal took %s, longer than the produce timeout allows", d)
	}
	if v := testutil.ToFloat64(te.edge.metrics.samplesRefused.WithLabelValues("anonymous", "kafka_unavailable")); v != 1 {
		t.Fatalf("refused samples = %v, want 1", v)
	}
}
