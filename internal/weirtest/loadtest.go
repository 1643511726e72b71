package weirtest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	loadtestOnce sync.Once
	loadtestPath string
	loadtestErr  error
)

// LoadtestBinary builds the load-test harness (loadtest/cmd/weir-loadtest,
// its own module, which knows weir only over HTTP) once per test binary
// and returns its path.
func LoadtestBinary(t testing.TB) string {
	t.Helper()
	loadtestOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..", "loadtest")
		dir, err := os.MkdirTemp("", "weir-loadtest-bin-")
		if err != nil {
			loadtestErr = err
			return
		}
		loadtestPath = filepath.Join(dir, "weir-loadtest")
		cmd := exec.Command("go", "build", "-o", loadtestPath, "./cmd/weir-loadtest")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			loadtestErr = fmt.Errorf("go build weir-loadtest: %v\n%s", err, out)
		}
	})
	if loadtestErr != nil {
		t.Fatal(loadtestErr)
	}
	return loadtestPath
}

// Load is a run of the harness in the background.
type Load struct {
	t    testing.TB
	Out  string // its -out directory
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
	err  error
}

// StartLoad runs weir-loadtest with args (and -out, which it sets) and
// returns at once. The harness is killed when the test ends; its output is
// printed if the test failed.
func StartLoad(t testing.TB, args ...string) *Load {
	t.Helper()
	l := &Load{t: t, Out: t.TempDir(), logs: &syncBuffer{}, done: make(chan struct{})}
	l.cmd = exec.Command(LoadtestBinary(t), append(args, "-out", l.Out)...)
	l.cmd.Stdout, l.cmd.Stderr = l.logs, l.logs
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { l.err = l.cmd.Wait(); close(l.done) }()
	t.Cleanup(func() {
		select {
		case <-l.done:
		default:
			_ = l.cmd.Process.Kill()
			<-l.done
		}
		if t.Failed() {
			t.Logf("--- output of weir-loadtest %v:\n%s", args, l.logs.String())
		}
	})
	return l
}

// Logs is what the harness printed so far.
func (l *Load) Logs() string { return l.logs.String() }

// WaitLoadStarted waits until the harness' first write was queryable,
// i.e. the timed load is running.
func (l *Load) WaitLoadStarted(timeout time.Duration) {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(l.logs.String(), "first write is queryable") {
			return
		}
		select {
		case <-l.done:
			l.t.Fatalf("weir-loadtest exited before its load started: %v\n%s", l.err, l.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	l.t.Fatalf("weir-loadtest did not start its load within %s:\n%s", timeout, l.logs.String())
}

// Wait waits for the harness to finish and returns its result. A failed
// run (exit status 1) still has a result; the caller asserts on it.
func (l *Load) Wait(timeout time.Duration) *LoadRun {
	l.t.Helper()
	select {
	case <-l.done:
	case <-time.After(timeout):
		_ = l.cmd.Process.Kill()
		l.t.Fatalf("weir-loadtest did not finish within %s:\n%s", timeout, l.logs.String())
	}
	b, err := os.ReadFile(filepath.Join(l.Out, "result.json"))
	if err != nil {
		l.t.Fatalf("weir-loadtest left no result (%v): %v\n%s", l.err, err, l.logs.String())
	}
	var res struct {
		Runs []*LoadRun `json:"runs"`
	}
	if err := json.Unmarshal(b, &res); err != nil || len(res.Runs) != 1 {
		l.t.Fatalf("result.json: %v (%d runs)", err, len(res.Runs))
	}
	return res.Runs[0]
}

// LoadRun is the part of the harness' result.json (loadtest/report.Run)
// that tests assert on.
type LoadRun struct {
	OK             bool              `json:"ok"`
	Failures       []string          `json:"failures"`
	LoadStarted    time.Time         `json:"load_started"`
	Seconds        float64           `json:"seconds"`
	Requests       uint64            `json:"requests"`
	SamplesAcked   uint64            `json:"samples_acked"`
	SamplesRefused uint64            `json:"samples_refused"`
	SamplesUnknown uint64            `json:"samples_unknown"`
	Errors         map[string]uint64 `json:"errors_by_status"`
	SeriesWritten  int               `json:"series_written"`
	WriteLatency   struct {
		P50, P99, Max float64
	} `json:"write_latency_ms"`
	EndToEnd struct {
		P50, P99, Max float64
	} `json:"end_to_end_latency_ms"`
	CatchUpSeconds float64 `json:"catch_up_seconds"`
	Processes      []struct {
		Name         string `json:"name"`
		PeakRSSBytes int64  `json:"peak_rss_bytes"`
	} `json:"processes"`
	Check *struct {
		OK             bool     `json:"ok"`
		SeriesWritten  int      `json:"series_written"`
		SeriesFound    int      `json:"series_found"`
		SamplesAcked   uint64   `json:"samples_acked"`
		SamplesUnknown uint64   `json:"samples_unknown"`
		SamplesFound   uint64   `json:"samples_found"`
		Missing        uint64   `json:"samples_missing"`
		Duplicated     uint64   `json:"samples_duplicated"`
		Examples       []string `json:"examples"`
	} `json:"loss_check"`
	Counters *struct {
		OK       bool               `json:"ok"`
		Deltas   map[string]float64 `json:"deltas"`
		Problems []string           `json:"problems"`
	} `json:"counter_check"`
	Timeline []struct {
		T             float64            `json:"t"`
		AcceptedRate  float64            `json:"accepted_per_second"`
		Errors        uint64             `json:"errors"`
		ProcessRSSMiB map[string]float64 `json:"process_rss_mib"`
	} `json:"timeline"`
}

// PeakRSS is the highest resident set of a measured process (VmHWM).
func (r *LoadRun) PeakRSS(name string) int64 {
	for _, p := range r.Processes {
		if p.Name == name {
			return p.PeakRSSBytes
		}
	}
	return 0
}

// AcceptedBetween sums the samples acknowledged per the timeline from
// from to to (wall clock).
func (r *LoadRun) AcceptedBetween(from, to time.Time) float64 {
	var n float64
	prev := 0.0
	for _, p := range r.Timeline {
		at := r.LoadStarted.Add(time.Duration(p.T * float64(time.Second)))
		if !at.Before(from) && !at.After(to) {
			n += p.AcceptedRate * (p.T - prev)
		}
		prev = p.T
	}
	return n
}

// FirstAcceptedAfter is the first time after t at which the timeline
// shows acknowledged samples; the zero time if none.
func (r *LoadRun) FirstAcceptedAfter(t time.Time) time.Time {
	prev := 0.0
	for _, p := range r.Timeline {
		end := r.LoadStarted.Add(time.Duration(p.T * float64(time.Second)))
		start := r.LoadStarted.Add(time.Duration(prev * float64(time.Second)))
		prev = p.T
		if end.After(t) && p.AcceptedRate > 0 {
			if start.Before(t) {
				return t
			}
			return start
		}
	}
	return time.Time{}
}

// Summary is one line about the run for test logs.
func (r *LoadRun) Summary() string {
	s := fmt.Sprintf("%.0fs of load, %d samples acknowledged, %d of unknown outcome, errors %v, write p99 %.0f ms max %.0f ms",
		r.Seconds, r.SamplesAcked, r.SamplesUnknown, r.Errors, r.WriteLatency.P99, r.WriteLatency.Max)
	if c := r.Check; c != nil {
		s += fmt.Sprintf("; loss check: %d/%d series, %d/%d acknowledged found, %d missing, %d duplicated", c.SeriesFound, c.SeriesWritten, c.SamplesFound, c.SamplesAcked, c.Missing, c.Duplicated)
	}
	if c := r.Counters; c != nil {
		s += fmt.Sprintf("; counter check ok=%v %v", c.OK, c.Problems)
	}
	return s
}
