package promapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/weir-metrics/weir/pkg/promapi"
	"github.com/weir-metrics/weir/pkg/tsdbstore"
)

const tenantHeader = "X-Scope-OrgID"

// t0 is the time of the first sample; samples follow every 15s.
var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func at(i int) time.Time { return t0.Add(time.Duration(i) * 15 * time.Second) }
func ms(i int) int64     { return at(i).UnixMilli() }
func unix(i int) string  { return strconv.FormatInt(at(i).Unix(), 10) }

// shardedSource is how the sink serves a tenant: several TSDBs per tenant,
// merged as tsdbstore.Store merges them.
type shardedSource struct{ shards map[string][]*tsdb.DB }

func (s *shardedSource) Querier(_ context.Context, tenant string, mint, maxt int64) (storage.Querier, error) {
	var qs []storage.Querier
	for _, db := range s.shards[tenant] {
		q, err := db.Querier(mint, maxt)
		if err != nil {
			for _, q := range qs {
				q.Close()
			}
			return nil, err
		}
		qs = append(qs, q)
	}
	return storage.NewMergeQuerier(qs, nil, storage.ChainedSeriesMerge), nil
}

func (s *shardedSource) ExemplarQuerier(ctx context.Context, tenant string) (storage.ExemplarQuerier, error) {
	var qs []storage.ExemplarQuerier
	for _, db := range s.shards[tenant] {
		q, err := db.ExemplarQuerier(ctx)
		if err != nil {
			return nil, err
		}
		qs = append(qs, q)
	}
	return tsdbstore.MergeExemplarQueriers(qs), nil
}

func openShard(t *testing.T) *tsdb.DB {
	t.Helper()
	opts := tsdb.DefaultOptions()
	opts.EnableExemplarStorage = true
	opts.MaxExemplars = 100
	db, err := tsdb.Open(t.TempDir(), slog.New(slog.DiscardHandler), nil, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// hist is a growing native histogram: a zero bucket of i, (0.5,1] of i and
// (1,2] of 2i observations.
func hist(i int) *histogram.Histogram {
	return &histogram.Histogram{
		Schema:          0,
		ZeroThreshold:   0.001,
		ZeroCount:       uint64(i),
		Count:           uint64(4 * i),
		Sum:             3.5 * float64(i),
		PositiveSpans:   []histogram.Span{{Offset: 0, Length: 2}},
		PositiveBuckets: []int64{int64(i), int64(i)}, // delta-encoded: i, 2i
	}
}

// fixture writes two tenants' data, two shards each, at i = 0..40, and
// serves them. Tenant alpha:
//   - http_requests_total{job="api",instance="a",code="200"} = 10i (shard 0)
//   - http_requests_total{job="api",instance="b",code="500"} = i (shard 1)
//   - shard_split_total{job="api"} = i: even i in shard 0, odd i in shard 1,
//     i=4 in both (the merge must deduplicate it)
//   - request_duration_seconds{job="api"} = hist(i+1), a native histogram
//   - exemplars on instance "a" at i=20 and on instance "b" at i=21
//
// Tenant beta:
//   - http_requests_total{job="beta-secret",instance="z",code="200"} = 1000+i
//   - beta_only_metric{secret="beta-secret"} = 7
//   - an exemplar with trace_id="beta-secret"
//
// Every beta string contains "beta", so alpha's responses must never do.
func fixture(t *testing.T) (*shardedSource, *httptest.Server) {
	t.Helper()
	src := &shardedSource{shards: map[string][]*tsdb.DB{
		"alpha": {openShard(t), openShard(t)},
		"beta":  {openShard(t), openShard(t)},
	}}
	ctx := context.Background()
	a0, a1 := src.shards["alpha"][0].Appender(ctx), src.shards["alpha"][1].Appender(ctx)
	b0, b1 := src.shards["beta"][0].Appender(ctx), src.shards["beta"][1].Appender(ctx)
	reqA := labels.FromStrings("__name__", "http_requests_total", "job", "api", "instance", "a", "code", "200")
	reqB := labels.FromStrings("__name__", "http_requests_total", "job", "api", "instance", "b", "code", "500")
	split := labels.FromStrings("__name__", "shard_split_total", "job", "api")
	dur := labels.FromStrings("__name__", "request_duration_seconds", "job", "api")
	reqZ := labels.FromStrings("__name__", "http_requests_total", "job", "beta-secret", "instance", "z", "code", "200")
	betaOnly := labels.FromStrings("__name__", "beta_only_metric", "secret", "beta-secret")
	must := func(_ storage.SeriesRef, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i <= 40; i++ {
		refA, err := a0.Append(0, reqA, ms(i), float64(10*i))
		must(refA, err)
		refB, err := a1.Append(0, reqB, ms(i), float64(i))
		must(refB, err)
		if i%2 == 0 || i == 4 {
			must(a0.Append(0, split, ms(i), float64(i)))
		}
		if i%2 == 1 || i == 4 {
			must(a1.Append(0, split, ms(i), float64(i)))
		}
		must(a0.AppendHistogram(0, dur, ms(i), hist(i+1), nil))
		if i == 20 {
			must(a0.AppendExemplar(refA, reqA, exemplar.Exemplar{Labels: labels.FromStrings("trace_id", "alpha-trace-a"), Value: 1.5, Ts: ms(i), HasTs: true}))
		}
		if i == 21 {
			must(a1.AppendExemplar(refB, reqB, exemplar.Exemplar{Labels: labels.FromStrings("trace_id", "alpha-trace-b"), Value: 2.5, Ts: ms(i), HasTs: true}))
		}
		refZ, err := b0.Append(0, reqZ, ms(i), float64(1000+i))
		must(refZ, err)
		must(b1.Append(0, betaOnly, ms(i), 7))
		if i == 20 {
			must(b0.AppendExemplar(refZ, reqZ, exemplar.Exemplar{Labels: labels.FromStrings("trace_id", "beta-secret"), Value: 9, Ts: ms(i), HasTs: true}))
		}
	}
	for _, app := range []storage.Appender{a0, a1, b0, b1} {
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}

	return src, serve(t, promapi.Options{Source: src})
}

// serve serves opts, with the test's tenant header and build info unless
// opts name others.
func serve(t *testing.T, opts promapi.Options) *httptest.Server {
	t.Helper()
	if opts.TenantFromRequest == nil {
		opts.TenantFromRequest = promapi.TenantFromHeader(tenantHeader)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.BuildInfo == (promapi.BuildInfo{}) {
		opts.BuildInfo = promapi.BuildInfo{Version: "1.2.3", Revision: "abc123", Branch: "main"}
	}
	a, err := promapi.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return srv
}

type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

// do sends a GET (form == nil means no parameters) or, with post, a
// form-encoded POST, as the given tenant ("" sends no tenant header).
func do(t *testing.T, srv *httptest.Server, tenant, method, path string, form url.Values) (int, []byte) {
	t.Helper()
	var body io.Reader
	target := srv.URL + path
	if method == http.MethodPost {
		body = strings.NewReader(form.Encode())
	} else if len(form) > 0 {
		target += "?" + form.Encode()
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if tenant != "" {
		req.Header.Set(tenantHeader, tenant)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// ok does a request that must succeed and returns its data.
func ok(t *testing.T, srv *httptest.Server, tenant, method, path string, form url.Values) json.RawMessage {
	t.Helper()
	code, body := do(t, srv, tenant, method, path, form)
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("%s %s: status %d, body %q: %v", method, path, code, body, err)
	}
	if code != http.StatusOK || r.Status != "success" {
		t.Fatalf("%s %s: status %d, body %s", method, path, code, body)
	}
	return r.Data
}

func decode[T any](t *testing.T, raw json.RawMessage) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	return v
}

type queryData struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

type vectorSample struct {
	Metric    map[string]string `json:"metric"`
	Value     [2]any            `json:"value"`
	Histogram [2]any            `json:"histogram"`
}

type matrixSeries struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
}

// point renders a sample as Prometheus does: [unix seconds, "value"].
func point(i int, v string) [2]any { return [2]any{float64(at(i).Unix()), v} }

func TestInstantQuery(t *testing.T) {
	_, srv := fixture(t)
	form := url.Values{"query": {`http_requests_total{instance="a"}`}, "time": {unix(20)}}
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		d := decode[queryData](t, ok(t, srv, "alpha", method, "/api/v1/query", form))
		if d.ResultType != "vector" {
			t.Fatalf("%s: resultType %q", method, d.ResultType)
		}
		got := decode[[]vectorSample](t, d.Result)
		want := []vectorSample{{
			Metric: map[string]string{"__name__": "http_requests_total", "job": "api", "instance": "a", "code": "200"},
			Value:  point(20, "200"),
		}}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: got %v, want %v", method, got, want)
		}
	}

	// Between samples an instant query returns the latest one before,
	// stamped with the query time.
	form = url.Values{"query": {`http_requests_total{instance="b"}`}, "time": {strconv.FormatInt(at(20).Unix()+7, 10)}}
	got := decode[[]vectorSample](t, decode[queryData](t, ok(t, srv, "alpha", http.MethodGet, "/api/v1/query", form)).Result)
	if len(got) != 1 || got[0].Value != [2]any{float64(at(20).Unix() + 7), "20"} {
		t.Errorf("got %v", got)
	}
}

func TestRangeQueryMergesShards(t *testing.T) {
	_, srv := fixture(t)
	form := url.Values{
		"query": {"shard_split_total"},
		"start": {unix(2)}, "end": {unix(9)}, "step": {"15s"},
	}
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		d := decode[queryData](t, ok(t, srv, "alpha", method, "/api/v1/query_range", form))
		if d.ResultType != "matrix" {
			t.Fatalf("resultType %q", d.ResultType)
		}
		got := decode[[]matrixSeries](t, d.Result)
		want := []matrixSeries{{Metric: map[string]string{"__name__": "shard_split_total", "job": "api"}}}
		for i := 2; i <= 9; i++ {
			want[0].Values = append(want[0].Values, point(i, strconv.Itoa(i)))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: got %v, want %v", method, got, want)
		}
	}
}

func TestAggregation(t *testing.T) {
	_, srv := fixture(t)
	form := url.Values{"query": {`sort(sum by (code) (http_requests_total))`}, "time": {unix(30)}}
	got := decode[[]vectorSample](t, decode[queryData](t, ok(t, srv, "alpha", http.MethodGet, "/api/v1/query", form)).Result)
	want := []vectorSample{
		{Metric: map[string]string{"code": "500"}, Value: point(30, "30")},
		{Metric: map[string]string{"code": "200"}, Value: point(30, "300")},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}

	// Samples are 15s apart and rise by 10 (instance a) and 1 (b): rate is
	// exactly (10+1)/15 per second over any window inside the data.
	form = url.Values{"query": {`sum(rate(http_requests_total[1m]))`}, "time": {unix(30)}}
	got = decode[[]vectorSample](t, decode[queryData](t, ok(t, srv, "alpha", http.MethodGet, "/api/v1/query", form)).Result)
	if len(got) != 1 {
		t.Fatalf("got %v", got)
	}
	v, err := strconv.ParseFloat(got[0].Value[1].(string), 64)
	if err != nil || v < 11.0/15-1e-9 || v > 11.0/15+1e-9 {
		t.Errorf("rate: got %v, want %v", got[0].Value[1], 11.0/15)
	}
}

func TestNativeHistograms(t *testing.T) {
	_, srv := fixture(t)
	// hist(21) is stored at i=20: 84 observations summing to 73.5.
	form := url.Values{"query": {`request_duration_seconds`}, "time": {unix(20)}}
	got := decode[[]vectorSample](t, decode[queryData](t, ok(t, srv, "alpha", http.MethodGet, "/api/v1/query", form)).Result)
	if len(got) != 1 || got[0].Value[0] != nil {
		t.Fatalf("want one histogram sample, got %v", got)
	}
	if got[0].Histogram[0] != float64(at(20).Unix()) {
		t.Errorf("timestamp %v", got[0].Histogram[0])
	}
	h, _ := json.Marshal(got[0].Histogram[1])
	wantH := `{"buckets":[[3,"-0.001","0.001","21"],[0,"0.5","1","21"],[0,"1","2","42"]],"count":"84","sum":"73.5"}`
	if string(h) != wantH {
		t.Errorf("histogram %s, want %s", h, wantH)
	}

	for query, want := range map[string]string{
		`histogram_count(request_duration_seconds)`: "84",
		`histogram_sum(request_duration_seconds)`:   "73.5",
		// 21 of 84 observations are ≤ 0.001, 42 ≤ 1: the median lies at the
		// upper bound of (0.5,1].
		`histogram_quantile(0.5, request_duration_seconds)`: "1",
	} {
		form := url.Values{"query": {query}, "time": {unix(20)}}
		got := decode[[]vectorSample](t, decode[queryData](t, ok(t, srv, "alpha", http.MethodGet, "/api/v1/query", form)).Result)
		if len(got) != 1 || got[0].Value != point(20, want) {
			t.Errorf("%s: got %v, want %v", query, got, want)
		}
	}

	// A range query returns histograms under "histograms".
	form = url.Values{"query": {`request_duration_seconds`}, "start": {unix(0)}, "end": {unix(1)}, "step": {"15s"}}
	series := decode[[]struct {
		Histograms [][2]json.RawMessage `json:"histograms"`
	}](t, decode[queryData](t, ok(t, srv, "alpha", http.MethodGet, "/api/v1/query_range", form)).Result)
	if len(series) != 1 || len(series[0].Histograms) != 2 ||
		!strings.Contains(string(series[0].Histograms[1][1]), `"count":"8"`) {
		t.Errorf("got %+v", series)
	}
}

func TestSeriesLabelsAndValues(t *testing.T) {
	_, srv := fixture(t)
	reqA := map[string]string{"__name__": "http_requests_total", "job": "api", "instance": "a", "code": "200"}
	reqB := map[string]string{"__name__": "http_requests_total", "job": "api", "instance": "b", "code": "500"}
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		got := decode[[]map[string]string](t, ok(t, srv, "alpha", method, "/api/v1/series", url.Values{"match[]": {"http_requests_total"}}))
		if fmt.Sprint(got) != fmt.Sprint([]map[string]string{reqA, reqB}) {
			t.Errorf("%s series: got %v", method, got)
		}
		names := decode[[]string](t, ok(t, srv, "alpha", method, "/api/v1/labels", nil))
		if want := []string{"__name__", "code", "instance", "job"}; !slices.Equal(names, want) {
			t.Errorf("%s labels: got %v, want %v", method, names, want)
		}
	}
	// Two matchers are a union, series deduplicated across shards.
	got := decode[[]map[string]string](t, ok(t, srv, "alpha", http.MethodGet, "/api/v1/series", url.Values{
		"match[]": {`shard_split_total`, `{job="api",__name__=~"shard.*"}`},
		"start":   {unix(0)}, "end": {unix(40)},
	}))
	if len(got) != 1 {
		t.Errorf("series: got %v", got)
	}
	names := decode[[]string](t, ok(t, srv, "alpha", http.MethodGet, "/api/v1/labels", url.Values{"match[]": {"shard_split_total"}}))
	if want := []string{"__name__", "job"}; !slices.Equal(names, want) {
		t.Errorf("labels{match}: got %v, want %v", names, want)
	}
	for name, want := range map[string][]string{
		"__name__": {"http_requests_total", "request_duration_seconds", "shard_split_total"},
		"instance": {"a", "b"},
		"job":      {"api"},
		"nope":     {},
	} {
		got := decode[[]string](t, ok(t, srv, "alpha", http.MethodGet, "/api/v1/label/"+name+"/values", nil))
		if !slices.Equal(got, want) {
			t.Errorf("label %s values: got %v, want %v", name, got, want)
		}
	}
	got2 := decode[[]string](t, ok(t, srv, "alpha", http.MethodGet, "/api/v1/label/instance/values", url.Values{"match[]": {`{code="500"}`}}))
	if !slices.Equal(got2, []string{"b"}) {
		t.Errorf("instance values for code 500: %v", got2)
	}
}

func TestExemplars(t *testing.T) {
	_, srv := fixture(t)
	type result struct {
		SeriesLabels map[string]string `json:"seriesLabels"`
		Exemplars    []struct {
			Labels    map[string]string `json:"labels"`
			Value     string            `json:"value"`
			Timestamp float64           `json:"timestamp"`
		} `json:"exemplars"`
	}
	got := decode[[]result](t, ok(t, srv, "alpha", http.MethodGet, "/api/v1/query_exemplars", url.Values{
		"query": {`http_requests_total`}, "start": {unix(0)}, "end": {unix(40)},
	}))
	if len(got) != 2 || got[0].SeriesLabels["instance"] != "a" || got[1].SeriesLabels["instance"] != "b" {
		t.Fatalf("got %+v", got)
	}
	e := got[0].Exemplars
	if len(e) != 1 || e[0].Labels["trace_id"] != "alpha-trace-a" || e[0].Value != "1.5" || e[0].Timestamp != float64(at(20).Unix()) {
		t.Errorf("got %+v", e)
	}
}

func TestFormatParseAndBuildInfo(t *testing.T) {
	_, srv := fixture(t)
	formatted := decode[string](t, ok(t, srv, "alpha", http.MethodPost, "/api/v1/format_query", url.Values{"query": {`sum(rate(x[5m]))by(job)`}}))
	if formatted != `sum by (job) (rate(x[5m]))` {
		t.Errorf("format_query: %q", formatted)
	}
	parsed := decode[map[string]any](t, ok(t, srv, "alpha", http.MethodGet, "/api/v1/parse_query", url.Values{"query": {`up`}}))
	if parsed["type"] != "vectorSelector" || parsed["name"] != "up" {
		t.Errorf("parse_query: %v", parsed)
	}
	bi := decode[map[string]string](t, ok(t, srv, "alpha", http.MethodGet, "/api/v1/status/buildinfo", nil))
	if bi["version"] != "1.2.3" || bi["revision"] != "abc123" || bi["branch"] != "main" || !strings.HasPrefix(bi["goVersion"], "go") {
		t.Errorf("buildinfo: %v", bi)
	}
}

func TestInvalidQuery(t *testing.T) {
	_, srv := fixture(t)
	for _, tc := range []struct{ path, query string }{
		{"/api/v1/query", `sum(`},
		{"/api/v1/query_range", `rate(x[5m]`},
		{"/api/v1/series", ``},
	} {
		form := url.Values{"query": {tc.query}, "start": {unix(0)}, "end": {unix(1)}, "step": {"15s"}}
		code, body := do(t, srv, "alpha", http.MethodGet, tc.path, form)
		r := decode[apiResponse](t, body)
		if code != http.StatusBadRequest || r.Status != "error" || r.ErrorType != "bad_data" || r.Error == "" {
			t.Errorf("%s %q: status %d, body %s", tc.path, tc.query, code, body)
		}
	}
	code, body := do(t, srv, "alpha", http.MethodGet, "/api/v1/query", url.Values{"query": {`sum(`}})
	if want := `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"}`; code != 400 || string(body) != want {
		t.Errorf("got %d %s, want %s", code, body, want)
	}
	// A bad step is Prometheus' own parameter error too.
	code, body = do(t, srv, "alpha", http.MethodGet, "/api/v1/query_range", url.Values{"query": {"up"}, "start": {unix(1)}, "end": {unix(0)}, "step": {"15s"}})
	if r := decode[apiResponse](t, body); code != 400 || r.ErrorType != "bad_data" || !strings.Contains(r.Error, `invalid parameter "end"`) {
		t.Errorf("got %d %s", code, body)
	}
}

// TestTenantIsolation asks every endpoint, as alpha, for everything it can
// name, and checks nothing of beta's comes back; then the reverse; then the
// same with requests of both tenants in flight at once.
func TestTenantIsolation(t *testing.T) {
	_, srv := fixture(t)
	all := `{__name__=~".+"}`
	// shows marks the requests whose answer must include the tenant's own
	// series, so that an empty answer cannot pass for isolation.
	requests := []struct {
		method, path string
		form         url.Values
		shows        bool
	}{
		{http.MethodGet, "/api/v1/query", url.Values{"query": {all}, "time": {unix(20)}}, true},
		{http.MethodPost, "/api/v1/query", url.Values{"query": {`count by (job) (` + all + `)`}, "time": {unix(20)}}, true},
		{http.MethodGet, "/api/v1/query_range", url.Values{"query": {all}, "start": {unix(0)}, "end": {unix(40)}, "step": {"15s"}}, true},
		{http.MethodPost, "/api/v1/query_range", url.Values{"query": {`count by (job, secret) (` + all + `)`}, "start": {unix(0)}, "end": {unix(40)}, "step": {"1m"}}, true},
		{http.MethodGet, "/api/v1/series", url.Values{"match[]": {all}}, true},
		{http.MethodPost, "/api/v1/series", url.Values{"match[]": {all, `beta_only_metric`, `shard_split_total`}}, true},
		{http.MethodGet, "/api/v1/labels", nil, false},
		{http.MethodPost, "/api/v1/labels", url.Values{"match[]": {all}}, false},
		{http.MethodGet, "/api/v1/label/__name__/values", nil, false},
		{http.MethodGet, "/api/v1/label/job/values", nil, true},
		{http.MethodGet, "/api/v1/label/secret/values", nil, false},
		{http.MethodGet, "/api/v1/label/trace_id/values", nil, false},
		{http.MethodGet, "/api/v1/query_exemplars", url.Values{"query": {all}, "start": {unix(0)}, "end": {unix(40)}}, true},
		{http.MethodPost, "/api/v1/query_exemplars", url.Values{"query": {`http_requests_total`}}, true},
	}
	// Each tenant's marks: every string in beta's data contains "beta";
	// alpha's job is "api" and its other names and traces are its own.
	alphaMarks := []string{`"api"`, "shard_split", "request_duration", "alpha"}
	betaMarks := []string{"beta"}
	check := func(t *testing.T, tenant string, foreign []string, own string) {
		for _, r := range requests {
			data := string(ok(t, srv, tenant, r.method, r.path, r.form))
			for _, f := range foreign {
				if strings.Contains(data, f) {
					t.Errorf("%s %s %v as %s: response has %q: %s", r.method, r.path, r.form, tenant, f, data)
				}
			}
			if own != "" && r.shows && !strings.Contains(data, own) {
				t.Errorf("%s %s %v as %s: response lacks %q: %s", r.method, r.path, r.form, tenant, own, data)
			}
		}
	}
	t.Run("alpha", func(t *testing.T) { check(t, "alpha", betaMarks, `"api"`) })
	t.Run("beta", func(t *testing.T) { check(t, "beta", alphaMarks, "beta-secret") })
	// A tenant with no shards sees nothing at all, rather than anyone else's.
	t.Run("gamma", func(t *testing.T) { check(t, "gamma", append(alphaMarks, betaMarks...), "") })

	t.Run("concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for i := range 40 {
			tenant, foreign := "alpha", betaMarks
			if i%2 == 1 {
				tenant, foreign = "beta", alphaMarks
			}
			wg.Go(func() {
				r := requests[i%len(requests)]
				req, _ := http.NewRequest(http.MethodGet, srv.URL+r.path+"?"+r.form.Encode(), nil)
				req.Header.Set(tenantHeader, tenant)
				resp, err := srv.Client().Do(req)
				if err != nil {
					errs <- err
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusOK || slices.ContainsFunc(foreign, func(f string) bool { return strings.Contains(string(b), f) }) {
					errs <- fmt.Errorf("%s %s as %s: %d %s", r.path, r.form, tenant, resp.StatusCode, b)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

func TestTenantErrors(t *testing.T) {
	_, srv := fixture(t)
	q := url.Values{"query": {"http_requests_total"}}
	for _, tc := range []struct {
		name, tenant string
		status       int
		errorType    string
	}{
		{"missing", "", http.StatusUnauthorized, "unauthorized"},
		{"invalid", "al.pha", http.StatusBadRequest, "bad_data"},
		{"too long", strings.Repeat("a", 65), http.StatusBadRequest, "bad_data"},
	} {
		for _, path := range []string{"/api/v1/query", "/api/v1/series", "/api/v1/labels", "/api/v1/status/buildinfo"} {
			code, body := do(t, srv, tc.tenant, http.MethodGet, path, url.Values{"query": q["query"], "match[]": q["query"]})
			r := decode[apiResponse](t, body)
			if code != tc.status || r.Status != "error" || r.ErrorType != tc.errorType || r.Error == "" {
				t.Errorf("%s %s: %d %s", tc.name, path, code, body)
			}
		}
	}

	// The status is whatever TenantFromRequest's error carries; a plain
	// error means 401.
	for _, tc := range []struct {
		err    error
		status int
		typ    string
	}{
		{&promapi.StatusError{Status: http.StatusForbidden, Err: errors.New("not yours")}, http.StatusForbidden, "forbidden"},
		{fmt.Errorf("wrapped: %w", &promapi.StatusError{Status: http.StatusServiceUnavailable, Err: errors.New("auth down")}), http.StatusServiceUnavailable, "unavailable"},
		{errors.New("bad token"), http.StatusUnauthorized, "unauthorized"},
		{&promapi.StatusError{Status: http.StatusOK, Err: errors.New("confused hook")}, http.StatusInternalServerError, "internal"},
	} {
		a, err := promapi.New(promapi.Options{
			Source:            &shardedSource{},
			TenantFromRequest: func(*http.Request) (string, error) { return "", tc.err },
		})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/query?query=up", nil))
		want := fmt.Sprintf(`{"status":"error","errorType":%q,"error":%q}`, tc.typ, tc.err.Error())
		if rec.Code != tc.status || rec.Body.String() != want || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("got %d %s, want %d %s", rec.Code, rec.Body, tc.status, want)
		}
	}

	if _, err := promapi.New(promapi.Options{Source: &shardedSource{}}); err == nil {
		t.Error("New without TenantFromRequest succeeded")
	}
	if _, err := promapi.New(promapi.Options{TenantFromRequest: promapi.TenantFromHeader(tenantHeader)}); err == nil {
		t.Error("New without Source succeeded")
	}
}

func TestOnlyQueryRoutes(t *testing.T) {
	_, srv := fixture(t)
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, "/api/v1/targets"},
		{http.MethodGet, "/api/v1/targets/metadata"},
		{http.MethodGet, "/api/v1/scrape_pools"},
		{http.MethodGet, "/api/v1/alertmanagers"},
		{http.MethodGet, "/api/v1/metadata"},
		{http.MethodGet, "/api/v1/rules"},
		{http.MethodGet, "/api/v1/alerts"},
		{http.MethodGet, "/api/v1/status/config"},
		{http.MethodGet, "/api/v1/status/flags"},
		{http.MethodGet, "/api/v1/status/runtimeinfo"},
		{http.MethodGet, "/api/v1/status/tsdb"},
		{http.MethodGet, "/api/v1/status/tsdb/blocks"},
		{http.MethodGet, "/api/v1/status/walreplay"},
		{http.MethodGet, "/api/v1/status/self_metrics"},
		{http.MethodGet, "/api/v1/features"},
		{http.MethodGet, "/api/v1/notifications"},
		{http.MethodGet, "/api/v1/notifications/live"},
		{http.MethodGet, "/api/v1/search/metric_names"},
		{http.MethodGet, "/api/v1/openapi.yaml"},
		{http.MethodPost, "/api/v1/read"},
		{http.MethodPost, "/api/v1/write"},
		{http.MethodPost, "/api/v1/otlp/v1/metrics"},
		{http.MethodPost, "/api/v1/admin/tsdb/delete_series"},
		{http.MethodPost, "/api/v1/admin/tsdb/snapshot"},
		{http.MethodPut, "/api/v1/admin/tsdb/clean_tombstones"},
		{http.MethodGet, "/api/v1/label/job/values/extra"},
		{http.MethodGet, "/api/v2/query"},
		{http.MethodGet, "/metrics"},
		{http.MethodGet, "/"},
	} {
		for _, tenant := range []string{"alpha", ""} {
			if code, body := do(t, srv, tenant, r.method, r.path, nil); code != http.StatusNotFound {
				t.Errorf("%s %s (tenant %q): %d %s", r.method, r.path, tenant, code, body)
			}
		}
	}
	// Label values only accept GET, as in Prometheus.
	if code, _ := do(t, srv, "alpha", http.MethodPost, "/api/v1/label/job/values", url.Values{}); code != http.StatusMethodNotAllowed {
		t.Errorf("POST label values: %d", code)
	}
}

// tenantTransport is how a Go program would set the tenant header on the
// official client.
type tenantTransport struct{ tenant string }

func (tt tenantTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if tt.tenant != "" {
		r.Header.Set(tenantHeader, tt.tenant)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestOfficialClient(t *testing.T) {
	_, srv := fixture(t)
	newClient := func(tenant string) promv1.API {
		c, err := api.NewClient(api.Config{Address: srv.URL, RoundTripper: tenantTransport{tenant}})
		if err != nil {
			t.Fatal(err)
		}
		return promv1.NewAPI(c)
	}
	ctx := context.Background()
	c := newClient("alpha")

	v, _, err := c.Query(ctx, `http_requests_total{instance="a"}`, at(20))
	if err != nil {
		t.Fatal(err)
	}
	vec := v.(model.Vector)
	if len(vec) != 1 || vec[0].Value != 200 || !vec[0].Timestamp.Time().Equal(at(20)) || vec[0].Metric["code"] != "200" {
		t.Errorf("query: %v", vec)
	}

	v, _, err = c.QueryRange(ctx, `shard_split_total`, promv1.Range{Start: at(2), End: at(5), Step: 15 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	m := v.(model.Matrix)
	if len(m) != 1 || len(m[0].Values) != 4 {
		t.Fatalf("query_range: %v", m)
	}
	for k, p := range m[0].Values {
		if p.Value != model.SampleValue(k+2) || !p.Timestamp.Time().Equal(at(k+2)) {
			t.Errorf("query_range point %d: %v", k, p)
		}
	}

	v, _, err = c.Query(ctx, `request_duration_seconds`, at(20))
	if err != nil {
		t.Fatal(err)
	}
	if h := v.(model.Vector)[0].Histogram; h == nil || h.Count != 84 || h.Sum != 73.5 || len(h.Buckets) != 3 || h.Buckets[2].Count != 42 || h.Buckets[2].Upper != 2 {
		t.Errorf("native histogram: %v", h)
	}

	series, _, err := c.Series(ctx, []string{"http_requests_total"}, at(0), at(40))
	if err != nil || len(series) != 2 || series[0]["instance"] != "a" || series[1]["instance"] != "b" {
		t.Errorf("series: %v %v", series, err)
	}
	names, _, err := c.LabelNames(ctx, nil, at(0), at(40))
	if err != nil || !slices.Equal(names, model.LabelNames{"__name__", "code", "instance", "job"}) {
		t.Errorf("labels: %v %v", names, err)
	}
	values, _, err := c.LabelValues(ctx, "job", nil, at(0), at(40))
	if err != nil || fmt.Sprint(values) != "[api]" {
		t.Errorf("label values: %v %v", values, err)
	}
	ex, err := c.QueryExemplars(ctx, `http_requests_total`, at(0), at(40))
	if err != nil || len(ex) != 2 || ex[1].Exemplars[0].Labels["trace_id"] != "alpha-trace-b" || ex[1].Exemplars[0].Value != 2.5 {
		t.Errorf("exemplars: %+v %v", ex, err)
	}
	bi, err := c.Buildinfo(ctx)
	if err != nil || bi.Version != "1.2.3" || bi.Revision != "abc123" {
		t.Errorf("buildinfo: %+v %v", bi, err)
	}
	// The client hands back format_query's data still JSON-encoded, as it
	// would from Prometheus.
	f, err := c.FormatQuery(ctx, `sum(up)by(job)`)
	if err != nil || f != `"sum by (job) (up)"` {
		t.Errorf("format_query: %q %v", f, err)
	}

	// Errors decode into the client's error type.
	var apiErr *promv1.Error
	if _, _, err = c.Query(ctx, `sum(`, at(0)); !errors.As(err, &apiErr) || apiErr.Type != promv1.ErrBadData {
		t.Errorf("invalid query: %v", err)
	}
	if _, _, err = newClient("al.pha").Query(ctx, `up`, at(0)); !errors.As(err, &apiErr) || apiErr.Type != promv1.ErrBadData {
		t.Errorf("invalid tenant: %v", err)
	}
	if _, _, err = newClient("").Query(ctx, `up`, at(0)); !errors.As(err, &apiErr) || apiErr.Type != promv1.ErrClient || !strings.Contains(apiErr.Detail, `"unauthorized"`) {
		t.Errorf("no tenant: %#v", err)
	}

	// The other tenant, through the same client code, sees only its own.
	v, _, err = newClient("beta").Query(ctx, `http_requests_total`, at(20))
	if err != nil {
		t.Fatal(err)
	}
	if vec := v.(model.Vector); len(vec) != 1 || vec[0].Value != 1020 || vec[0].Metric["job"] != "beta-secret" {
		t.Errorf("beta query: %v", vec)
	}
}

// TestEngineLimits checks that the engine settings reach the engine, and
// that exceeding them is answered as Prometheus does.
func TestEngineLimits(t *testing.T) {
	src, _ := fixture(t)
	form := url.Values{"query": {`http_requests_total`}, "time": {unix(20)}}

	srv := serve(t, promapi.Options{Source: src, MaxSamples: 1})
	code, body := do(t, srv, "alpha", http.MethodGet, "/api/v1/query", form)
	if r := decode[apiResponse](t, body); code != http.StatusUnprocessableEntity || r.ErrorType != "execution" || !strings.Contains(r.Error, "too many samples") {
		t.Errorf("MaxSamples: %d %s", code, body)
	}

	srv = serve(t, promapi.Options{Source: src, Timeout: time.Nanosecond})
	code, body = do(t, srv, "alpha", http.MethodGet, "/api/v1/query", form)
	if r := decode[apiResponse](t, body); code != http.StatusServiceUnavailable || r.ErrorType != "timeout" {
		t.Errorf("Timeout: %d %s", code, body)
	}

	// With a 1m lookback the last sample (i=40) is gone 2m later; with the
	// default 5m it is still there.
	late := url.Values{"query": {`http_requests_total{instance="a"}`}, "time": {unix(48)}}
	srv = serve(t, promapi.Options{Source: src, LookbackDelta: time.Minute})
	if got := decode[[]vectorSample](t, decode[queryData](t, ok(t, srv, "alpha", http.MethodGet, "/api/v1/query", late)).Result); len(got) != 0 {
		t.Errorf("LookbackDelta 1m: %v", got)
	}
	srv = serve(t, promapi.Options{Source: src})
	if got := decode[[]vectorSample](t, decode[queryData](t, ok(t, srv, "alpha", http.MethodGet, "/api/v1/query", late)).Result); len(got) != 1 || got[0].Value[1] != "400" {
		t.Errorf("default LookbackDelta: %v", got)
	}

	if _, err := promapi.New(promapi.Options{Source: src, TenantFromRequest: promapi.TenantFromHeader(tenantHeader), Timeout: -1}); err == nil {
		t.Error("negative Timeout accepted")
	}
}
