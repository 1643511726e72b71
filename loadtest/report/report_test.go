package report

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weir-metrics/weir/loadtest/check"
)

func sampleResult() *Result {
	mk := func(name string, rate float64) *Run {
		r := &Run{Target: name, URL: "http://127.0.0.1:1/api/v1/write", OK: true, Seconds: 10, SamplesAcked: uint64(rate * 10),
			AcceptedPerSecond: rate, Check: &check.Result{OK: true, SeriesWritten: 10, SeriesFound: 10},
			Processes: []Process{{Name: name, PID: 42, CPUSeconds: 3, PeakRSSBytes: 100 << 20}}}
		for i := 1; i <= 10; i++ {
			r.Timeline = append(r.Timeline, Point{T: float64(i), AcceptedRate: rate + float64(i), RequestRate: 5, WriteP50: 2, WriteP99: 9,
				EndToEndMax: float64(10 * i), GeneratorCPU: 0.1,
				ProcessCPU: map[string]float64{name: 0.5}, ProcessRSSMiB: map[string]float64{name: 90 + float64(i)}})
		}
		return r
	}
	return &Result{Version: "test", Started: time.Unix(1_795_000_000, 0).UTC(), Host: Host{Hostname: "h", CPUs: 2},
		Scenario: Scenario{Name: "default", Protocol: "prw1", Series: 10, BatchSize: 5}, Runs: []*Run{mk("weir", 1000), mk("vm", 2000)}}
}

// TestHTMLIsSelfContainedAndDrawnFromTheData: the report loads nothing
// from anywhere, and its charts have one point per timeline entry, at the
// heights the data gives.
func TestHTMLIsSelfContainedAndDrawnFromTheData(t *testing.T) {
	r := sampleResult()
	path := filepath.Join(t.TempDir(), "report.html")
	if err := r.WriteHTML(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	if m := regexp.MustCompile(`(?i)(src=|href=|@import|url\(|<script|<link)`).FindString(html); m != "" {
		t.Fatalf("the report references something outside itself: %q", m)
	}
	if n := strings.Count(html, "<svg"); n != 6 {
		t.Fatalf("%d charts, want 6 (throughput, latency, CPU and memory of each run)", n)
	}
	for _, want := range []string{"weir accepted", "vm accepted", "weir end-to-end", "weir: CPU", "vm: Resident memory", "PASS", "Loss check"} {
		if !strings.Contains(html, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// The throughput chart: two polylines of 10 points; the vm line, with
	// twice the rate, is drawn higher (smaller y) at every point.
	chart := string(r.Charts()[0])
	lines := regexp.MustCompile(`points="([^"]+)"`).FindAllStringSubmatch(chart, -1)
	if len(lines) != 2 {
		t.Fatalf("throughput chart has %d lines, want 2", len(lines))
	}
	weir, vm := strings.Fields(lines[0][1]), strings.Fields(lines[1][1])
	if len(weir) != 10 || len(vm) != 10 {
		t.Fatalf("lines have %d and %d points, want 10", len(weir), len(vm))
	}
	for i := range weir {
		if y(weir[i]) <= y(vm[i]) {
			t.Fatalf("point %d: weir at y=%v is not below vm at y=%v", i, y(weir[i]), y(vm[i]))
		}
	}
}

func y(p string) float64 {
	var x, yy float64
	_, _ = fmtSscanf(p, &x, &yy)
	return yy
}

func TestJSONRoundTrip(t *testing.T) {
	r := sampleResult()
	path := filepath.Join(t.TempDir(), "result.json")
	if err := r.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("read back %+v\nwant %+v", got, r)
	}
}

func TestPercentiles(t *testing.T) {
	var ms []float64
	for i := 1000; i >= 1; i-- {
		ms = append(ms, float64(i))
	}
	p := ComputePercentiles(ms)
	if p.Count != 1000 || p.P50 != 500 || p.P90 != 900 || p.P99 != 990 || p.P999 != 999 || p.Max != 1000 {
		t.Fatalf("%+v", p)
	}
	if (ComputePercentiles(nil) != Percentiles{}) {
		t.Fatal("percentiles of nothing are not zero")
	}
}

func fmtSscanf(p string, x, y *float64) (int, error) { return fmt.Sscanf(p, "%f,%f", x, y) }
