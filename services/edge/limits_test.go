package edge

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"

	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/config"
)

// usageRatio reads weir_edge_limit_usage_ratio of a tenant and limit.
func (te *testEdge) usageRatio(t *testing.T, tenant, limit string) float64 {
	t.Helper()
	mfs, err := te.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "weir_edge_limit_usage_ratio" {
			continue
		}
		for _, m := range mf.GetMetric() {
			ls := map[string]string{}
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = l.GetValue()
			}
			if ls["tenant"] == tenant && ls["limit"] == limit {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func rwSeries(labels int, ts time.Time, exemplars int) prompb.TimeSeries {
	s := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "up"}}}
	for i := 1; i < labels; i++ {
		s.Labels = append(s.Labels, prompb.Label{Name: fmt.Sprintf("l%02d", i), Value: "v"})
	}
	s.Samples = []prompb.Sample{{Value: 1, Timestamp: ts.UnixMilli()}}
	for i := 0; i < exemplars; i++ {
		s.Exemplars = append(s.Exemplars, prompb.Exemplar{Labels: []prompb.Label{{Name: "trace_id", Value: strconv.Itoa(i)}}, Value: 1, Timestamp: ts.UnixMilli()})
	}
	return s
}

// TestDataLimits breaks each data limit once, through remote-write and line
// protocol: each gets 400 naming the limit, its value, the tenant and the
// series, is counted by tenant and limit, shows in the usage ratio, and
// puts nothing in Kafka.
func TestDataLimits(t *testing.T) {
	runtimeFile := tempFile(t, "runtime.yaml", `
defaults:
  max_labels_per_series: 12
  max_label_name_length: 20
  max_label_value_length: 30
  max_future_skew: 5m
tenants:
  strict:
    max_exemplars_per_series: 1
`)
	te := startEdge(t, func(c *config.Config) { c.Edge.RuntimeFile = runtimeFile })
	now := time.Now()
	rw := func(ts ...prompb.TimeSeries) []byte {
		return marshalV1(t, &prompb.WriteRequest{Timeseries: ts})
	}
	cases := []struct {
		name, limit, value, series string
		path                       string
		body                       []byte
	}{
		{"labels", "max_labels_per_series", "(12)", "up{l01=", "/api/v1/write", rw(rwSeries(3, now, 0), rwSeries(13, now, 0))},
		{"label name", "max_label_name_length", "(20)", "m_v{", "/write", []byte("m,ok=1 v=1\nm,a_very_long_tag_name_indeed=1 v=1\n")},
		{"label value", "max_label_value_length", "(30)", `m_v{t="xxxxxxxx`, "/api/v2/write", []byte("m,t=" + strings.Repeat("x", 31) + " v=1\n")},
		{"metric name", "max_label_value_length", "(30)", "", "/api/v2/write", []byte(strings.Repeat("m", 29) + " v=1\n")},
		{"future", "max_future_skew", "(5m0s)", "up{", "/api/v1/write", rw(rwSeries(2, now.Add(time.Hour), 0))},
		{"exemplars", "max_exemplars_per_series", "(1)", "up{", "/api/v1/write", rw(rwSeries(2, now, 2))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tenant := "t-" + strings.ReplaceAll(c.name, " ", "-")
			if c.limit == "max_exemplars_per_series" {
				tenant = "strict"
			}
			h := map[string]string{"X-Scope-OrgID": tenant}
			if c.path == "/api/v1/write" {
				h["Content-Type"], h["Content-Encoding"] = weirtest.ContentTypeV1, "snappy"
			}
			r := do(t, "POST", te.srv.URL+c.path, c.body, h)
			if r.status != 400 {
				t.Fatalf("status %d, want 400: %s", r.status, r.body)
			}
			msg := message(r.body)
			for _, s := range []string{c.limit, c.value, `tenant "` + tenant + `"`, c.series} {
				if !strings.Contains(msg, s) {
					t.Fatalf("message %q does not mention %q", msg, s)
				}
			}
			if v := te.refused(tenant, c.limit); v != 1 {
				t.Fatalf("weir_edge_requests_refused_total{tenant=%q,reason=%q} = %v", tenant, c.limit, v)
			}
			if v := te.usageRatio(t, tenant, c.limit); v <= 1 {
				t.Fatalf("usage ratio of %s = %v, want above 1", c.limit, v)
			}
			if n := te.rawRecords(t, tenant); n != 0 {
				t.Fatalf("%d records of a refused request in Kafka", n)
			}
		})
	}
	// Within the limits the usage shows how close a tenant came.
	r := do(t, "POST", te.srv.URL+"/api/v1/write", rw(rwSeries(6, now, 0)), map[string]string{"X-Scope-OrgID": "fine", "Content-Type": weirtest.ContentTypeV1, "Content-Encoding": "snappy"})
	if r.status != 204 {
		t.Fatalf("within limits: %d %s", r.status, r.body)
	}
	if v := te.usageRatio(t, "fine", "max_labels_per_series"); v != 0.5 {
		t.Fatalf("usage of max_labels_per_series %v, want 6/12", v)
	}
	if v := te.usageRatio(t, "fine", "max_exemplars_per_series"); v != -1 {
		t.Fatalf("usage reported for an unlimited limit: %v", v)
	}
}

// TestIngestionRate sends faster than a tenant's rate: 429 with a
// Retry-After that grows while the tenant keeps pushing, other tenants
// unaffected, and a change of the runtime file lifts the limit without a
// restart.
func TestIngestionRate(t *testing.T) {
	runtimeFile := tempFile(t, "runtime.yaml", "tenants:\n  slow:\n    ingestion_rate: 3\n")
	te := startEdge(t, func(c *config.Config) { c.Edge.RuntimeFile = runtimeFile })
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{rwSeries(2, time.Now(), 0), rwSeries(3, time.Now(), 0), rwSeries(4, time.Now(), 0)}}
	if err := weirtest.MustWrite(weirtest.WriteV1(te.srv.URL, "slow", req)); err != nil {
		t.Fatal(err)
	}
	var waits []int
	for i := 0; i < 4; i++ {
		res, err := weirtest.WriteV1(te.srv.URL, "slow", req)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != 429 || !strings.Contains(res.Body, "ingestion_rate") {
			t.Fatalf("refusal %d: %d %s", i, res.Status, res.Body)
		}
		s, err := strconv.Atoi(res.Header.Get("Retry-After"))
		if err != nil {
			t.Fatalf("Retry-After %q", res.Header.Get("Retry-After"))
		}
		waits = append(waits, s)
	}
	// 1-2 s, 2-3 s, 4-6 s, 8-12 s: growing, jittered.
	for i, lo := range []int{1, 2, 4, 8} {
		if waits[i] < lo || waits[i] > lo*3/2+1 {
			t.Fatalf("Retry-After %v: refusal %d outside [%d, %d]", waits, i, lo, lo*3/2+1)
		}
	}
	if v := te.refused("slow", "rate_limited"); v != 4 {
		t.Fatalf("rate_limited refusals %v", v)
	}
	if v := testutil.ToFloat64(te.edge.metrics.samplesRefused.WithLabelValues("slow", "rate_limited")); v != 12 {
		t.Fatalf("rate_limited samples %v", v)
	}
	if v := te.usageRatio(t, "slow", "ingestion_rate"); v < 1 {
		t.Fatalf("usage of ingestion_rate %v, want 1 or more", v)
	}
	if err := weirtest.MustWrite(weirtest.WriteV1(te.srv.URL, "other", req)); err != nil {
		t.Fatalf("another tenant: %v", err)
	}
	writeFile(t, runtimeFile, "tenants:\n  slow:\n    ingestion_rate: 100000\n")
	if err := te.edge.ReloadRuntime(); err != nil {
		t.Fatal(err)
	}
	// The debt of the old rate is repaid at the new one at once.
	weirtest.Eventually(t, 5*time.Second, func() error {
		return weirtest.MustWrite(weirtest.WriteV1(te.srv.URL, "slow", req))
	})
	if n := te.rawRecords(t, "slow"); n < 2 {
		t.Fatalf("records of tenant slow: %d", n)
	}
	// A broken runtime file is refused and the limits stay.
	writeFile(t, runtimeFile, "tenants:\n  slow:\n    ingestion_rate: fast\n")
	if err := te.edge.ReloadRuntime(); err == nil || !strings.Contains(err.Error(), "tenant slow") {
		t.Fatalf("broken runtime file: %v", err)
	}
	if got := te.edge.overrides.For("slow").IngestionRate; got != 100000 {
		t.Fatalf("ingestion rate after a refused file: %v", got)
	}
}

// message is the error message of an answer: the body, or the message of
// InfluxDB's error JSON.
func message(body string) string {
	var e struct{ Message, Error string }
	if json.Unmarshal([]byte(body), &e) == nil {
		return e.Message + e.Error
	}
	return body
}

// heapGrowth runs fn and returns how many bytes were allocated meanwhile
// (in the whole process: client, server and Kafka client).
func heapGrowth(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// gzipBomb is a valid gzip stream of n MiB of zeros: n copies of one
// member of 1 MiB (gzip readers read concatenated members as one stream),
// so making it costs one MiB of compression.
func gzipBomb(t *testing.T, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.Repeat(buf.Bytes(), n)
}

// TestCompressionBombs sends bodies that inflate far beyond
// max_decompressed_bytes: each is refused with 413 after allocating about
// the limit, never the inflated size.
func TestCompressionBombs(t *testing.T) {
	const limit = 1 << 20
	te := startEdge(t, func(c *config.Config) {
		c.Edge.MaxRequestBytes = 1 << 20
		c.Edge.MaxDecompressedBytes = limit
	})
	gz := gzipBomb(t, 512) // 512 MiB of zeros in about 0.5 MiB
	snappyReal := snappy.Encode(nil, make([]byte, 4<<20))
	cases := []struct {
		name    string
		path    string
		body    []byte
		headers map[string]string
	}{
		{"gzip v2", "/api/v2/write?org=o&bucket=b", gz, map[string]string{"Content-Encoding": "gzip"}},
		{"gzip v1", "/write?db=d", gz, map[string]string{"Content-Encoding": "gzip"}},
		{"snappy", "/api/v1/write", snappyReal, map[string]string{"Content-Type": weirtest.ContentTypeV1, "Content-Encoding": "snappy"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r response
			grew := heapGrowth(func() { r = do(t, "POST", te.srv.URL+c.path, c.body, c.headers) })
			if r.status != 413 || !strings.Contains(r.body, "max_decompressed_bytes") {
				t.Fatalf("%d %s", r.status, r.body)
			}
			// The body itself, the limit, and the pooled buffers' slack;
			// far below the 512 MiB the bomb would make.
			if grew > 3*limit+3*uint64(len(c.body))+(8<<20) {
				t.Fatalf("refusing the bomb allocated %d MiB", grew>>20)
			}
			t.Logf("allocated %.1f MiB to refuse a %d KiB body", float64(grew)/(1<<20), len(c.body)>>10)
		})
	}
	// A body above max_request_bytes is refused before it is read.
	huge := bytes.Repeat([]byte("m v=1\n"), 300<<10) // 1.8 MiB
	var r response
	grew := heapGrowth(func() { r = do(t, "POST", te.srv.URL+"/write?db=d", huge, nil) })
	if r.status != 413 || !strings.Contains(r.body, "max_request_bytes") {
		t.Fatalf("oversized body: %d %s", r.status, r.body)
	}
	if grew > 2*uint64(len(huge))+(8<<20) {
		t.Fatalf("refusing an oversized body allocated %d MiB", grew>>20)
	}
	for _, ten := range []string{"o", "d", "anonymous"} {
		if n := te.rawRecords(t, ten); n != 0 {
			t.Fatalf("tenant %s: %d records in Kafka", ten, n)
		}
	}
	if v := te.refused("o", "max_decompressed_bytes") + te.refused("d", "max_decompressed_bytes") + te.refused("anonymous", "max_decompressed_bytes"); v != 3 {
		t.Fatalf("max_decompressed_bytes refusals %v", v)
	}
}
