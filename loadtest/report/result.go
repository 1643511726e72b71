// Package report holds the result of a load-test run, writes it as JSON,
// prints its summary and renders a self-contained HTML report whose charts
// (inline SVG) are drawn from the result's own data.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/weir-metrics/weir/loadtest/check"
)

// Result is one invocation of the harness: one scenario against one or
// more targets.
type Result struct {
	Version  string    `json:"version"`
	Started  time.Time `json:"started"`
	Host     Host      `json:"host"`
	Scenario Scenario  `json:"scenario"`
	Runs     []*Run    `json:"runs"`
}

// Host describes the machine the runs were on.
type Host struct {
	Hostname string `json:"hostname"`
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	GoOS     string `json:"goos"`
}

// Scenario is the load every target of the result received.
type Scenario struct {
	Name            string  `json:"name"`
	Protocol        string  `json:"protocol"`
	Series          int     `json:"series"`
	BatchSize       int     `json:"batch_size"`
	Rate            float64 `json:"rate"` // samples/s, 0 = as fast as possible
	DurationSeconds float64 `json:"duration_seconds"`
	Concurrency     int     `json:"concurrency"`
	ChurnFraction   float64 `json:"churn_fraction"`
	ChurnSeconds    float64 `json:"churn_interval_seconds"`
	ExplodeFraction float64 `json:"explode_fraction"`
	Seed            uint64  `json:"seed"`
}

// Run is the outcome of the scenario against one target.
type Run struct {
	Target string `json:"target"`
	URL    string `json:"url"`
	RunID  string `json:"run_id"`
	// OK is false when the loss check or the counter check failed, or
	// the run could not complete.
	OK       bool     `json:"ok"`
	Failures []string `json:"failures,omitempty"`

	// LoadStarted is when the sustained load began (after the preflight):
	// the zero of the timeline's T.
	LoadStarted time.Time `json:"load_started"`
	Seconds     float64   `json:"seconds"` // of sustained load
	// Requests and samples sent; samples acknowledged (2xx), refused
	// (4xx, never retried) and of unknown outcome (timeouts, 5xx, 429).
	Requests       uint64            `json:"requests"`
	SamplesSent    uint64            `json:"samples_sent"`
	SamplesAcked   uint64            `json:"samples_acked"`
	SamplesRefused uint64            `json:"samples_refused"`
	SamplesUnknown uint64            `json:"samples_unknown"`
	Errors         map[string]uint64 `json:"errors_by_status,omitempty"`
	SeriesWritten  int               `json:"series_written"`

	// AcceptedPerSecond is acknowledged samples over the load's duration;
	// MedianPerSecond the median of the per-interval rates.
	AcceptedPerSecond float64     `json:"accepted_samples_per_second"`
	MedianPerSecond   float64     `json:"median_samples_per_second"`
	WriteLatency      Percentiles `json:"write_latency_ms"`
	EndToEnd          Percentiles `json:"end_to_end_latency_ms"`
	MarkersTimedOut   int         `json:"markers_timed_out"`
	// CatchUpSeconds is how long after the load the last marker took to
	// become queryable.
	CatchUpSeconds float64 `json:"catch_up_seconds"`
	// CaughtUp is false when the final marker never became queryable
	// within the settle time; CatchUpSeconds and EndToEndPerSecond are
	// then unknown (0).
	CaughtUp bool `json:"caught_up"`
	// EndToEndPerSecond is acknowledged samples over the time until all of
	// them were queryable (load plus catch-up): the rate a pipeline
	// sustains end to end, which ingestion alone may outrun for a while.
	EndToEndPerSecond float64 `json:"end_to_end_samples_per_second"`

	Generator Generator `json:"generator"`
	Processes []Process `json:"processes,omitempty"`
	// OtherCPUCores is the average CPU, in cores, that processes other
	// than the harness and the measured target used on the host during
	// the load: how quiet the machine was.
	OtherCPUCores float64 `json:"other_cpu_cores"`

	Check    *check.Result       `json:"loss_check,omitempty"`
	Counters *check.CounterCheck `json:"counter_check,omitempty"`
	Timeline []Point             `json:"timeline"`
}

// Percentiles of a latency distribution in milliseconds.
type Percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

// Generator is what the harness itself spent.
type Generator struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUMicrosPerSample is the harness' CPU time per sample sent,
	// encoding, compression, HTTP and bookkeeping included.
	CPUMicrosPerSample float64 `json:"cpu_us_per_sample"`
	// MaxSamplesPerCore is what one core of the harness could send at that
	// cost: the rate beyond which the harness would be the bottleneck.
	MaxSamplesPerCore float64 `json:"max_samples_per_core"`
}

// Process is a local target process measured through /proc.
type Process struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	// CPUSeconds from the start of the load until the target caught up.
	CPUSeconds float64 `json:"cpu_seconds"`
	// SamplesPerCPUSecond is acknowledged samples over CPUSeconds.
	SamplesPerCPUSecond float64 `json:"samples_per_cpu_second"`
	PeakRSSBytes        int64   `json:"peak_rss_bytes"`
	// PeakRSSPerSeries is PeakRSSBytes over the series written.
	PeakRSSPerSeries float64 `json:"peak_rss_bytes_per_series"`
}

// Point is one sampling interval of a run.
type Point struct {
	T             float64            `json:"t"` // seconds since the load started
	AcceptedRate  float64            `json:"accepted_per_second"`
	RequestRate   float64            `json:"requests_per_second"`
	Errors        uint64             `json:"errors"`
	WriteP50      float64            `json:"write_p50_ms"`
	WriteP99      float64            `json:"write_p99_ms"`
	EndToEndMax   float64            `json:"e2e_max_ms"` // of markers seen in the interval, -1 if none
	GeneratorCPU  float64            `json:"generator_cpu_cores"`
	OtherCPU      float64            `json:"other_cpu_cores"`
	ProcessCPU    map[string]float64 `json:"process_cpu_cores,omitempty"`
	ProcessRSSMiB map[string]float64 `json:"process_rss_mib,omitempty"`
}

// ComputePercentiles summarises latencies in milliseconds.
func ComputePercentiles(ms []float64) Percentiles {
	if len(ms) == 0 {
		return Percentiles{}
	}
	s := append([]float64(nil), ms...)
	sort.Float64s(s)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return Percentiles{Count: len(s), P50: q(0.5), P90: q(0.9), P99: q(0.99), P999: q(0.999), Max: s[len(s)-1]}
}

// WriteJSON writes r to path.
func (r *Result) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadJSON reads a result written by WriteJSON.
func ReadJSON(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s is not a weir-loadtest result: %w", path, err)
	}
	return &r, nil
}

// PrintSummary writes the human summary of every run, side by side.
func (r *Result) PrintSummary(w io.Writer) {
	sc := r.Scenario
	rate := "as fast as possible"
	if sc.Rate > 0 {
		rate = fmt.Sprintf("%s samples/s", si(sc.Rate))
	}
	fmt.Fprintf(w, "scenario %s: %s, %d series, %d per request, %s, %gs, %d senders, churn %g/%gs, explode %g, seed %d\n",
		sc.Name, sc.Protocol, sc.Series, sc.BatchSize, rate, sc.DurationSeconds, sc.Concurrency, sc.ChurnFraction, sc.ChurnSeconds, sc.ExplodeFraction, sc.Seed)
	fmt.Fprintf(w, "host %s: %d CPUs, %s\n\n", r.Host.Hostname, r.Host.CPUs, r.Host.CPUModel)
	rows := [][]string{{""}}
	for _, run := range r.Runs {
		rows[0] = append(rows[0], run.Target)
	}
	add := func(label string, f func(*Run) string) {
		row := []string{label}
		for _, run := range r.Runs {
			row = append(row, f(run))
		}
		rows = append(rows, row)
	}
	add("verdict", func(x *Run) string {
		if x.OK {
			return "PASS"
		}
		return "FAIL"
	})
	add("accepted samples/s", func(x *Run) string { return si(x.AcceptedPerSecond) })
	add("median samples/s", func(x *Run) string { return si(x.MedianPerSecond) })
	add("end-to-end samples/s", func(x *Run) string {
		if !x.CaughtUp {
			return "never caught up"
		}
		return si(x.EndToEndPerSecond)
	})
	add("samples acked", func(x *Run) string { return fmt.Sprint(x.SamplesAcked) })
	add("refused / unknown", func(x *Run) string { return fmt.Sprintf("%d / %d", x.SamplesRefused, x.SamplesUnknown) })
	add("errors", func(x *Run) string { return errorsString(x.Errors) })
	add("write p50 / p99 ms", func(x *Run) string { return fmt.Sprintf("%.1f / %.1f", x.WriteLatency.P50, x.WriteLatency.P99) })
	add("end-to-end p50 / p99 ms", func(x *Run) string {
		if x.EndToEnd.Count == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f / %.0f", x.EndToEnd.P50, x.EndToEnd.P99)
	})
	add("catch-up after load s", func(x *Run) string {
		if !x.CaughtUp {
			return "-"
		}
		return fmt.Sprintf("%.1f", x.CatchUpSeconds)
	})
	add("series written", func(x *Run) string { return fmt.Sprint(x.SeriesWritten) })
	add("generator µs CPU/sample", func(x *Run) string { return fmt.Sprintf("%.3f", x.Generator.CPUMicrosPerSample) })
	add("other processes' CPU", func(x *Run) string { return fmt.Sprintf("%.2f cores", x.OtherCPUCores) })
	names := map[string]bool{}
	var order []string
	for _, run := range r.Runs {
		for _, p := range run.Processes {
			if !names[p.Name] {
				names[p.Name] = true
				order = append(order, p.Name)
			}
		}
	}
	for _, n := range order {
		proc := func(x *Run) *Process {
			for i := range x.Processes {
				if x.Processes[i].Name == n {
					return &x.Processes[i]
				}
			}
			return nil
		}
		add(n+" CPU s", func(x *Run) string {
			if p := proc(x); p != nil {
				return fmt.Sprintf("%.1f", p.CPUSeconds)
			}
			return "-"
		})
		add(n+" samples/CPU-s", func(x *Run) string {
			if p := proc(x); p != nil {
				return si(p.SamplesPerCPUSecond)
			}
			return "-"
		})
		add(n+" peak RSS", func(x *Run) string {
			if p := proc(x); p != nil {
				return fmt.Sprintf("%.0f MiB (%.0f B/series)", float64(p.PeakRSSBytes)/(1<<20), p.PeakRSSPerSeries)
			}
			return "-"
		})
	}
	add("loss check", func(x *Run) string {
		if x.Check == nil {
			return "not run"
		}
		if x.Check.OK {
			return fmt.Sprintf("PASS (%d series)", x.Check.SeriesFound)
		}
		return fmt.Sprintf("FAIL (%d missing, %d dup)", x.Check.Missing, x.Check.Duplicated)
	})
	add("counter check", func(x *Run) string {
		if x.Counters == nil {
			return "n/a"
		}
		if x.Counters.OK {
			return "PASS"
		}
		return "FAIL"
	})
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	for _, row := range rows {
		for i, c := range row {
			pad := strings.Repeat(" ", widths[i]-len([]rune(c)))
			if i == 0 {
				fmt.Fprint(w, c+pad)
			} else {
				fmt.Fprint(w, "  "+pad+c)
			}
		}
		fmt.Fprintln(w)
	}
	for _, run := range r.Runs {
		if run.Check != nil {
			fmt.Fprintf(w, "\n%s loss check: %s\n", run.Target, run.Check.Summary())
			for _, ex := range run.Check.Examples {
				fmt.Fprintf(w, "  - %s\n", ex)
			}
		}
		if run.Counters != nil {
			for _, p := range run.Counters.Problems {
				fmt.Fprintf(w, "%s counter check: %s\n", run.Target, p)
			}
		}
		for _, f := range run.Failures {
			fmt.Fprintf(w, "%s: %s\n", run.Target, f)
		}
	}
}

func errorsString(m map[string]uint64) string {
	if len(m) == 0 {
		return "none"
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// si formats a rate with k/M suffixes.
func si(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}
