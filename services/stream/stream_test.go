package stream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"

	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/kafka"
	"github.com/weir-metrics/weir/services/app"
	"github.com/weir-metrics/weir/services/edge"
	"github.com/weir-metrics/weir/services/stream"
)

// cluster is an edge and a stream worker in one process, as `weir all`
// runs them, on an embedded broker: real Kafka protocol, transactions and
// HTTP.
type cluster struct {
	url    string
	cfg    *config.Config
	dir    string
	stream *stream.Stream
	broker *kafka.Broker
}

func startCluster(t *testing.T, pipelines map[string]string) *cluster {
	t.Helper()
	dir := t.TempDir()
	pdir := filepath.Join(dir, "pipelines")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range pipelines {
		writeFile(t, filepath.Join(pdir, name), body)
	}
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Kafka.Embedded.Addr = "127.0.0.1:0"
	cfg.Kafka.Partitions = 4
	cfg.Stream.InstanceID = "s1"
	cfg.Stream.PipelinesDir = pdir
	cfg.Stream.PipelinesReloadInterval = 100 * time.Millisecond
	cfg.Stream.BudgetPublishInterval = 200 * time.Millisecond
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := kafka.StartBroker(&cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Kafka.Embedded.Addr = b.Addr()
	reg := prometheus.NewRegistry()
	proc := app.New(&cfg, log, reg)
	e, err := edge.New(&cfg, log, reg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := stream.New(&cfg, log, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	proc.Add(e)
	proc.Add(s)
	addr, err := proc.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- proc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("process stopped with %v", err)
		}
		b.Close()
	})
	c := &cluster{url: "http://" + addr.String(), cfg: &cfg, dir: pdir, stream: s, broker: b}
	weirtest.Eventually(t, 20*time.Second, func() error {
		_, err := weirtest.Get(c.url+"/-/ready", "")
		return err
	})
	return c
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// request builds a remote-write 1.0 request: one sample at ts for each
// label set.
func request(ts int64, sets ...[]prompb.Label) *prompb.WriteRequest {
	req := &prompb.WriteRequest{}
	for i, ls := range sets {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Value: float64(i), Timestamp: ts}}})
	}
	return req
}

func lbls(kv ...string) []prompb.Label {
	var out []prompb.Label
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, prompb.Label{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

// seriesTopic waits until the tenant's series topic holds at least n
// samples and returns them.
func (c *cluster) seriesTopic(t *testing.T, tenant string, n int) []weirtest.TopicSample {
	t.Helper()
	var got []weirtest.TopicSample
	weirtest.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		got, err = weirtest.ReadTopic(ctx, c.cfg.SeedBrokers(), kafka.Topic("weir", tenant, kafka.KindSeries))
		if err != nil {
			return err
		}
		if len(got) < n {
			return fmt.Errorf("%d samples in the series topic of %s, want %d", len(got), tenant, n)
		}
		return nil
	})
	return got
}

func (c *cluster) metric(t *testing.T, name string, match map[string]string) float64 {
	t.Helper()
	v, err := weirtest.MetricValue(c.url, name, match)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestPipelineStagesAndHotReload writes through the edge and reads the
// series topic: relabel rules and guard rails apply per tenant, dropped
// samples are counted with their reason, and an edited pipeline file
// applies without a restart while a broken one is refused and the last
// good one keeps running.
func TestPipelineStagesAndHotReload(t *testing.T) {
	c := startCluster(t, map[string]string{
		"default.yaml": `
relabel:
  - source_labels: [__name__]
    regex: debug_.*
    action: drop
  - source_labels: [__tenant__]
    target_label: team
guard_rails:
  max_label_count: 3
  keep_labels: [job]
  max_label_value_length: 10
`,
		"team-b.yaml": `
relabel:
  - regex: instance
    action: labeldrop
`,
	})
	now := time.Now().UnixMilli()
	write := func(tenant string, req *prompb.WriteRequest) {
		t.Helper()
		if err := weirtest.MustWrite(weirtest.WriteV1(c.url, tenant, req)); err != nil {
			t.Fatal(err)
		}
	}
	write("team-a", request(now,
		lbls("__name__", "up", "job", "api", "instance", "i-1"),
		lbls("__name__", "debug_thing", "job", "api"),
		lbls("__name__", "wide", "a", "1", "b", "2", "c", "3", "job", "j"),
		lbls("__name__", "long", "path", "/a/very/long/path"),
	))
	write("team-b", request(now, lbls("__name__", "up", "job", "api", "instance", "i-1")))

	a := c.seriesTopic(t, "team-a", 3)
	want := map[string]bool{
		`{__name__="up",instance="i-1",job="api",team="team-a"}`: true,
		`{__name__="wide",a="1",b="2",job="j"}`:                  true, // 3 labels kept: job first, then by name
		`{__name__="long",path="/a/very/lo",team="team-a"}`:      true, // truncated to 10 bytes
	}
	got := weirtest.SeriesOf(a, "")
	if len(got) != len(want) {
		t.Fatalf("team-a series:\n%s", weirtest.DescribeSeries(got, 10))
	}
	for s := range got {
		if !want[s] {
			t.Fatalf("unexpected series %s; got:\n%s", s, weirtest.DescribeSeries(got, 10))
		}
	}
	b := c.seriesTopic(t, "team-b", 1)
	if s := weirtest.SeriesOf(b, ""); len(s) != 1 || s[`{__name__="up",job="api"}`] != 1 {
		t.Fatalf("team-b has its own pipeline (labeldrop, no team label, inherited guard rails):\n%s", weirtest.DescribeSeries(s, 5))
	}
	weirtest.Eventually(t, 10*time.Second, func() error {
		if v := c.metric(t, "weir_stream_samples_discarded_total", map[string]string{"tenant": "team-a", "reason": "relabel_drop"}); v != 1 {
			return fmt.Errorf("relabel_drop discards %v, want 1", v)
		}
		if v := c.metric(t, "weir_stream_samples_modified_total", map[string]string{"tenant": "team-a", "reason": "value_truncated"}); v != 1 {
			return fmt.Errorf("value_truncated %v, want 1", v)
		}
		if v := c.metric(t, "weir_stream_samples_admitted_total", map[string]string{"tenant": "team-a"}); v != 3 {
			return fmt.Errorf("admitted %v, want 3", v)
		}
		return nil
	})

	// Hot reload: team-a gets its own file; a later broken edit is refused.
	writeFile(t, filepath.Join(c.dir, "team-a.yaml"), "relabel:\n  - target_label: stage\n    replacement: two\n")
	weirtest.Eventually(t, 10*time.Second, func() error {
		if c.stream.Pipelines().For("team-a").Sources[0] != "team-a.yaml" {
			return fmt.Errorf("team-a.yaml not loaded yet")
		}
		return nil
	})
	writeFile(t, filepath.Join(c.dir, "team-a.yaml"), "relabel:\n  - target_label: stage\n    replacement: three\n    action: explode\n")
	weirtest.Eventually(t, 10*time.Second, func() error {
		if v := c.metric(t, "weir_stream_pipeline_last_reload_successful", nil); v != 0 {
			return fmt.Errorf("the broken file is not reported yet")
		}
		return nil
	})
	write("team-a", request(now+1000, lbls("__name__", "up", "job", "api", "instance", "i-1")))
	a = c.seriesTopic(t, "team-a", 4)
	if s := weirtest.SeriesOf(a, "up"); s[`{__name__="up",instance="i-1",job="api",stage="two"}`] != 1 {
		t.Fatalf("the last good team-a.yaml does not run:\n%s", weirtest.DescribeSeries(s, 5))
	}
}

// TestCardinalityExplosion: one metric of tenant a gains a user_id label
// with 100,000 values. Its budget holds, the tenant's other metrics keep
// flowing, other tenants are untouched, the sender is answered 429 naming
// the metric, and the explorer names user_id.
func TestCardinalityExplosion(t *testing.T) {
	c := startCluster(t, map[string]string{
		"team-a.yaml": `
budget:
  max_series: 5000
  max_series_per_metric: 1000
`,
	})
	now := time.Now().UnixMilli()
	var baseline [][]prompb.Label
	for _, m := range []string{"cpu_seconds_total", "memory_bytes", "api_requests_total"} {
		for i := 0; i < 50; i++ {
			baseline = append(baseline, lbls("__name__", m, "job", "api", "instance", fmt.Sprintf("host-%d", i)))
		}
	}
	if err := weirtest.MustWrite(weirtest.WriteV1(c.url, "team-a", request(now, baseline...))); err != nil {
		t.Fatal(err)
	}
	c.seriesTopic(t, "team-a", len(baseline))

	// The explosion: 100,000 user_id values in requests of 5,000 series,
	// as a sender's shards would send them.
	const users, perRequest = 100_000, 5_000
	var (
		refused       *weirtest.WriteResult
		accepted      int
		firstAccepted time.Time
		lag           time.Duration
	)
	for start := 0; start < users; start += perRequest {
		var sets [][]prompb.Label
		for u := start; u < start+perRequest; u++ {
			sets = append(sets, lbls("__name__", "api_requests_total", "job", "api", "instance", "host-1", "user_id", fmt.Sprintf("u%06d", u)))
		}
		res, err := weirtest.WriteV1(c.url, "team-a", request(now, sets...))
		if err != nil {
			t.Fatal(err)
		}
		switch res.Status {
		case http.StatusNoContent:
			if accepted == 0 {
				firstAccepted = time.Now()
			}
			accepted++
			if refused == nil {
				// Give the stream a moment to publish what it learnt.
				time.Sleep(300 * time.Millisecond)
			}
		case http.StatusTooManyRequests:
			if refused == nil {
				refused = &res
				lag = time.Since(firstAccepted)
			}
		default:
			t.Fatalf("explosion write answered %d: %s", res.Status, res.Body)
		}
	}
	if refused == nil {
		t.Fatalf("no request of the explosion was answered 429 (%d accepted)", accepted)
	}
	for _, want := range []string{`metric "api_requests_total" of tenant "team-a"`, "1000 active series of a limit of 1000", `the metric that grew most is "api_requests_total"`} {
		if !strings.Contains(refused.Body, want) {
			t.Errorf("429 body lacks %q:\n%s", want, refused.Body)
		}
	}
	if refused.Header.Get("Retry-After") == "" || refused.SamplesWritten != 0 {
		t.Errorf("429 without Retry-After or with samples written: %v %d", refused.Header, refused.SamplesWritten)
	}
	if accepted > 5 {
		t.Errorf("%d explosion requests accepted before the edge learnt the budget was full", accepted)
	}

	// The tenant's other metrics, and the exploding metric's existing
	// series, keep flowing; so does another tenant.
	if err := weirtest.MustWrite(weirtest.WriteV1(c.url, "team-a", request(now+15_000, baseline...))); err != nil {
		t.Fatalf("existing series refused after the explosion: %v", err)
	}
	if err := weirtest.MustWrite(weirtest.WriteV1(c.url, "team-b", request(now, lbls("__name__", "api_requests_total", "user_id", "u1"), lbls("__name__", "api_requests_total", "user_id", "u2")))); err != nil {
		t.Fatalf("another tenant refused: %v", err)
	}
	b := c.seriesTopic(t, "team-b", 2)
	if len(weirtest.SeriesOf(b, "")) != 2 {
		t.Fatal("team-b's series did not pass")
	}
	a := c.seriesTopic(t, "team-a", 2*len(baseline)+1000-50)
	api := weirtest.SeriesOf(a, "api_requests_total")
	if len(api) > 1000+50 {
		t.Fatalf("budget did not hold: %d series of api_requests_total in the series topic, limit 1000 (plus the 50 baseline)", len(api))
	}
	withUser := 0
	for s := range api {
		if strings.Contains(s, "user_id=") {
			withUser++
		}
	}
	if withUser == 0 || withUser > 1000 {
		t.Fatalf("%d exploding series admitted, want between 1 and the limit of 1000", withUser)
	}
	for _, m := range []string{"cpu_seconds_total", "memory_bytes"} {
		s := weirtest.SeriesOf(a, m)
		for k, n := range s {
			if n != 2 {
				t.Fatalf("series %s has %d samples, want both writes", k, n)
			}
		}
		if len(s) != 50 {
			t.Fatalf("%s: %d series, want 50", m, len(s))
		}
	}
	weirtest.Eventually(t, 10*time.Second, func() error {
		if v := c.metric(t, "weir_stream_samples_discarded_total", map[string]string{"tenant": "team-a", "reason": "metric_series_limit"}); v < float64(accepted*perRequest-1000) {
			return fmt.Errorf("metric_series_limit discards %v, want at least %d", v, accepted*perRequest-1000)
		}
		return nil
	})

	// The explorer names the metric and the label.
	body, err := weirtest.Get(c.url+"/api/v1/cardinality/metrics?limit=2", "team-a")
	if err != nil {
		t.Fatal(err)
	}
	var metrics struct {
		Data struct {
			ActiveSeries int `json:"active_series"`
			Limit        int `json:"limit"`
			GrewMost     struct {
				Metric string `json:"metric"`
			} `json:"grew_most"`
			Metrics []struct {
				Metric       string `json:"metric"`
				ActiveSeries int    `json:"active_series"`
				Limit        int    `json:"limit"`
			} `json:"metrics"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &metrics); err != nil {
		t.Fatal(err)
	}
	d := metrics.Data
	if d.ActiveSeries != 100+1000 || d.Limit != 5000 || d.GrewMost.Metric != "api_requests_total" || len(d.Metrics) != 2 || d.Metrics[0].Metric != "api_requests_total" || d.Metrics[0].ActiveSeries != 1000 || d.Metrics[0].Limit != 1000 {
		t.Fatalf("explorer metrics: %s", body)
	}
	body, err = weirtest.Get(c.url+"/api/v1/cardinality/metrics/api_requests_total/labels", "team-a")
	if err != nil {
		t.Fatal(err)
	}
	var labels struct {
		Data struct {
			Labels []struct {
				Label          string `json:"label"`
				DistinctValues int    `json:"distinct_values"`
			} `json:"labels"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &labels); err != nil {
		t.Fatal(err)
	}
	// Refused series count too; the explorer tracks up to
	// stream.label_values_limit values (10000) and says "at least".
	if l := labels.Data.Labels; len(l) != 3 || l[0].Label != "user_id" || l[0].DistinctValues < min(accepted*perRequest, 10000) || l[1].DistinctValues > 50 {
		t.Fatalf("explorer labels (%d explosion requests accepted): %s", accepted, body)
	}
	t.Logf("%d of %d explosion requests passed the edge before it answered 429, %s after the first", accepted, users/perRequest, lag)
	if _, err := weirtest.Get(c.url+"/api/v1/cardinality/metrics/api_requests_total/labels", "team-c"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown tenant's metric: %v", err)
	}
}

// TestTenantBudget429 fills a tenant's whole budget: new series get 429
// naming the tenant's limit and usage, existing series keep getting 204.
func TestTenantBudget429(t *testing.T) {
	c := startCluster(t, map[string]string{"default.yaml": "budget:\n  max_series: 100\n"})
	now := time.Now().UnixMilli()
	var first [][]prompb.Label
	for i := 0; i < 150; i++ {
		first = append(first, lbls("__name__", fmt.Sprintf("m%d", i%3), "i", fmt.Sprint(i)))
	}
	if err := weirtest.MustWrite(weirtest.WriteV1(c.url, "t", request(now, first...))); err != nil {
		t.Fatal(err)
	}
	got := c.seriesTopic(t, "t", 100)
	admitted := weirtest.SeriesOf(got, "")
	if len(admitted) != 100 {
		t.Fatalf("%d series admitted, limit 100", len(admitted))
	}
	var existing [][]prompb.Label
	for _, ls := range first {
		key := weirtest.LabelsKey(map[string]string{"__name__": ls[0].Value, "i": ls[1].Value})
		if admitted[key] > 0 {
			existing = append(existing, ls)
		}
	}
	var res weirtest.WriteResult
	weirtest.Eventually(t, 10*time.Second, func() error {
		var err error
		res, err = weirtest.WriteV1(c.url, "t", request(now+1000, lbls("__name__", "m0", "i", "new")))
		if err != nil {
			return err
		}
		if res.Status != http.StatusTooManyRequests {
			return fmt.Errorf("new series answered %d", res.Status)
		}
		return nil
	})
	if !strings.Contains(res.Body, `series budget of tenant "t" exceeded: 100 active series of a limit of 100`) {
		t.Fatalf("429 body: %s", res.Body)
	}
	if err := weirtest.MustWrite(weirtest.WriteV1(c.url, "t", request(now+2000, existing...))); err != nil {
		t.Fatalf("existing series refused: %v", err)
	}
	// Line protocol goes through the same check.
	lp, err := weirtest.PostRaw(c.url+"/api/v2/write?org=t&bucket=b&precision=ms",
		[]byte(fmt.Sprintf("brand_new,host=h1 value=1 %d\n", now+3000)),
		map[string]string{"X-Scope-OrgID": "t", "Content-Type": "text/plain"})
	if err != nil {
		t.Fatal(err)
	}
	if lp.Status != http.StatusTooManyRequests || !strings.Contains(lp.Body, "100 active series of a limit of 100") {
		t.Fatalf("line protocol with a new series answered %d: %s", lp.Status, lp.Body)
	}
}
