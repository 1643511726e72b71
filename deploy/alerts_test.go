package deploy_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
)

const alertsFile = "deploy/alerts/weir-alerts.yaml"

// loadRules parses the rules file as Prometheus does (unknown fields
// refused, expressions and templates checked).
func loadRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.ParseFile(repoPath(alertsFile), false, model.UTF8Validation, promqlParser, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if groups == nil || len(groups.Groups) == 0 {
		t.Fatalf("%s holds no rule groups", alertsFile)
	}
	return groups
}

// recordedNames are the series the rules file records.
func recordedNames(groups *rulefmt.RuleGroups) map[string]bool {
	out := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				out[r.Record] = true
			}
		}
	}
	return out
}

// TestAlertRulesUseWhatWeirExposes parses every expression and checks
// each metric it reads is one a running weir exposes, with the labels the
// rule groups by.
func TestAlertRulesUseWhatWeirExposes(t *testing.T) {
	groups := loadRules(t)
	metrics := exposedMetrics(t)
	recorded := recordedNames(groups)
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			checkExpr(t, alertsFile+": "+name, r.Expr, metrics, recorded)
		}
	}
}

// githubAnchor is the anchor GitHub gives a Markdown heading.
func githubAnchor(heading string) string {
	s := strings.ToLower(strings.TrimSpace(heading))
	s = regexp.MustCompile(`[^a-z0-9 _-]`).ReplaceAllString(s, "")
	return strings.ReplaceAll(s, " ", "-")
}

// TestAlertsLinkTheirRunbook checks every alert has a severity, a summary,
// a description and a runbook_url to its own entry in docs/runbook.md, and
// that the runbook has no entry for an alert that does not exist.
func TestAlertsLinkTheirRunbook(t *testing.T) {
	groups := loadRules(t)
	runbook := string(readFile(t, repoPath("docs", "runbook.md")))
	entries := map[string]string{} // anchor → heading
	for _, m := range regexp.MustCompile(`(?m)^## (.+)$`).FindAllStringSubmatch(runbook, -1) {
		entries[githubAnchor(m[1])] = m[1]
	}
	alerts := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts[r.Alert] = true
			switch r.Labels["severity"] {
			case "critical", "warning":
			default:
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, r.Labels["severity"])
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s has no %s", r.Alert, a)
				}
			}
			u, err := url.Parse(r.Annotations["runbook_url"])
			if err != nil {
				t.Errorf("%s: runbook_url: %v", r.Alert, err)
				continue
			}
			if !strings.HasSuffix(u.Path, "/docs/runbook.md") {
				t.Errorf("%s: runbook_url %s is not docs/runbook.md", r.Alert, u)
			}
			if heading, ok := entries[u.Fragment]; !ok {
				t.Errorf("%s: runbook_url anchor #%s is no heading of docs/runbook.md", r.Alert, u.Fragment)
			} else if heading != r.Alert {
				t.Errorf("%s links the runbook entry %q", r.Alert, heading)
			}
		}
	}
	for anchor, heading := range entries {
		if !alerts[heading] {
			t.Errorf("docs/runbook.md has an entry %q (#%s) for no alert", heading, anchor)
		}
	}
}

// TestAlertsCoverTheIssue checks the alerts watch what operators need:
// refused and dropped samples, growing lag and the latency SLO's burn
// rate over several windows.
func TestAlertsCoverTheIssue(t *testing.T) {
	groups := loadRules(t)
	uses := map[string][]string{} // metric → alerts reading it (through recordings too)
	recordingUses := map[string][]string{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			e, err := promqlParser.ParseExpr(r.Expr)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range metricNames(e) {
				if r.Record != "" {
					recordingUses[r.Record] = append(recordingUses[r.Record], name)
					continue
				}
				uses[name] = append(uses[name], r.Alert)
				for _, n := range recordingUses[name] {
					uses[n] = append(uses[n], r.Alert)
				}
			}
		}
	}
	for _, m := range []string{
		"weir_edge_samples_refused_total",
		"weir_sink_samples_discarded_total",
		"weir_stream_records_discarded_total",
		"weir_sink_records_discarded_total",
		"weir_kafka_consumer_lag_records",
		"weir_sink_end_to_end_latency_seconds_bucket",
		"weir_stream_samples_discarded_total",
		"weir_stream_active_series",
		"weir_stream_series_limit",
	} {
		if len(uses[m]) == 0 {
			t.Errorf("no alert watches %s", m)
		}
	}
	// Multi-window burn rate: the latency alerts combine a long and a
	// short window at the same threshold.
	windows := map[string]bool{}
	for rec := range recordingUses {
		if i := strings.LastIndex(rec, ":rate"); i >= 0 {
			windows[rec[i+len(":rate"):]] = true
		}
	}
	for _, w := range []string{"5m", "30m", "1h", "6h"} {
		if !windows[w] {
			t.Errorf("no burn-rate recording over %s (have %v)", w, windows)
		}
	}
}

// alertScenario is series loaded into a TSDB (promqltest's load syntax,
// one sample a minute) and the alerts that must be firing — their `for`
// elapsed — after the rules were evaluated each minute from evalFrom to
// the end of the data. Every other alert must not fire.
type alertScenario struct {
	name     string
	load     string
	minutes  int
	evalFrom int
	firing   []string
}

// Healthy traffic every scenario starts from: nothing in it may alert.
const healthyTraffic = `
  weir_edge_samples_received_total{tenant="a",source="prometheus_rw1"} 0+6000x%[1]d
  weir_edge_samples_written_total{tenant="a",source="prometheus_rw1"} 0+6000x%[1]d
  weir_edge_samples_refused_total{tenant="a",reason="invalid_series"} 0+3x%[1]d
  weir_http_requests_total{handler="remote_write",code="204",instance="edge-0"} 0+60x%[1]d
  weir_http_requests_total{handler="remote_write",code="400",instance="edge-0"} 0+1x%[1]d
  weir_kafka_consumer_lag_records{stage="stream",tenant="a",instance="stream-0"} 100+0x%[1]d
  weir_kafka_consumer_lag_records{stage="sink",tenant="a",instance="sink-0"} 20000+0x%[1]d
  weir_sink_samples_discarded_total{tenant="a",reason="out_of_order"} 7+0x%[1]d
  weir_stream_records_discarded_total{tenant="a",reason="invalid_headers"} 2+0x%[1]d
  weir_sink_records_discarded_total{tenant="a",reason="invalid_record"} 1+0x%[1]d
  weir_sink_append_failures_total{instance="sink-0"} 0+0x%[1]d
  weir_stream_samples_discarded_total{tenant="a",reason="relabel_drop"} 0+100x%[1]d
  weir_stream_active_series{tenant="a",instance="stream-0"} 300+0x%[1]d
  weir_stream_active_series{tenant="a",instance="stream-1"} 200+0x%[1]d
  weir_stream_series_limit{tenant="a",instance="stream-0"} 1000+0x%[1]d
  weir_stream_series_limit{tenant="a",instance="stream-1"} 1000+0x%[1]d
  weir_stream_metric_active_series{tenant="a",metric="m",instance="stream-0"} 40+0x%[1]d
  weir_stream_metric_series_limit{tenant="a",metric="m",instance="stream-0"} 100+0x%[1]d
`

// latency is the end-to-end latency histogram of a sink storing 1000
// records a minute, slowPerMinute of them later than 5 s, for minutes.
func latency(slowPerMinute, minutes int) string {
	return latencyPhases([2]int{minutes, slowPerMinute})
}

// latencyPhases is latency over consecutive phases of {minutes,
// slowPerMinute}.
func latencyPhases(phases ...[2]int) string {
	const perMinute = 1000
	var fast, all strings.Builder
	var fastTotal, total, first = 0, 0, true
	for _, ph := range phases {
		n, slow := ph[0], ph[1]
		if first {
			// The first sample is at minute 0, so n increments.
			fmt.Fprintf(&fast, "0+%dx%d ", perMinute-slow, n)
			fmt.Fprintf(&all, "0+%dx%d ", perMinute, n)
			first = false
		} else {
			fmt.Fprintf(&fast, "%d+%dx%d ", fastTotal+perMinute-slow, perMinute-slow, n-1)
			fmt.Fprintf(&all, "%d+%dx%d ", total+perMinute, perMinute, n-1)
		}
		fastTotal += n * (perMinute - slow)
		total += n * perMinute
	}
	return fmt.Sprintf(`
  weir_sink_end_to_end_latency_seconds_bucket{le="1.0"} %[1]s
  weir_sink_end_to_end_latency_seconds_bucket{le="5.0"} %[1]s
  weir_sink_end_to_end_latency_seconds_bucket{le="+Inf"} %[2]s
  weir_sink_end_to_end_latency_seconds_count %[2]s
`, fast.String(), all.String())
}

func TestAlertsFireWhenTheyShould(t *testing.T) {
	scenarios := []alertScenario{
		{name: "healthy", minutes: 180, evalFrom: 60, load: latency(2, 180)},
		{name: "refusals above 1 %", minutes: 60, evalFrom: 10, load: latency(0, 60) + `
  weir_edge_samples_refused_total{tenant="b",reason="body_too_large"} 0+200x60
  weir_edge_samples_received_total{tenant="b",source="influx_v2"} 0+5000x60`,
			firing: []string{"WeirSamplesRefused"}},
		{name: "writes answered 503", minutes: 60, evalFrom: 10, load: latency(0, 60) + `
  weir_http_requests_total{handler="remote_write",code="503",instance="edge-0"} 0+5x60`,
			firing: []string{"WeirWritesFailing"}},
		{name: "samples dropped by the TSDB", minutes: 60, evalFrom: 10, load: latency(0, 60) + `
  weir_sink_samples_discarded_total{tenant="b",reason="too_old"} 0+10x60`,
			firing: []string{"WeirSamplesDropped"}},
		{name: "stream drops over budget", minutes: 60, evalFrom: 10, load: latency(0, 60) + `
  weir_stream_samples_discarded_total{tenant="b",reason="tenant_series_limit"} 0+10x60`,
			firing: []string{"WeirSamplesDropped"}},
		{name: "series budget near its limit", minutes: 60, evalFrom: 10, load: latency(0, 60) + `
  weir_stream_active_series{tenant="b",instance="stream-0"} 480+0x60
  weir_stream_active_series{tenant="b",instance="stream-1"} 470+0x60
  weir_stream_series_limit{tenant="b",instance="stream-0"} 1000+0x60
  weir_stream_series_limit{tenant="b",instance="stream-1"} 1000+0x60`,
			firing: []string{"WeirSeriesBudgetNearLimit"}},
		{name: "metric budget near its limit", minutes: 60, evalFrom: 10, load: latency(0, 60) + `
  weir_stream_metric_active_series{tenant="b",metric="http_requests_total",instance="stream-1"} 95+0x60
  weir_stream_metric_series_limit{tenant="b",metric="http_requests_total",instance="stream-1"} 100+0x60`,
			firing: []string{"WeirMetricSeriesBudgetNearLimit"}},
		{name: "unreadable raw records", minutes: 30, evalFrom: 20, load: latency(0, 30) + `
  weir_stream_records_discarded_total{tenant="b",reason="invalid_headers"} 0x25 1 1 1 1 1`,
			firing: []string{"WeirRecordsDiscarded"}},
		{name: "sink cannot append", minutes: 30, evalFrom: 10, load: latency(0, 30) + `
  weir_sink_append_failures_total{instance="sink-1"} 0+3x30`,
			firing: []string{"WeirSinkAppendFailing"}},
		{name: "sink lag growing", minutes: 90, evalFrom: 30, load: latency(0, 90) + `
  weir_kafka_consumer_lag_records{stage="sink",tenant="b",instance="sink-1"} 0+1000x90`,
			firing: []string{"WeirConsumerLagGrowing"}},
		// 20 % of records late: the fast burn pages, and the slow burn
		// (which it implies) fires too.
		{name: "latency SLO burning fast", minutes: 180, evalFrom: 60, load: latency(200, 180),
			firing: []string{"WeirLatencyBudgetBurnFast", "WeirLatencyBudgetBurnSlow"}},
		// Six quiet hours, then 30 % late for an hour: the one-hour window
		// pages on its own (the six-hour one is still below 6 %), and the
		// slow burn has not yet held for its hour.
		{name: "latency spike", minutes: 420, evalFrom: 300, load: latencyPhases([2]int{360, 2}, [2]int{60, 300}),
			firing: []string{"WeirLatencyBudgetBurnFast"}},
		// 8 % late for seven hours: below the one-hour threshold, above
		// the six-hour one.
		{name: "latency SLO burning for hours", minutes: 420, evalFrom: 300, load: latency(80, 420),
			firing: []string{"WeirLatencyBudgetBurnFast", "WeirLatencyBudgetBurnSlow"}},
		// 4 % late for a day: a ticket, no page.
		{name: "latency SLO burning slowly", minutes: 1560, evalFrom: 1440, load: latency(40, 1560),
			firing: []string{"WeirLatencyBudgetBurnSlow"}},
	}
	groups := loadRules(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			// A load block ends at the first empty line.
			var load []string
			for _, line := range strings.Split(fmt.Sprintf(healthyTraffic, sc.minutes)+sc.load, "\n") {
				if strings.TrimSpace(line) != "" {
					load = append(load, line)
				}
			}
			got := evaluateRules(t, groups, "load 1m\n"+strings.Join(load, "\n"), sc.evalFrom, sc.minutes)
			want := append([]string(nil), sc.firing...)
			sort.Strings(want)
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("firing: %v, want %v", got, want)
			}
		})
	}
}

// evaluateRules loads series into a TSDB, then evaluates every rule group
// in order once a minute with Prometheus' own rule types — recordings are
// stored for later rules, alerts keep their pending/firing state — and
// returns the alerts firing at the end.
func evaluateRules(t *testing.T, groups *rulefmt.RuleGroups, load string, fromMin, toMin int) []string {
	t.Helper()
	st := promqltest.LoadedStorage(t, load)
	t.Cleanup(func() { st.Close() })
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 50_000_000)
	query := rules.EngineQueryFunc(engine, st)
	type rule struct {
		rec   *rules.RecordingRule
		alert *rules.AlertingRule
	}
	var all []rule
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			e, err := promqlParser.ParseExpr(r.Expr)
			if err != nil {
				t.Fatal(err)
			}
			if r.Record != "" {
				all = append(all, rule{rec: rules.NewRecordingRule(r.Record, e, labels.FromMap(r.Labels))})
				continue
			}
			all = append(all, rule{alert: rules.NewAlertingRule(r.Alert, e, time.Duration(r.For), time.Duration(r.KeepFiringFor),
				labels.FromMap(r.Labels), labels.FromMap(r.Annotations), labels.EmptyLabels(), "", false, slog.New(slog.DiscardHandler))})
		}
	}
	ctx := context.Background()
	for m := fromMin; m <= toMin; m++ {
		ts := time.Unix(int64(m)*60, 0).UTC()
		for _, r := range all {
			if r.rec != nil {
				vec, err := r.rec.Eval(ctx, 0, ts, query, nil, 0)
				if err != nil {
					t.Fatalf("%s at %s: %v", r.rec.Name(), ts, err)
				}
				app := st.Appender(ctx)
				for _, s := range vec {
					if _, err := app.Append(0, s.Metric, s.T, s.F); err != nil {
						t.Fatal(err)
					}
				}
				if err := app.Commit(); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if _, err := r.alert.Eval(ctx, 0, ts, query, nil, 0); err != nil {
				t.Fatalf("%s at %s: %v", r.alert.Name(), ts, err)
			}
		}
	}
	var firing []string
	for _, r := range all {
		if r.alert == nil {
			continue
		}
		for _, a := range r.alert.ActiveAlerts() {
			if a.State == rules.StateFiring {
				firing = append(firing, r.alert.Name())
				break
			}
		}
	}
	sort.Strings(firing)
	return firing
}
