package statuspage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ServeHTTP serves the page, or its data with ?format=json. The page
// reloads itself every 15 seconds (?refresh=N to change, 0 to stop).
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := p.Status()
	if r.URL.Query().Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
		return
	}
	refresh := 15
	if v := r.URL.Query().Get("refresh"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			refresh = n
		}
	}
	page, err := render(st, refresh)
	if err != nil {
		p.o.Logger.Error("status page: rendering", "err", err)
		http.Error(w, "rendering the status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// Everything is inline: no request leaves the page.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(page)
}

// render renders the page into memory, so a template error never sends
// half a page.
func render(st Status, refresh int) ([]byte, error) {
	protocols := []string{}
	for s := range st.protocols {
		protocols = append(protocols, s)
	}
	sort.Strings(protocols)
	var buf bytes.Buffer
	err := pageTemplate.Execute(&buf, struct {
		Status
		Refresh   int
		Protocols []string
	}{st, refresh, protocols})
	return buf.Bytes(), err
}

var pageTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"rate": func(v float64) string {
		switch {
		case v == 0:
			return "0"
		case v < 10:
			return strconv.FormatFloat(v, 'f', 2, 64)
		default:
			return humanize(v)
		}
	},
	"count": func(v any) string {
		switch n := v.(type) {
		case int:
			return humanize(float64(n))
		case float64:
			return humanize(n)
		default:
			return fmt.Sprint(v)
		}
	},
	"percent": func(v float64) string {
		return strconv.FormatFloat(100*v, 'f', 1, 64) + " %"
	},
	"width": func(v float64) string {
		return strconv.FormatFloat(math.Min(100, 100*v), 'f', 1, 64) + "%"
	},
	"since": func(t time.Time) string {
		if t.IsZero() {
			return "?"
		}
		return time.Since(t).Round(time.Second).String()
	},
	"join":  strings.Join,
	"level": budgetLevel,
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12]
		}
		return s
	},
}).Parse(pageHTML))

// humanize writes a count with k/M/G suffixes.
func humanize(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e9:
		return strconv.FormatFloat(v/1e9, 'f', 1, 64) + "G"
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 1, 64) + "M"
	case a >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	case a == math.Trunc(a):
		return strconv.FormatFloat(v, 'f', 0, 64)
	default:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
}

func budgetLevel(used float64) string {
	switch {
	case used >= 0.9:
		return "bad"
	case used >= 0.8:
		return "warn"
	default:
		return "ok"
	}
}

const pageHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{{if .Refresh}}<meta http-equiv="refresh" content="{{.Refresh}}">{{end}}
<title>weir status{{if .Targets}} · {{join .Targets ", "}}{{end}}</title>
<style>
:root { --fg:#1d2329; --muted:#5f6b76; --line:#dde3e8; --bg:#f6f8fa; --ok:#2d8a4e; --warn:#b7791f; --bad:#c53030; --accent:#2b6cb0; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); background:var(--bg); }
header { background:#1d2329; color:#fff; padding:14px 24px; display:flex; flex-wrap:wrap; gap:8px 24px; align-items:baseline; }
header h1 { margin:0; font-size:20px; letter-spacing:.5px; }
header span { color:#c5ced6; }
main { padding:16px 24px 40px; max-width:1400px; }
section { background:#fff; border:1px solid var(--line); border-radius:6px; margin:16px 0; padding:12px 16px; }
h2 { font-size:16px; margin:4px 0 10px; }
h3 { font-size:14px; margin:14px 0 6px; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:5px 10px 5px 0; border-bottom:1px solid var(--line); vertical-align:top; }
th { color:var(--muted); font-weight:600; font-size:12px; text-transform:uppercase; letter-spacing:.3px; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
.muted { color:var(--muted); }
.empty { color:var(--muted); font-style:italic; }
.bar { position:relative; height:8px; width:120px; background:var(--line); border-radius:4px; display:inline-block; vertical-align:middle; margin-left:8px; }
.bar i { position:absolute; left:0; top:0; bottom:0; border-radius:4px; }
.ok i { background:var(--ok); } .warn i { background:var(--warn); } .bad i { background:var(--bad); }
.tag { display:inline-block; padding:0 6px; border-radius:3px; font-size:12px; background:var(--line); margin:1px 4px 1px 0; }
.tag.exploding { background:#fed7d7; color:#822727; font-weight:600; }
.problems { border-color:var(--bad); color:var(--bad); }
footer { color:var(--muted); padding:0 24px 24px; }
footer a { color:var(--accent); }
code { font-size:12px; }
</style>
</head>
<body>
<header>
<h1>weir</h1>
<span id="build">{{with .Build}}version <b>{{.Version}}</b> · revision <code>{{short .Revision}}</code> · {{.GoVersion}} · up {{since .Started}}{{end}}</span>
<span id="targets">targets: {{if .Targets}}{{join .Targets ", "}}{{else}}none{{end}}</span>
</header>
<main>
{{if .Problems}}<section class="problems"><h2>Problems</h2><ul>{{range .Problems}}<li>{{.}}</li>{{end}}</ul></section>{{end}}

<section id="tenants">
<h2>Tenants</h2>
{{if .Tenants}}
<table>
<thead><tr><th>tenant</th><th class="num">ingest /s</th>{{range $.Protocols}}<th class="num">{{.}} /s</th>{{end}}<th class="num">refused /s</th><th class="num">dropped /s</th><th class="num">stored /s</th><th class="num">active series</th><th class="num">budget</th><th>usage</th></tr></thead>
<tbody>
{{range .Tenants}}{{$t := .}}<tr data-tenant="{{.Tenant}}">
<td><b>{{.Tenant}}</b></td>
<td class="num">{{if $.RatesKnown}}{{rate .IngestRate}}{{else}}<span class="muted">…</span>{{end}}</td>
{{range $.Protocols}}<td class="num">{{if $.RatesKnown}}{{rate (index $t.IngestBySource .)}}{{else}}<span class="muted">…</span>{{end}}</td>{{end}}
<td class="num">{{if $.RatesKnown}}{{rate .RefusedRate}}{{else}}<span class="muted">…</span>{{end}}</td>
<td class="num">{{if $.RatesKnown}}{{rate .DroppedRate}}{{else}}<span class="muted">…</span>{{end}}</td>
<td class="num">{{if $.RatesKnown}}{{rate .StoredRate}}{{else}}<span class="muted">…</span>{{end}}</td>
<td class="num">{{if .ActiveSeries}}{{count .ActiveSeries}}{{else if .HeadSeries}}{{count .HeadSeries}} <span class="muted">(head)</span>{{else}}<span class="muted">–</span>{{end}}</td>
<td class="num">{{if .SeriesLimit}}{{count .SeriesLimit}}{{else}}<span class="muted">none</span>{{end}}</td>
<td>{{if .SeriesLimit}}{{percent .BudgetUsed}}<span class="bar {{level .BudgetUsed}}"><i style="width:{{width .BudgetUsed}}"></i></span>{{end}}</td>
</tr>
{{end}}</tbody>
</table>
<p class="muted">Rates over the last {{.RateWindow}}{{if not .RatesKnown}} (appear after the first samples){{end}}; totals since start. Ingest: samples acknowledged by Kafka. Refused: answered 4xx/5xx at the edge. Dropped: acknowledged but not stored (pipelines, TSDB).</p>
{{else}}<p class="empty">No tenant has written through this process yet.</p>{{end}}
</section>

<section id="refusals">
<h2>Refusals and drops by reason</h2>
{{if .Refusals}}
<table>
<thead><tr><th>tenant</th><th>stage</th><th>reason</th><th class="num">samples /s</th><th class="num">total</th></tr></thead>
<tbody>
{{range .Refusals}}<tr><td>{{.Tenant}}</td><td>{{.Stage}}</td><td><code>{{.Reason}}</code></td><td class="num">{{if $.RatesKnown}}{{rate .Rate}}{{else}}<span class="muted">…</span>{{end}}</td><td class="num">{{count .Total}}</td></tr>
{{end}}</tbody>
</table>
{{else}}<p class="empty">Nothing refused or dropped.</p>{{end}}
</section>

<section id="explorer">
<h2>Cardinality explorer</h2>
{{with .Explorer}}{{if .Tenants}}
{{range .Tenants}}
<h3 data-tenant="{{.Tenant}}">{{.Tenant}} · {{count .ActiveSeries}} active series{{if .Limit}} of {{count .Limit}}{{end}}{{if .GrewMost}} · grew most: <code>{{.GrewMost}}</code>{{end}}</h3>
<table>
<thead><tr><th>metric</th><th class="num">active series</th><th class="num">budget</th><th class="num">new (5m)</th><th class="num">refused (5m)</th><th>labels by distinct values</th></tr></thead>
<tbody>
{{range .Metrics}}<tr data-metric="{{.Metric}}"><td><code>{{.Metric}}</code></td><td class="num">{{.ActiveSeries}}</td><td class="num">{{if .Limit}}{{.Limit}}{{else}}<span class="muted">–</span>{{end}}</td><td class="num">{{.NewSeries}}</td><td class="num">{{.Refused}}</td>
<td>{{range .Labels}}<span class="tag{{if .Exploding}} exploding{{end}}" data-label="{{.Label}}"{{if .Exploding}} title="about one value per series: this label makes the series count grow"{{end}}>{{.Label}} {{if .AtLeast}}≥{{end}}{{.DistinctValues}}{{if .Exploding}} · exploding{{end}}</span>{{else}}<span class="muted">no label values here (tracked by the worker that owns the partitions, for series seen since it started)</span>{{end}}</td></tr>
{{end}}</tbody>
</table>
{{end}}
{{else}}<p class="empty">No series tracked yet.</p>{{end}}
{{else}}{{if .ExplorerHidden}}<p class="empty">{{.ExplorerHidden}}</p>{{else}}<p class="empty">This process runs no stream worker; the explorer lives on the stream workers' status pages (and <code>/api/v1/cardinality/…</code>).</p>{{end}}{{end}}
</section>

<section id="lag">
<h2>Kafka lag per stage</h2>
{{if .Lag}}
<table>
<thead><tr><th>stage</th><th>tenant</th><th class="num">records behind</th></tr></thead>
<tbody>
{{range .Lag}}<tr><td>{{.Stage}}</td><td>{{.Tenant}}</td><td class="num">{{count .Records}}</td></tr>
{{end}}</tbody>
</table>
{{else}}<p class="empty">This process consumes nothing yet.</p>{{end}}
</section>
</main>
<footer>
Generated {{.Now.UTC.Format "2006-01-02 15:04:05 UTC"}}{{if .Refresh}}, reloads every {{.Refresh}} s{{end}} ·
<a href="metrics">/metrics</a> · <a href="-/ready">/-/ready</a> · <a href="?format=json">JSON</a>
</footer>
</body>
</html>
`
