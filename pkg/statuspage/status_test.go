package statuspage

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type fixture struct {
	reg              *prometheus.Registry
	written, refused *prometheus.CounterVec
	discarded        *prometheus.CounterVec
	active, limit    *prometheus.GaugeVec
	head, lag        *prometheus.GaugeVec
	page             *Page
}

// newFixture registers weir's metric families (names and labels as the
// services register them) on a real registry.
func newFixture(t *testing.T, targets ...string) *fixture {
	t.Helper()
	f := &fixture{reg: prometheus.NewRegistry()}
	f.written = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_edge_samples_written_total"}, []string{"tenant", "source"})
	f.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_edge_samples_refused_total"}, []string{"tenant", "reason"})
	f.discarded = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_stream_samples_discarded_total"}, []string{"tenant", "reason"})
	f.active = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "weir_stream_active_series"}, []string{"tenant"})
	f.limit = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "weir_stream_series_limit"}, []string{"tenant"})
	f.head = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "weir_sink_head_series"}, []string{"tenant"})
	f.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "weir_kafka_consumer_lag_records", ConstLabels: prometheus.Labels{"stage": "sink"}}, []string{"tenant"})
	build := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "weir_build_info", ConstLabels: prometheus.Labels{"version": "1.2.3", "revision": "abcdef0123456789"}}, func() float64 { return 1 })
	f.reg.MustRegister(f.written, f.refused, f.discarded, f.active, f.limit, f.head, f.lag, build)
	f.page = New(Options{Gatherer: f.reg, Targets: func() []string { return targets }, RateWindow: time.Minute, SampleInterval: 5 * time.Second})
	return f
}

// sampleAt records the registry as if sampled ago.
func (f *fixture) sampleAt(t *testing.T, ago time.Duration) {
	t.Helper()
	series, err := f.page.gather()
	if err != nil {
		t.Fatal(err)
	}
	f.page.record(time.Now().Add(-ago), series)
}

func near(a, b float64) bool { return math.Abs(a-b) <= 0.02*math.Abs(b) }

func tenantOf(st Status, id string) *TenantStatus {
	for i := range st.Tenants {
		if st.Tenants[i].Tenant == id {
			return &st.Tenants[i]
		}
	}
	return nil
}

func TestRatesComeFromSampledCounters(t *testing.T) {
	f := newFixture(t, "edge")
	f.written.WithLabelValues("team-a", "prometheus_rw1").Add(1000)
	f.refused.WithLabelValues("team-a", "invalid_series").Add(10)
	if st := f.page.Status(); st.RatesKnown {
		t.Fatal("rates known before any sample was taken")
	}
	f.sampleAt(t, 30*time.Second)
	f.written.WithLabelValues("team-a", "prometheus_rw1").Add(300)
	f.written.WithLabelValues("team-a", "influx_v2").Add(150) // appeared within the window
	f.refused.WithLabelValues("team-a", "invalid_series").Add(60)

	st := f.page.Status()
	if !st.RatesKnown {
		t.Fatal("no rates after a sample 30s ago")
	}
	a := tenantOf(st, "team-a")
	if a == nil {
		t.Fatalf("team-a missing from %+v", st.Tenants)
	}
	if !near(a.IngestRate, 15) || !near(a.IngestBySource["prometheus_rw1"], 10) || !near(a.IngestBySource["influx_v2"], 5) {
		t.Errorf("ingest %v by source %v, want 15/s = 10 rw1 + 5 influx", a.IngestRate, a.IngestBySource)
	}
	if a.Written != 1450 {
		t.Errorf("written total %v, want 1450", a.Written)
	}
	if !near(a.RefusedRate, 2) || a.Refused != 70 {
		t.Errorf("refused %v/s (%v total), want 2/s and 70", a.RefusedRate, a.Refused)
	}
	if len(st.Refusals) != 1 || st.Refusals[0].Reason != "invalid_series" || st.Refusals[0].Stage != "edge" || !near(st.Refusals[0].Rate, 2) {
		t.Errorf("refusals %+v", st.Refusals)
	}
}

// TestRateWindow checks samples older than the window are forgotten, so a
// tenant that stopped writing shows 0/s, not its lifetime average.
func TestRateWindow(t *testing.T) {
	f := newFixture(t, "edge")
	f.sampleAt(t, 10*time.Minute)
	f.written.WithLabelValues("team-a", "prometheus_rw1").Add(6000)
	f.sampleAt(t, 50*time.Second)
	f.sampleAt(t, 20*time.Second)
	if n := len(f.page.samples); n != 2 {
		t.Errorf("%d samples kept, want the 2 within the window", n)
	}
	if a := tenantOf(f.page.Status(), "team-a"); a == nil || a.IngestRate != 0 {
		t.Errorf("a tenant that stopped writing shows %+v", a)
	}
}

func TestCounterReset(t *testing.T) {
	f := newFixture(t, "edge")
	f.written.WithLabelValues("team-a", "prometheus_rw1").Add(5000)
	f.sampleAt(t, 20*time.Second)
	// A restarted process' counter starts again from zero.
	f.reg.Unregister(f.written)
	f.written = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_edge_samples_written_total"}, []string{"tenant", "source"})
	f.reg.MustRegister(f.written)
	f.written.WithLabelValues("team-a", "prometheus_rw1").Add(200)
	if a := tenantOf(f.page.Status(), "team-a"); a == nil || !near(a.IngestRate, 10) {
		t.Errorf("after a reset: %+v, want 10/s", a)
	}
}

func TestBudgetsSeriesAndLag(t *testing.T) {
	f := newFixture(t, "stream", "sink")
	// Two workers' registries would each report their share; one
	// registry holds one value per tenant.
	f.active.WithLabelValues("team-b").Set(900)
	f.limit.WithLabelValues("team-b").Set(1000)
	f.head.WithLabelValues("team-c").Set(42)
	f.lag.WithLabelValues("team-b").Set(1234)
	f.discarded.WithLabelValues("team-b", "tenant_series_limit").Add(7)
	st := f.page.Status()
	b, c := tenantOf(st, "team-b"), tenantOf(st, "team-c")
	if b == nil || b.ActiveSeries != 900 || b.SeriesLimit != 1000 || b.BudgetUsed() != 0.9 {
		t.Errorf("team-b: %+v", b)
	}
	if c == nil || c.HeadSeries != 42 || c.SeriesLimit != 0 {
		t.Errorf("team-c (known only to the sink): %+v", c)
	}
	if len(st.Lag) != 1 || st.Lag[0] != (Lag{Stage: "sink", Tenant: "team-b", Records: 1234}) {
		t.Errorf("lag %+v", st.Lag)
	}
	if len(st.Refusals) != 1 || st.Refusals[0].Stage != "stream" || st.Refusals[0].Total != 7 {
		t.Errorf("drops %+v", st.Refusals)
	}
	if st.Build.Version != "1.2.3" || st.Build.Revision != "abcdef0123456789" {
		t.Errorf("build %+v", st.Build)
	}
	if st.Explorer != nil {
		t.Error("an explorer without an Explorer handler")
	}
}

func TestMarkExploding(t *testing.T) {
	labels := []ExplorerLabel{{Label: "method", DistinctValues: 3}, {Label: "request_id", DistinctValues: 480}, {Label: "path", DistinctValues: 30}}
	markExploding(labels, 500)
	if labels[0].Label != "request_id" || !labels[0].Exploding {
		t.Errorf("request_id (480 values of 500 series) first and exploding: %+v", labels)
	}
	for _, l := range labels[1:] {
		if l.Exploding {
			t.Errorf("%s flagged exploding: %+v", l.Label, labels)
		}
	}
	few := []ExplorerLabel{{Label: "host", DistinctValues: 5}}
	markExploding(few, 5)
	if few[0].Exploding {
		t.Error("a label of a five-series metric flagged: too few values to say")
	}
}

// TestPageIsSelfContained renders the page and checks it loads nothing
// from elsewhere and escapes what tenants send.
func TestPageIsSelfContained(t *testing.T) {
	f := newFixture(t, "edge")
	f.written.WithLabelValues("team-a", "prometheus_rw1").Add(1)
	f.refused.WithLabelValues("team-a", `<script>alert(1)</script>`).Add(1)
	srv := httptest.NewServer(f.page)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/?refresh=0")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(b)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("headers %v", resp.Header)
	}
	for _, re := range []string{`(?i)<script`, `(?i)<link[^>]+stylesheet`, `(?i)(src|href)="(https?:)?//`, `(?i)<img`, `(?i)@import`, `(?i)url\(`} {
		if m := regexp.MustCompile(re).FindString(page); m != "" {
			t.Errorf("the page loads or runs something (%s): %q", re, m)
		}
	}
	if !strings.Contains(page, `data-tenant="team-a"`) || !strings.Contains(page, "&lt;script&gt;") {
		t.Error("the tenant or the escaped reason is missing")
	}
	if strings.Contains(page, `http-equiv="refresh"`) {
		t.Error("refresh=0 still reloads")
	}
	resp, err = http.Get(srv.URL + "/?format=json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"tenant": "team-a"`) {
		t.Errorf("JSON: %s", b)
	}
}

// TestRenderEveryPart renders a status with every section filled (the
// explorer's part comes from a stream worker, which the end-to-end test
// in services/weir runs for real).
func TestRenderEveryPart(t *testing.T) {
	st := Status{
		Build:      Build{Version: "1.2.3", Revision: "abcdef0123456789", GoVersion: "go1.26", Started: time.Now().Add(-time.Hour)},
		Targets:    []string{"edge", "stream"},
		Now:        time.Now(),
		RateWindow: "1m0s",
		RatesKnown: true,
		Tenants: []TenantStatus{{Tenant: "team-a", IngestRate: 12345.678, IngestBySource: map[string]float64{"prw2": 12345.678}, Written: 1e7,
			RefusedRate: 0.5, Refused: 30, ActiveSeries: 950, SeriesLimit: 1000}},
		Refusals: []Refusal{{Tenant: "team-a", Stage: "edge", Reason: "rate_limited", Rate: 0.5, Total: 30}},
		Lag:      []Lag{{Stage: "stream", Tenant: "team-a", Records: 25000}},
		Explorer: &Explorer{Tenants: []ExplorerTenant{{Tenant: "team-a", ActiveSeries: 950, Limit: 1000, GrewMost: "http_requests_total",
			Metrics: []ExplorerMetric{{Metric: "http_requests_total", ActiveSeries: 900, Limit: 1000, NewSeries: 40,
				Labels: []ExplorerLabel{{Label: "request_id", DistinctValues: 880, Exploding: true}, {Label: "method", DistinctValues: 4}}}}}}},
		protocols: map[string]bool{"prw2": true},
	}
	b, err := render(st, 15)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{
		"version <b>1.2.3</b>", "abcdef012345<", "targets: edge, stream",
		`data-tenant="team-a"`, "12.3k", "95.0 %", `class="bar bad"`,
		"rate_limited", "25.0k",
		`data-metric="http_requests_total"`, `data-label="request_id"`, "request_id 880 · exploding", "grew most",
		`http-equiv="refresh" content="15"`, "</html>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}
