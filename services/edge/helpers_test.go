package edge

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/kafka"
	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
)

// rawSamples reads every record of a tenant's raw topic and renders its
// samples as `name{l="v", ...} value @ms`, sorted, with the source of each
// record counted in sources.
func (te *testEdge) rawSamples(t *testing.T, tenant string) (samples []string, sources map[string]int) {
	t.Helper()
	want := te.rawRecords(t, tenant)
	sources = map[string]int{}
	if want == 0 {
		return nil, sources
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(te.broker.Addr()),
		kgo.ConsumeTopics(kafka.Topic("weir", tenant, kafka.KindRaw)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got int64
	var req prw.Request
	for got < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s", got, want, tenant)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			meta, err := record.ParseHeaders(r.Headers)
			if err != nil {
				t.Fatal(err)
			}
			sources[meta.Source]++
			req.Reset()
			if err := record.Decode(meta, r.Value, &req); err != nil {
				t.Fatal(err)
			}
			for _, ts := range req.Series {
				for _, s := range ts.Samples {
					samples = append(samples, renderSample(ts.Labels, s.Value, s.Timestamp))
				}
			}
		})
	}
	sort.Strings(samples)
	return samples, sources
}

func renderSample(ls []prw.Label, v float64, ts int64) string {
	var name string
	var parts []string
	for _, l := range ls {
		if l.Name == "__name__" {
			name = l.Value
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%q", l.Name, l.Value))
	}
	return fmt.Sprintf("%s{%s} %s @%d", name, strings.Join(parts, ", "), strconv.FormatFloat(v, 'g', -1, 64), ts)
}

// counter reads a counter of the edge's registry.
func (te *testEdge) refused(tenant, reason string) float64 {
	return testutil.ToFloat64(te.edge.metrics.requestsRefused.WithLabelValues(tenant, reason))
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func tempFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	writeFile(t, p, content)
	return p
}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// response is what a request got back.
type response struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, url string, body []byte, headers map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// telegrafMetric is one metric as Telegraf holds it: tags sorted by key
// (Telegraf keeps them so), fields in the order the input added them.
type telegrafMetric struct {
	name   string
	tags   [][2]string
	fields []telegrafField
	time   time.Time
}

type telegrafField struct {
	key   string
	value any
}

// serialize writes metrics as Telegraf's influx serializer does
// (plugins/serializers/influx): floats with strconv 'f' -1, integers with
// an i suffix, unsigned integers as integers (influx_uint_support off, the
// default), strings quoted, nanosecond timestamps, one line each.
func serialize(ms []telegrafMetric) []byte {
	var b []byte
	esc := strings.NewReplacer(",", `\,`, " ", `\ `, "=", `\=`)
	for _, m := range ms {
		b = append(b, strings.NewReplacer(",", `\,`, " ", `\ `).Replace(m.name)...)
		for _, t := range m.tags {
			b = append(b, ',')
			b = append(b, esc.Replace(t[0])...)
			b = append(b, '=')
			b = append(b, esc.Replace(t[1])...)
		}
		b = append(b, ' ')
		for i, f := range m.fields {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, esc.Replace(f.key)...)
			b = append(b, '=')
			switch v := f.value.(type) {
			case float64:
				b = strconv.AppendFloat(b, v, 'f', -1, 64)
			case int64:
				b = append(strconv.AppendInt(b, v, 10), 'i')
			case uint64:
				if v > math.MaxInt64 {
					v = math.MaxInt64
				}
				b = append(strconv.AppendInt(b, int64(v), 10), 'i')
			case bool:
				b = strconv.AppendBool(b, v)
			case string:
				b = append(b, '"')
				b = append(b, strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v)...)
				b = append(b, '"')
			}
		}
		b = append(b, ' ')
		b = strconv.AppendInt(b, m.time.UnixNano(), 10)
		b = append(b, '\n')
	}
	return b
}

// telegrafBatch is a batch like a Telegraf agent with its default inputs
// (cpu, mem, system) collects: n metrics in total. It returns the
// metrics, the samples weir must make of them and the number of string
// fields among them.
func telegrafBatch(n int, t0 time.Time) (ms []telegrafMetric, samples []string, strs int) {
	for i := 0; len(ms) < n; i++ {
		ts := t0.Add(time.Duration(i) * 10 * time.Second)
		host := [][2]string{{"host", "web-1"}}
		for c := 0; c < 4 && len(ms) < n; c++ {
			cpu := fmt.Sprintf("cpu%d", c)
			m := telegrafMetric{name: "cpu", tags: [][2]string{{"cpu", cpu}, {"host", "web-1"}}, time: ts}
			for j, f := range []string{"usage_user", "usage_system", "usage_idle", "usage_iowait"} {
				v := float64(i*100+c*10+j) + 0.25
				m.fields = append(m.fields, telegrafField{f, v})
				samples = append(samples, renderSample([]prw.Label{{Name: "__name__", Value: "cpu_" + f}, {Name: "cpu", Value: cpu}, {Name: "host", Value: "web-1"}}, v, ts.UnixMilli()))
			}
			ms = append(ms, m)
		}
		if len(ms) < n {
			used := uint64(1<<30 + i)
			ms = append(ms, telegrafMetric{name: "mem", tags: host, time: ts, fields: []telegrafField{{"used", used}, {"used_percent", 12.5}}})
			samples = append(samples,
				renderSample([]prw.Label{{Name: "__name__", Value: "mem_used"}, {Name: "host", Value: "web-1"}}, float64(used), ts.UnixMilli()),
				renderSample([]prw.Label{{Name: "__name__", Value: "mem_used_percent"}, {Name: "host", Value: "web-1"}}, 12.5, ts.UnixMilli()))
		}
		if len(ms) < n {
			ms = append(ms, telegrafMetric{name: "system", tags: host, time: ts, fields: []telegrafField{{"load1", 0.5}, {"uptime_format", "3 days, 2:01"}}})
			samples = append(samples, renderSample([]prw.Label{{Name: "__name__", Value: "system_load1"}, {Name: "host", Value: "web-1"}}, 0.5, ts.UnixMilli()))
			strs++
		}
	}
	sort.Strings(samples)
	return ms, samples, strs
}

// Telegraf's request headers (plugins/outputs/influxdb_v2/http.go and
// plugins/outputs/influxdb/http.go, Telegraf 1.37).
const telegrafUserAgent = "Telegraf/1.37.0 Go/1.25.4"

func telegrafV2Headers(token string) map[string]string {
	return map[string]string{
		"Authorization":    "Token " + token,
		"Content-Encoding": "gzip",
		"Content-Type":     "text/plain; charset=utf-8",
		"User-Agent":       telegrafUserAgent,
	}
}

func telegrafV1Headers(user, password string) map[string]string {
	r, _ := http.NewRequest(http.MethodPost, "http://x", nil)
	r.SetBasicAuth(user, password)
	return map[string]string{
		"Authorization":    r.Header.Get("Authorization"),
		"Content-Encoding": "gzip",
		"Content-Type":     "text/plain; charset=utf-8",
		"User-Agent":       telegrafUserAgent,
	}
}

// telegrafV2Outcome is what Telegraf's outputs.influxdb_v2 does with an
// answer (writeBatch in plugins/outputs/influxdb_v2/http.go): accept the
// batch, split it in two and resend (413), wait and resend (429, 502, 503,
// 504; the wait is the larger of Retry-After and its own back-off), drop it
// (400, 406, 422 and any other 4xx), or keep it for the next flush (401,
// 403 and 5xx).
func telegrafV2Outcome(r response, retries int64) (string, time.Duration) {
	switch r.status {
	case 200, 201, 202, 204, 206, 207, 208:
		return "accepted", 0
	case http.StatusRequestEntityTooLarge:
		return "split", 0
	case 400, 406, 422:
		return "drop", 0
	case 401, 403:
		return "retry", 0
	case 429, 502, 503, 504:
		backoff := math.Min(math.Pow(float64(retries), 2)/40, 60)
		after := 0.0
		if h := r.header.Get("Retry-After"); h != "" {
			var err error
			if after, err = strconv.ParseFloat(h, 64); err != nil {
				after = 10
			}
			after = math.Min(after, 600)
		}
		return "throttle", time.Duration(math.Max(backoff, after)*1000) * time.Millisecond
	}
	if r.status >= 400 && r.status < 500 {
		return "drop", 0
	}
	return "retry", 0
}

// telegrafV1Outcome is what Telegraf's outputs.influxdb does with an answer
// (writeBatch in plugins/outputs/influxdb/http.go): 204 accepts, an error
// body that is not JSON is an error (kept), any 4xx drops the batch,
// anything else keeps it for the next flush.
func telegrafV1Outcome(r response) string {
	if r.status == http.StatusNoContent {
		return "accepted"
	}
	if r.body != "" && !json.Valid([]byte(r.body)) {
		return "retry"
	}
	if r.status >= 400 && r.status < 500 {
		return "drop"
	}
	return "retry"
}
