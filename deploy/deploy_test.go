// Package deploy_test checks what deploy/ and docker-compose.yml hand to
// operators: that the compose stack, the Kubernetes manifests, the alert
// rules and the dashboards are valid for the tools that load them and
// consistent with weir itself (its settings, ports and metric names).
package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/config"
)

// repoPath joins parts to the repository's root directory.
func repoPath(parts ...string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(append([]string{filepath.Dir(file), ".."}, parts...)...)
}

// loadWeirConfig loads a weir configuration file the way `weir --config`
// does, with env as the process environment: unknown keys, unknown
// WEIR_* settings and invalid values fail.
func loadWeirConfig(t *testing.T, file string, env map[string]string) config.Config {
	t.Helper()
	for _, k := range config.Keys() {
		t.Setenv(envName(k), "")
		os.Unsetenv(envName(k))
	}
	for k, v := range env {
		if _, ok := settingOfEnv(k); !ok && strings.HasPrefix(k, config.EnvPrefix+"_") {
			t.Errorf("%s: %s is not a weir setting (docs/configuration.md lists them)", file, k)
		}
		t.Setenv(k, v)
	}
	fs := pflag.NewFlagSet("weir", pflag.ContinueOnError)
	config.RegisterFlags(fs)
	if err := fs.Parse([]string{"--config", file}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(fs)
	if err != nil {
		t.Fatalf("%s does not load as weir's configuration: %v", file, err)
	}
	return cfg
}

// envName is the environment variable of a setting: kafka.embedded.addr
// is WEIR_KAFKA_EMBEDDED_ADDR.
func envName(setting string) string {
	return config.EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(setting, ".", "_"))
}

// settingOfEnv is the setting a WEIR_* variable sets.
func settingOfEnv(name string) (string, bool) {
	for _, k := range config.Keys() {
		if envName(k) == name {
			return k, true
		}
	}
	return "", false
}

// promqlParser parses PromQL as the Prometheus these files target does.
var promqlParser = parser.NewParser(parser.Options{})

// metricNames returns the metric names an expression selects.
func metricNames(expr parser.Expr) []string {
	var names []string
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			name := vs.Name
			if name == "" {
				for _, m := range vs.LabelMatchers {
					if m.Name == model.MetricNameLabel {
						name = m.Value
					}
				}
			}
			names = append(names, name)
		}
		return nil
	})
	return names
}

// exposition is what a running weir exposes on /metrics: every sample
// name (histograms give _bucket, _sum and _count) with its label names.
type exposition map[string]map[string]bool

var (
	exposedOnce sync.Once
	exposed     exposition
	exposedErr  error
)

// exposedMetrics runs weir all-in-one once per test binary, drives every
// path that creates a labelled metric — accepted writes, a refused write,
// an out-of-order sample, unreadable records in the raw and series topics,
// a strong-consistency query — and returns what /metrics then exposes.
func exposedMetrics(t *testing.T) exposition {
	t.Helper()
	exposedOnce.Do(func() { exposed, exposedErr = scrapeExercisedWeir(t) })
	if exposedErr != nil {
		t.Fatal(exposedErr)
	}
	return exposed
}

// exercisePipeline gives every tenant a series budget, a budget of its own
// to deploytest_gauge, and a guard rail that drops long label values, so
// the budget gauges and the stream's discard counters appear.
const exercisePipeline = `
guard_rails:
  max_label_value_length: 64
  long_value_action: drop
budget:
  max_series: 1000
  metrics:
    deploytest_gauge: 100
`

func scrapeExercisedWeir(t *testing.T) (exposition, error) {
	dir := t.TempDir()
	pipelines := filepath.Join(dir, "pipelines")
	if err := os.MkdirAll(pipelines, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(pipelines, "default.yaml"), []byte(exercisePipeline), 0o644); err != nil {
		return nil, err
	}
	t.Setenv("WEIR_STREAM_PIPELINES_DIR", pipelines)
	kafkaAddr := weirtest.FreeAddr(t)
	p := weirtest.Start(t, "all", "all", "--data-dir="+dir, "--kafka.embedded.addr="+kafkaAddr)
	p.WaitReady(60 * time.Second)
	const tenant = "deploytest"
	now := time.Now().UnixMilli()
	series := func(v float64, ts int64) *prompb.WriteRequest {
		return &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:    []prompb.Label{{Name: "__name__", Value: "deploytest_gauge"}, {Name: "job", Value: "deploytest"}},
			Samples:   []prompb.Sample{{Value: v, Timestamp: ts}},
			Exemplars: []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "t1"}}, Value: v, Timestamp: ts}},
		}}}
	}
	if err := weirtest.MustWrite(weirtest.WriteV1(p.URL(), tenant, series(1, now))); err != nil {
		return nil, err
	}
	// A series without a metric name: refused with 400, samples counted.
	bad := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels: []prompb.Label{{Name: "job", Value: "deploytest"}}, Samples: []prompb.Sample{{Value: 1, Timestamp: now}},
	}}}
	if res, err := weirtest.WriteV1(p.URL(), tenant, bad); err != nil || res.Status != http.StatusBadRequest {
		return nil, fmt.Errorf("a series without a name was answered %d %s (%v), want 400", res.Status, res.Body, err)
	}
	// Wait until the first sample is stored, then send an older one: the
	// TSDB refuses it as out of order.
	if err := waitFor(30*time.Second, func() error {
		v, err := weirtest.MetricValue(p.URL(), "weir_sink_samples_appended_total", map[string]string{"tenant": tenant})
		if err == nil && v < 1 {
			err = fmt.Errorf("weir_sink_samples_appended_total is %v", v)
		}
		return err
	}); err != nil {
		return nil, err
	}
	if err := weirtest.MustWrite(weirtest.WriteV1(p.URL(), tenant, series(2, now-60_000))); err != nil {
		return nil, err
	}
	// A label value beyond the guard rail: the stream drops the series.
	long := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "deploytest_gauge"}, {Name: "path", Value: strings.Repeat("x", 100)}},
		Samples: []prompb.Sample{{Value: 1, Timestamp: now}},
	}}}
	if err := weirtest.MustWrite(weirtest.WriteV1(p.URL(), tenant, long)); err != nil {
		return nil, err
	}
	// Records weir cannot read, produced straight into its topics.
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, topic := range []string{"weir." + tenant + ".raw", "weir." + tenant + ".series"} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("not a weir record")}).FirstErr(); err != nil {
			return nil, fmt.Errorf("producing to %s: %w", topic, err)
		}
	}
	if _, err := weirtest.GetWithHeaders(p.URL()+"/api/v1/query?query=deploytest_gauge", tenant, map[string]string{"X-Read-Consistency": "strong"}); err != nil {
		return nil, err
	}
	want := []string{
		"weir_sink_samples_discarded_total", "weir_stream_records_discarded_total",
		"weir_sink_records_discarded_total", "weir_edge_samples_refused_total",
		"weir_stream_samples_discarded_total", "weir_stream_series_limit",
		"weir_stream_metric_series_limit",
	}
	var out exposition
	err = waitFor(30*time.Second, func() error {
		out, err = scrape(p.URL())
		if err != nil {
			return err
		}
		for _, name := range want {
			if !out[name]["tenant"] {
				return fmt.Errorf("%s{tenant} not exposed yet", name)
			}
		}
		return nil
	})
	return out, err
}

func scrape(baseURL string) (exposition, error) {
	req, err := http.NewRequest(http.MethodGet, baseURL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	tp := expfmt.NewTextParser(model.UTF8Validation)
	families, err := tp.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing /metrics: %w", err)
	}
	out := exposition{}
	add := func(name string, labels []*dto.LabelPair, extra ...string) {
		if out[name] == nil {
			out[name] = map[string]bool{}
		}
		for _, l := range labels {
			out[name][l.GetName()] = true
		}
		for _, l := range extra {
			out[name][l] = true
		}
	}
	for name, mf := range families {
		for _, m := range mf.GetMetric() {
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				add(name+"_bucket", m.GetLabel(), "le")
				add(name+"_sum", m.GetLabel())
				add(name+"_count", m.GetLabel())
			case dto.MetricType_SUMMARY:
				add(name, m.GetLabel(), "quantile")
				add(name+"_sum", m.GetLabel())
				add(name+"_count", m.GetLabel())
			default:
				add(name, m.GetLabel())
			}
		}
	}
	return out, nil
}

func waitFor(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkExpr parses a PromQL expression and reports every metric it
// selects that weir does not expose (recorded names must be in recorded).
func checkExpr(t *testing.T, where, expr string, metrics exposition, recorded map[string]bool) parser.Expr {
	t.Helper()
	e, err := promqlParser.ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %q does not parse: %v", where, expr, err)
		return nil
	}
	for _, name := range metricNames(e) {
		switch {
		case name == "":
			t.Errorf("%s: %q selects series without a metric name", where, expr)
		case strings.Contains(name, ":"):
			if !recorded[name] {
				t.Errorf("%s: %q uses %s, which no recording rule in deploy/alerts records", where, expr, name)
			}
		case metrics[name] == nil:
			t.Errorf("%s: %q uses %s, which weir does not expose (exposed: %s)", where, expr, name, names(metrics, "weir_"))
		}
	}
	// Grouping labels must exist on the aggregated metric, or the
	// panel or alert silently shows one series.
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		agg, ok := n.(*parser.AggregateExpr)
		if !ok || agg.Without {
			return nil
		}
		for _, name := range metricNames(agg.Expr) {
			if metrics[name] == nil {
				continue
			}
			for _, l := range agg.Grouping {
				if !metrics[name][l] && l != "instance" && l != "job" {
					t.Errorf("%s: %q groups %s by %q, a label it does not have", where, expr, name, l)
				}
			}
		}
		return nil
	})
	return e
}

func names(m exposition, prefix string) string {
	var out []string
	for n := range m {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// readFile returns a file's content or fails the test.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// splitYAMLDocuments splits a multi-document YAML file.
func splitYAMLDocuments(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(b, []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}
