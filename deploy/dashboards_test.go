package deploy_test

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/weir-metrics/weir/pkg/statuspage"
)

// dashboard is the part of Grafana's dashboard model the checks read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Schema     int     `json:"schemaVersion"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasourceRef  `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *datasourceRef `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's panels
}

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob(repoPath("deploy", "grafana", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in deploy/grafana: %v", err)
	}
	out := map[string]dashboard{}
	uids := map[string]string{}
	for _, f := range files {
		var d dashboard
		if err := json.Unmarshal(readFile(t, f), &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if d.UID == "" || d.Title == "" || d.Schema == 0 {
			t.Errorf("%s: uid %q, title %q, schemaVersion %d: Grafana needs all three", f, d.UID, d.Title, d.Schema)
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s and %s share uid %s", f, other, d.UID)
		}
		uids[d.UID] = f
		out[filepath.Base(f)] = d
	}
	return out
}

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// grafanaVariables are replaced by values Grafana could give them, so the
// expressions parse as PromQL.
var grafanaVariables = strings.NewReplacer(
	"$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h",
	"${datasource}", "weir", "$tenant", "team-a", "${tenant}", "team-a",
)

var labelValuesQuery = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

// TestDashboards checks each dashboard's panels: unique ids, positions in
// the 24-column grid, the data source variable, and PromQL that parses and
// reads only metrics and labels weir exposes.
func TestDashboards(t *testing.T) {
	metrics := exposedMetrics(t)
	recorded := recordedNames(loadRules(t))
	for file, d := range loadDashboards(t) {
		t.Run(file, func(t *testing.T) {
			vars := map[string]bool{}
			for _, v := range d.Templating.List {
				vars[v.Name] = true
				if v.Type != "query" {
					continue
				}
				var q struct {
					Query string `json:"query"`
				}
				if err := json.Unmarshal(v.Query, &q); err != nil {
					t.Errorf("variable %s: %v", v.Name, err)
					continue
				}
				m := labelValuesQuery.FindStringSubmatch(q.Query)
				if m == nil {
					t.Errorf("variable %s: query %q is not label_values(metric, label)", v.Name, q.Query)
					continue
				}
				checkExpr(t, "variable "+v.Name, m[1], metrics, recorded)
				if name := m[1]; metrics[name] != nil && !metrics[name][m[2]] {
					t.Errorf("variable %s: %s has no label %s", v.Name, name, m[2])
				}
			}
			if !vars["datasource"] {
				t.Error("no datasource variable: the dashboard only works with one data source name")
			}
			ids := map[int]bool{}
			exprs := 0
			for _, p := range allPanels(d.Panels) {
				where := file + ": panel " + p.Title
				if ids[p.ID] {
					t.Errorf("%s: id %d used twice", where, p.ID)
				}
				ids[p.ID] = true
				if p.GridPos.W < 1 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H < 1 {
					t.Errorf("%s: gridPos %+v outside the 24-column grid", where, p.GridPos)
				}
				if p.Type == "row" {
					continue
				}
				if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
					t.Errorf("%s: data source %+v, want the ${datasource} variable", where, p.Datasource)
				}
				if len(p.Targets) == 0 {
					t.Errorf("%s has no query", where)
				}
				for _, tg := range p.Targets {
					checkExpr(t, where+" "+tg.RefID, grafanaVariables.Replace(tg.Expr), metrics, recorded)
					exprs++
				}
			}
			if exprs == 0 {
				t.Error("no queries")
			}
		})
	}
}

// TestDashboardsCoverTheIssue checks the views the issue asks for exist:
// ingest by tenant and protocol, refusals by reason, Kafka lag per stage,
// budget usage per tenant, end-to-end latency.
func TestDashboardsCoverTheIssue(t *testing.T) {
	type view struct{ metric, by string }
	have := map[view]bool{}
	for _, d := range loadDashboards(t) {
		for _, p := range allPanels(d.Panels) {
			for _, tg := range p.Targets {
				e, err := promqlParser.ParseExpr(grafanaVariables.Replace(tg.Expr))
				if err != nil {
					continue // reported by TestDashboards
				}
				parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
					if agg, ok := n.(*parser.AggregateExpr); ok {
						for _, m := range metricNames(agg.Expr) {
							have[view{m, strings.Join(agg.Grouping, ",")}] = true
						}
					}
					return nil
				})
			}
		}
	}
	for _, v := range []view{
		{"weir_edge_samples_written_total", "tenant,source"},
		{"weir_edge_samples_refused_total", "tenant,reason"},
		{"weir_kafka_consumer_lag_records", "stage"},
		{"weir_kafka_consumer_lag_records", "stage,tenant"},
		{"weir_sink_head_series", "tenant"},
		{"weir_stream_active_series", "tenant"},
		{"weir_stream_series_limit", "tenant"},
		{"weir_sink_end_to_end_latency_seconds_bucket", "le"},
	} {
		if !have[v] {
			t.Errorf("no panel shows %s by (%s)", v.metric, v.by)
		}
	}
}

// TestStatusPageReadsWhatWeirExposes checks the status page's metrics
// against a running weir, so a renamed metric cannot silently blank a
// column of the page.
func TestStatusPageReadsWhatWeirExposes(t *testing.T) {
	metrics := exposedMetrics(t)
	for _, name := range statuspage.MetricNames {
		if metrics[name] == nil {
			t.Errorf("the status page reads %s, which weir does not expose", name)
		}
	}
}
