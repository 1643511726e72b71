package report

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"os"
	"sort"
	"strings"
)

// Line is one series of a chart.
type Line struct {
	Name string
	X, Y []float64
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"}

// SVGChart draws lines as an inline SVG line chart. Points with a negative
// or NaN y are gaps.
func SVGChart(title, unit string, lines []Line) template.HTML {
	const w, h, left, right, top, bottom = 1000.0, 280.0, 70.0, 260.0, 28.0, 36.0
	xmax, ymax := 0.0, 0.0
	for _, l := range lines {
		for i := range l.X {
			if l.Y[i] >= 0 && !math.IsNaN(l.Y[i]) && !math.IsInf(l.Y[i], 0) {
				xmax = math.Max(xmax, l.X[i])
				ymax = math.Max(ymax, l.Y[i])
			}
		}
	}
	if xmax == 0 {
		xmax = 1
	}
	ystep := niceStep(ymax / 5)
	if ymax == 0 {
		ystep = 1
	}
	ytop := math.Ceil(ymax/ystep) * ystep
	if ytop == 0 {
		ytop = ystep
	}
	xstep := niceStep(xmax / 8)
	px := func(x float64) float64 { return left + x/xmax*(w-left-right) }
	py := func(y float64) float64 { return h - bottom - y/ytop*(h-top-bottom) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s">`, w, h, w, h, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<text x="%.0f" y="18" class="title">%s</text>`, left, template.HTMLEscapeString(title))
	for y := 0.0; y <= ytop+ystep/2; y += ystep {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="grid"/>`, left, py(y), w-right, py(y))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="ytick">%s</text>`, left-6, py(y)+4, tick(y))
	}
	for x := 0.0; x <= xmax+xstep/2; x += xstep {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="xtick">%s</text>`, px(x), h-bottom+16, tick(x))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="xtick">s</text>`, w-right+12, h-bottom+16)
	fmt.Fprintf(&b, `<text x="12" y="%.1f" class="unit" transform="rotate(-90 12 %.1f)">%s</text>`, h/2, h/2, template.HTMLEscapeString(unit))
	for i, l := range lines {
		color := palette[i%len(palette)]
		var seg []string
		flush := func() {
			if len(seg) == 1 {
				var x, y float64
				fmt.Sscanf(seg[0], "%f,%f", &x, &y)
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`, x, y, color)
			} else if len(seg) > 1 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.8" points="%s"/>`, color, strings.Join(seg, " "))
			}
			seg = seg[:0]
		}
		for j := range l.X {
			if l.Y[j] < 0 || math.IsNaN(l.Y[j]) || math.IsInf(l.Y[j], 0) {
				flush()
				continue
			}
			seg = append(seg, fmt.Sprintf("%.1f,%.1f", px(l.X[j]), py(l.Y[j])))
		}
		flush()
		ly := top + 14 + float64(i)*16
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="12" height="3" fill="%s"/>`, w-right+12, ly-4, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="legend">%s</text>`, w-right+30, ly, template.HTMLEscapeString(l.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

func tick(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", math.Round(v/1e4)/100)
	case v >= 1e3:
		return fmt.Sprintf("%gk", math.Round(v/10)/100)
	default:
		return fmt.Sprintf("%g", math.Round(v*100)/100)
	}
}

// Charts returns the charts of a result, drawn from its timelines:
// throughput and latencies of every run together, then CPU and memory of
// each run (its processes, the harness and the rest of the host).
func (r *Result) Charts() []template.HTML {
	var thr, lat []Line
	multi := len(r.Runs) > 1
	name := func(run *Run, what string) string {
		if multi {
			return run.Target + " " + what
		}
		return what
	}
	var perRun []template.HTML
	for _, run := range r.Runs {
		n := len(run.Timeline)
		xs := make([]float64, n)
		acc, p50, p99, e2e, gcpu, ocpu := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
		procs := map[string]bool{}
		for i, p := range run.Timeline {
			xs[i] = p.T
			acc[i] = p.AcceptedRate
			p50[i], p99[i] = p.WriteP50, p.WriteP99
			if p.RequestRate == 0 {
				p50[i], p99[i] = -1, -1
			}
			e2e[i] = p.EndToEndMax
			gcpu[i] = p.GeneratorCPU
			ocpu[i] = p.OtherCPU
			for k := range p.ProcessCPU {
				procs[k] = true
			}
		}
		thr = append(thr, Line{name(run, "accepted"), xs, acc})
		if !multi {
			lat = append(lat, Line{"write p50", xs, p50})
		}
		lat = append(lat, Line{name(run, "write p99"), xs, p99}, Line{name(run, "end-to-end"), xs, e2e})
		var pnames []string
		for k := range procs {
			pnames = append(pnames, k)
		}
		sort.Strings(pnames)
		var cpu, rss []Line
		for _, k := range pnames {
			c, m := make([]float64, n), make([]float64, n)
			for i, p := range run.Timeline {
				c[i], m[i] = -1, -1
				if v, ok := p.ProcessCPU[k]; ok {
					c[i] = v
				}
				if v, ok := p.ProcessRSSMiB[k]; ok {
					m[i] = v
				}
			}
			cpu = append(cpu, Line{k, xs, c})
			rss = append(rss, Line{k, xs, m})
		}
		cpu = append(cpu, Line{"load generator", xs, gcpu}, Line{"other processes", xs, ocpu})
		prefix := ""
		if multi {
			prefix = run.Target + ": "
		}
		perRun = append(perRun, SVGChart(prefix+"CPU", "cores", cpu))
		if len(rss) > 0 {
			perRun = append(perRun, SVGChart(prefix+"Resident memory", "MiB", rss))
		}
	}
	return append([]template.HTML{
		SVGChart("Accepted samples per second", "samples/s", thr),
		SVGChart("Write latency (per interval) and end-to-end latency (markers)", "ms", lat),
	}, perRun...)
}

// WriteHTML renders the self-contained report: no script, no stylesheet
// and no image is loaded from anywhere.
func (r *Result) WriteHTML(path string) error {
	var summary bytes.Buffer
	r.PrintSummary(&summary)
	data := struct {
		R       *Result
		Summary string
		Charts  []template.HTML
	}{r, summary.String(), r.Charts()}
	var out bytes.Buffer
	if err := htmlTemplate.Execute(&out, data); err != nil {
		return err
	}
	return os.WriteFile(path, out.Bytes(), 0o644)
}

var htmlTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"mib": func(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) },
	"si":  si,
	"f1":  func(v float64) string { return fmt.Sprintf("%.1f", v) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>weir-loadtest: {{.R.Scenario.Name}}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
pre{background:#f6f6f6;padding:12px;overflow-x:auto;font-size:12.5px}
table{border-collapse:collapse;margin:8px 0 18px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f0f0f0}td:first-child{text-align:left}
.pass{color:#197a19;font-weight:600}.fail{color:#b00;font-weight:600}
svg{display:block;margin:10px 0 22px;max-width:100%;height:auto}
svg .title{font-weight:600;font-size:14px}svg .grid{stroke:#e4e4e4}svg .ytick{font-size:11px;text-anchor:end;fill:#555}
svg .xtick{font-size:11px;text-anchor:middle;fill:#555}svg .legend{font-size:12px}svg .unit{font-size:11px;text-anchor:middle;fill:#555}
</style></head><body>
<h1>weir-loadtest — {{.R.Scenario.Name}}</h1>
<p>Started {{.R.Started.Format "2006-01-02 15:04:05 MST"}} on {{.R.Host.Hostname}} ({{.R.Host.CPUs}} CPUs, {{.R.Host.CPUModel}}), harness {{.R.Version}}.</p>
<h2>Summary</h2>
<pre>{{.Summary}}</pre>
<h2>Charts</h2>
{{range .Charts}}{{.}}{{end}}
{{range .R.Runs}}
<h2>{{.Target}} <span class="{{if .OK}}pass">PASS{{else}}fail">FAIL{{end}}</span></h2>
<p>Wrote to <code>{{.URL}}</code> as run <code>{{.RunID}}</code> for {{f1 .Seconds}} s: {{.Requests}} requests, {{.SamplesAcked}} samples acknowledged ({{si .AcceptedPerSecond}}/s), {{.SeriesWritten}} series.</p>
{{with .Check}}<h3>Loss check</h3>
<table><tr><th>series written</th><th>series found</th><th>samples acknowledged</th><th>unknown outcome</th><th>found</th><th>missing</th><th>duplicated</th><th>value sums checked</th><th>value mismatches</th><th>unexpected series</th><th>queries</th></tr>
<tr><td>{{.SeriesWritten}}</td><td>{{.SeriesFound}}</td><td>{{.SamplesAcked}}</td><td>{{.SamplesUnknown}}</td><td>{{.SamplesFound}}</td><td>{{.Missing}}</td><td>{{.Duplicated}}</td><td>{{.ValuesChecked}}</td><td>{{.SeriesValueMismatch}}</td><td>{{.SeriesUnexpected}}</td><td>{{.Queries}}</td></tr></table>
{{if .Examples}}<ul>{{range .Examples}}<li><code>{{.}}</code></li>{{end}}</ul>{{end}}{{end}}
{{with .Counters}}<h3>The target's own counters (change over the run)</h3>
<table><tr><th>counter</th><th>Δ</th></tr>{{range $k, $v := .Deltas}}<tr><td><code>{{$k}}</code></td><td>{{printf "%.0f" $v}}</td></tr>{{end}}</table>
{{range .Problems}}<p class="fail">{{.}}</p>{{end}}{{end}}
{{if .Processes}}<h3>Processes</h3><table><tr><th>process</th><th>PID</th><th>CPU s</th><th>samples per CPU-second</th><th>peak RSS</th><th>bytes per series</th></tr>
{{range .Processes}}<tr><td>{{.Name}}</td><td>{{.PID}}</td><td>{{f1 .CPUSeconds}}</td><td>{{si .SamplesPerCPUSecond}}</td><td>{{mib .PeakRSSBytes}}</td><td>{{printf "%.0f" .PeakRSSPerSeries}}</td></tr>{{end}}</table>{{end}}
{{range .Failures}}<p class="fail">{{.}}</p>{{end}}
{{end}}
<h2>Scenario</h2>
<pre>{{printf "%+v" .R.Scenario}}</pre>
</body></html>
`))
