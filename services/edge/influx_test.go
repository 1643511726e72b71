package edge

import (
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/weir-metrics/weir/pkg/auth"
	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/record"
)

// tenantsFile gives team-a a token (for Telegraf's influxdb_v2 output) and
// a user (for its influxdb output), and team-b a token.
func tenantsFile(t *testing.T) string {
	return tempFile(t, "tenants.yaml", `
tenants:
  team-a:
    tokens: [`+auth.HashToken("tok-a")+`]
    users:
      telegraf: [`+auth.HashToken("pw-a")+`]
  team-b:
    tokens: [`+auth.HashToken("tok-b")+`]
`)
}

// sendV2 sends a batch the way Telegraf's outputs.influxdb_v2 does,
// including its reaction to 413 (split in two and resend each half,
// recursively), and returns every answer it got.
func sendV2(t *testing.T, base string, ms []telegrafMetric, token string) []response {
	t.Helper()
	u := base + "/api/v2/write?" + url.Values{"bucket": {"telegraf"}, "org": {"my-org"}}.Encode()
	r := do(t, "POST", u, gzipped(t, serialize(ms)), telegrafV2Headers(token))
	if kind, _ := telegrafV2Outcome(r, 1); kind == "split" && len(ms) > 1 {
		return append([]response{r}, append(sendV2(t, base, ms[:len(ms)/2], token), sendV2(t, base, ms[len(ms)/2:], token)...)...)
	}
	return []response{r}
}

// TestTelegrafInfluxDBv2 replays what Telegraf's outputs.influxdb_v2 sends
// with its defaults (gzip, batches of 1000 metrics, Authorization: Token)
// and checks that every answer makes Telegraf do the right thing: accept,
// split on 413 until the halves fit, back off on 429 for the Retry-After
// asked, drop batches with bad lines.
func TestTelegrafInfluxDBv2(t *testing.T) {
	runtime := tempFile(t, "runtime.yaml", "")
	te := startEdge(t, func(c *config.Config) {
		c.Auth.TenantsFile = tenantsFile(t)
		c.Edge.RuntimeFile = runtime
	})
	t0 := time.Now().Truncate(time.Second).Add(-time.Hour)
	ms, want, strs := telegrafBatch(1000, t0)

	// Bodies above the tenant's max_request_bytes: 413, and Telegraf's
	// splitting gets everything written.
	full := gzipped(t, serialize(ms))
	writeFile(t, runtime, "tenants:\n  team-a:\n    max_request_bytes: "+strconv.Itoa(len(full)*6/10)+"\n")
	if err := te.edge.ReloadRuntime(); err != nil {
		t.Fatal(err)
	}
	answers := sendV2(t, te.srv.URL, ms, "tok-a")
	if answers[0].status != 413 || len(answers) < 3 {
		t.Fatalf("first answer %d (%s), %d answers; want 413 and a split", answers[0].status, answers[0].body, len(answers))
	}
	var body struct{ Code, Message string }
	if err := json.Unmarshal([]byte(answers[0].body), &body); err != nil || body.Code != "request too large" || !strings.Contains(body.Message, "max_request_bytes") {
		t.Fatalf("413 body %q: want InfluxDB's error JSON naming max_request_bytes", answers[0].body)
	}
	for _, a := range answers[1:] {
		if kind, _ := telegrafV2Outcome(a, 1); kind != "accepted" && kind != "split" {
			t.Fatalf("answer %d %s after splitting", a.status, a.body)
		}
	}
	got, sources := te.rawSamples(t, "team-a")
	if !slices.Equal(got, want) {
		t.Fatalf("Kafka holds %d samples, want %d; first got %q want %q", len(got), len(want), first(got), first(want))
	}
	if len(sources) != 1 || sources[record.SourceInflux] == 0 {
		t.Fatalf("record sources %v, want influx only", sources)
	}
	if v := testutil.ToFloat64(te.edge.metrics.fieldsDropped.WithLabelValues("team-a", "string_field")); v != float64(strs) {
		t.Fatalf("dropped string fields %v, want %d", v, strs)
	}
	if v := te.refused("team-a", "max_request_bytes"); v < 1 {
		t.Fatalf("refusals for max_request_bytes %v", v)
	}

	// Over the ingestion rate: 429 with a Retry-After that Telegraf
	// honours; after waiting that long the batch goes through.
	small := ms[:50]
	n := 0
	for _, m := range small {
		for _, f := range m.fields {
			if _, ok := f.value.(string); !ok {
				n++
			}
		}
	}
	writeFile(t, runtime, "tenants:\n  team-a:\n    ingestion_rate: "+strconv.Itoa(n)+"\n")
	if err := te.edge.ReloadRuntime(); err != nil {
		t.Fatal(err)
	}
	if r := sendV2(t, te.srv.URL, small, "tok-a"); r[0].status != 204 {
		t.Fatalf("first batch within the burst: %d %s", r[0].status, r[0].body)
	}
	r := sendV2(t, te.srv.URL, small, "tok-a")[0]
	kind, wait := telegrafV2Outcome(r, 1)
	if r.status != 429 || kind != "throttle" || wait < time.Second || wait > 3*time.Second {
		t.Fatalf("over the rate: %d, Telegraf would %s for %s; want 429 with a wait of 1-3 s", r.status, kind, wait)
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || body.Code != "too many requests" || !strings.Contains(body.Message, "ingestion_rate") {
		t.Fatalf("429 body %q", r.body)
	}
	time.Sleep(wait)
	if r := sendV2(t, te.srv.URL, small, "tok-a")[0]; r.status != 204 {
		t.Fatalf("after waiting Retry-After: %d %s", r.status, r.body)
	}

	// A batch with a bad line is refused whole with 400, which Telegraf
	// drops; the message names the line and column.
	bad := append(serialize(ms[:2]), "cpu,host=web-1 usage_idle=\n"...)
	bad = append(bad, serialize(ms[2:3])...)
	r = do(t, "POST", te.srv.URL+"/api/v2/write?bucket=telegraf&org=my-org", gzipped(t, bad), telegrafV2Headers("tok-a"))
	if kind, _ := telegrafV2Outcome(r, 1); kind != "drop" || r.status != 400 {
		t.Fatalf("bad line: %d, Telegraf would %s", r.status, kind)
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || body.Code != "invalid" || !strings.Contains(body.Message, "line 3, column 27") {
		t.Fatalf("400 body %q: want code invalid and the line and column", r.body)
	}

	// Wrong token: 401, which Telegraf keeps retrying rather than drop.
	r = do(t, "POST", te.srv.URL+"/api/v2/write?bucket=telegraf&org=my-org", gzipped(t, serialize(small)), telegrafV2Headers("tok-x"))
	if kind, _ := telegrafV2Outcome(r, 1); r.status != 401 || kind != "retry" {
		t.Fatalf("wrong token: %d %s", r.status, kind)
	}
	if te.refused("", auth.ReasonInvalid) != 1 {
		t.Fatalf("invalid credentials not counted")
	}
	// Nothing of team-a's refused requests reached team-b, and nothing
	// reached Kafka for the refused ones: the raw topic holds exactly the
	// split batch and the two accepted small ones.
	got, _ = te.rawSamples(t, "team-a")
	if len(got) != len(want)+2*n {
		t.Fatalf("Kafka holds %d samples, want %d", len(got), len(want)+2*n)
	}
}

// TestTelegrafInfluxDB replays Telegraf's outputs.influxdb (InfluxDB 1.x):
// CREATE DATABASE at start, writes to /write?db= with basic auth and gzip.
// Telegraf drops a batch on any 4xx and keeps it on 5xx, so overload must
// be 503 there.
func TestTelegrafInfluxDB(t *testing.T) {
	runtime := tempFile(t, "runtime.yaml", "")
	te := startEdge(t, func(c *config.Config) {
		c.Auth.TenantsFile = tenantsFile(t)
		c.Edge.RuntimeFile = runtime
	})
	hdr := telegrafV1Headers("telegraf", "pw-a")

	// Connect: CREATE DATABASE, form-encoded, answered with a success
	// Telegraf's JSON check accepts.
	q := url.Values{"q": {`CREATE DATABASE "telegraf"`}}.Encode()
	r := do(t, "POST", te.srv.URL+"/query", []byte(q), map[string]string{
		"Content-Type": "application/x-www-form-urlencoded", "Authorization": hdr["Authorization"], "User-Agent": telegrafUserAgent,
	})
	var qr struct {
		Results []struct {
			StatementID int    `json:"statement_id"`
			Error       string `json:"error"`
		} `json:"results"`
	}
	if r.status != 200 || json.Unmarshal([]byte(r.body), &qr) != nil || len(qr.Results) != 1 || qr.Results[0].Error != "" {
		t.Fatalf("CREATE DATABASE: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", te.srv.URL+"/query", []byte("q=SELECT+*+FROM+cpu"), map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Authorization": hdr["Authorization"]}); r.status != 400 || !strings.Contains(r.body, "PromQL") {
		t.Fatalf("SELECT on /query: %d %s", r.status, r.body)
	}

	t0 := time.Now().Truncate(time.Second).Add(-time.Hour)
	ms, want, _ := telegrafBatch(1000, t0)
	r = do(t, "POST", te.srv.URL+"/write?db=telegraf", gzipped(t, serialize(ms)), hdr)
	if telegrafV1Outcome(r) != "accepted" {
		t.Fatalf("write: %d %s", r.status, r.body)
	}
	got, _ := te.rawSamples(t, "team-a")
	if !slices.Equal(got, want) {
		t.Fatalf("Kafka holds %d samples, want %d", len(got), len(want))
	}
	// u and p parameters, as InfluxDB 1.x clients may send.
	r = do(t, "POST", te.srv.URL+"/write?db=telegraf&u=telegraf&p=pw-a", serialize(ms[:1]), map[string]string{"Content-Type": "text/plain; charset=utf-8"})
	if r.status != 204 {
		t.Fatalf("u/p: %d %s", r.status, r.body)
	}

	// Overload: 503 and Retry-After, so Telegraf keeps the batch.
	writeFile(t, runtime, "tenants:\n  team-a:\n    ingestion_rate: 10\n")
	if err := te.edge.ReloadRuntime(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		r = do(t, "POST", te.srv.URL+"/write?db=telegraf", gzipped(t, serialize(ms[:20])), hdr)
	}
	if r.status != 503 || r.header.Get("Retry-After") == "" || telegrafV1Outcome(r) != "retry" {
		t.Fatalf("over the rate: %d Retry-After %q; Telegraf would %s", r.status, r.header.Get("Retry-After"), telegrafV1Outcome(r))
	}
	if v := te.refused("team-a", "rate_limited"); v != 1 {
		t.Fatalf("rate_limited refusals %v", v)
	}

	// A bad line: 400 with InfluxDB 1.x's error JSON, which Telegraf drops
	// and logs as "unable to parse".
	r = do(t, "POST", te.srv.URL+"/write?db=telegraf", gzipped(t, []byte("cpu,host=a usage=1\ncpu,host=a usage=\"unterminated\n")), hdr)
	var er struct{ Error string }
	if r.status != 400 || telegrafV1Outcome(r) != "drop" || json.Unmarshal([]byte(r.body), &er) != nil ||
		!strings.Contains(er.Error, "unable to parse line 2") || !strings.Contains(r.header.Get("X-Influxdb-Error"), "unable to parse") {
		t.Fatalf("bad line: %d %s %q", r.status, r.body, r.header.Get("X-Influxdb-Error"))
	}
	// Wrong password: 401.
	if r := do(t, "POST", te.srv.URL+"/write?db=telegraf", gzipped(t, serialize(ms[:1])), telegrafV1Headers("telegraf", "nope")); r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
		t.Fatalf("wrong password: %d %v", r.status, r.header)
	}
}

// TestInfluxBadLinesRefuseTheBatch checks the bad-line policy: one bad line
// anywhere refuses the whole request with 400 naming its line and column,
// and nothing of the request reaches Kafka, so a client that retries or
// drops never leaves half a batch behind.
func TestInfluxBadLinesRefuseTheBatch(t *testing.T) {
	te := startEdge(t, nil)
	body := "cpu,host=a usage=1 1700000000000000000\ncpu,host=a usage=1x 1700000000000000000\ncpu,host=b usage=2 1700000000000000000\n"
	for _, path := range []string{"/api/v2/write?bucket=b&org=o", "/write?db=d"} {
		r := do(t, "POST", te.srv.URL+path, []byte(body), nil)
		if r.status != 400 || !strings.Contains(r.body, "line 2, column 18") || !strings.Contains(r.body, "usage=1x") {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
	}
	for _, ten := range []string{"o", "d", "anonymous"} {
		if n := te.rawRecords(t, ten); n != 0 {
			t.Fatalf("tenant %s: %d records of refused requests in Kafka", ten, n)
		}
	}
	if v := te.refused("o", "invalid_line_protocol") + te.refused("d", "invalid_line_protocol"); v != 2 {
		t.Fatalf("invalid_line_protocol refusals %v", v)
	}
}

// TestInfluxPrecisionAndTenants sends the precisions of both APIs and the
// tenant choices without authentication: X-Scope-OrgID, then org or db,
// then anonymous.
func TestInfluxPrecisionAndTenants(t *testing.T) {
	te := startEdge(t, func(c *config.Config) { c.Edge.MaxFutureSkew = 0 })
	for _, c := range []struct {
		path, header, line, tenant, want string
	}{
		{"/api/v2/write?org=org-a&bucket=b", "", "m v=1 1700000000000000000", "org-a", "m_v{} 1 @1700000000000"},
		{"/api/v2/write?org=org-a&bucket=b&precision=s", "", "m v=2 1700000001", "org-a", "m_v{} 2 @1700000001000"},
		{"/api/v2/write?org=org-a&bucket=b&precision=us", "", "m v=3 1700000002123456", "org-a", "m_v{} 3 @1700000002123"},
		{"/api/v2/write?org=org-a&bucket=b&precision=ms", "x-team", "m v=4 1700000003123", "x-team", "m_v{} 4 @1700000003123"},
		{"/write?db=db-a&precision=m", "", "m v=5 28333334", "db-a", "m_v{} 5 @1700000040000"},
		{"/write?db=db-a&precision=h", "", "m v=6 472223", "db-a", "m_v{} 6 @1700002800000"},
		{"/write?precision=u", "", "m v=7 1700000002123456", "anonymous", "m_v{} 7 @1700000002123"},
	} {
		h := map[string]string{}
		if c.header != "" {
			h["X-Scope-OrgID"] = c.header
		}
		if r := do(t, "POST", te.srv.URL+c.path, []byte(c.line), h); r.status != 204 {
			t.Fatalf("%s: %d %s", c.path, r.status, r.body)
		}
		got, _ := te.rawSamples(t, c.tenant)
		if !slices.Contains(got, c.want) {
			t.Fatalf("%s: tenant %s holds %v, want %s", c.path, c.tenant, got, c.want)
		}
	}
	for _, p := range []string{"/api/v2/write?precision=h", "/write?precision=d"} {
		if r := do(t, "POST", te.srv.URL+p, []byte("m v=1 1"), nil); r.status != 400 || !strings.Contains(r.body, "precision") {
			t.Fatalf("%s: %d %s", p, r.status, r.body)
		}
	}
	if r := do(t, "POST", te.srv.URL+"/write?db=a.b", []byte("m v=1 1"), nil); r.status != 400 || !strings.Contains(r.body, "tenant") {
		t.Fatalf("db that is no tenant ID: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", te.srv.URL+"/write?db=x", []byte("m v=1"), map[string]string{"Content-Encoding": "br"}); r.status != 415 {
		t.Fatalf("brotli: %d %s", r.status, r.body)
	}
}

// TestInfluxTenantOptions sets the line-protocol choices per tenant in the
// runtime file: the database as a label, string fields kept, names as sent.
func TestInfluxTenantOptions(t *testing.T) {
	runtime := tempFile(t, "runtime.yaml", `
tenants:
  keep:
    influx_database_label: db
    influx_string_fields: info
    influx_keep_names: true
`)
	te := startEdge(t, func(c *config.Config) { c.Edge.RuntimeFile = runtime })
	line := `disk.io,dev=sda reads=3i,state="ok" 1700000000000000000`
	for _, ten := range []string{"keep", "default"} {
		if r := do(t, "POST", te.srv.URL+"/write?db=telegraf", []byte(line), map[string]string{"X-Scope-OrgID": ten}); r.status != 204 {
			t.Fatalf("%s: %d %s", ten, r.status, r.body)
		}
	}
	got, _ := te.rawSamples(t, "keep")
	want := []string{`disk.io_info{db="telegraf", dev="sda", state="ok"} 1 @1700000000000`, `disk.io_reads{db="telegraf", dev="sda"} 3 @1700000000000`}
	if !slices.Equal(got, want) {
		t.Fatalf("tenant keep: %q, want %q", got, want)
	}
	got, _ = te.rawSamples(t, "default")
	if want := []string{`disk_io_reads{dev="sda"} 3 @1700000000000`}; !slices.Equal(got, want) {
		t.Fatalf("tenant default: %q, want %q", got, want)
	}
	if v := testutil.ToFloat64(te.edge.metrics.fieldsDropped.WithLabelValues("default", "string_field")); v != 1 {
		t.Fatalf("dropped string fields of tenant default: %v", v)
	}
}

func TestPingHealth(t *testing.T) {
	te := startEdge(t, nil)
	for _, m := range []string{"GET", "HEAD"} {
		r := do(t, m, te.srv.URL+"/ping", nil, nil)
		if r.status != 204 || r.header.Get("X-Influxdb-Version") == "" {
			t.Fatalf("%s /ping: %d %v", m, r.status, r.header)
		}
	}
	if r := do(t, "GET", te.srv.URL+"/ping?verbose=true", nil, nil); r.status != 200 || !strings.Contains(r.body, "version") {
		t.Fatalf("/ping?verbose=true: %d %s", r.status, r.body)
	}
	var h struct{ Status string }
	if r := do(t, "GET", te.srv.URL+"/health", nil, nil); r.status != 200 || json.Unmarshal([]byte(r.body), &h) != nil || h.Status != "pass" {
		t.Fatalf("/health: %d %s", r.status, r.body)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
