package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weir-metrics/weir/loadtest/report"
)

// buildWeir builds the weir binary of this repository. The harness talks to
// it over HTTP only, as to any other target.
func buildWeir(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "weir")
	cmd := exec.Command("go", "build", "-o", bin, "./services/weir")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building weir: %v\n%s", err, out)
	}
	return bin
}

// TestAgainstWeir runs a short scenario through the command against a
// fresh all-in-one weir it starts itself, as `make loadtest` does, in both
// remote-write versions and line protocol: every acknowledged sample must
// be queryable and weir's own counters must account for every sample.
func TestAgainstWeir(t *testing.T) {
	weir := buildWeir(t)
	for _, proto := range []string{"prw1", "prw2", "influx"} {
		t.Run(proto, func(t *testing.T) {
			out := t.TempDir()
			ok, err := run([]string{
				"-protocol", proto, "-duration", "3s", "-series", "1000", "-batch", "250", "-rate", "10000",
				"-churn", "0.2", "-churn-interval", "1s", "-explode", "0.2",
				"-exec", "weir=" + weir + " all --data-dir {dir} --http.addr {addr:http} --kafka.embedded.addr {addr:kafka} --log.level warn",
				"-url", "http://{addr:http}", "-ready", "http://{addr:http}/-/ready",
				"-settle", "60s", "-out", out,
			})
			if err != nil {
				t.Fatal(err)
			}
			res, err := report.ReadJSON(filepath.Join(out, "result.json"))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Runs) != 1 {
				t.Fatalf("%d runs", len(res.Runs))
			}
			r := res.Runs[0]
			if !ok || !r.OK {
				logs, _ := os.ReadFile(filepath.Join(out, "weir.log"))
				t.Fatalf("run failed: check %+v, counters %+v, failures %v\n%s", r.Check, r.Counters, r.Failures, logs)
			}
			if r.Check == nil || r.Check.SamplesFound != r.SamplesAcked || r.SamplesAcked == 0 {
				t.Fatalf("acknowledged %d, found %+v", r.SamplesAcked, r.Check)
			}
			if r.Counters == nil || !r.Counters.OK || r.Counters.Deltas["weir_edge_samples_written_total"] < float64(r.SamplesAcked) {
				t.Fatalf("weir's counters were not checked or do not add up: %+v", r.Counters)
			}
			if len(r.Processes) != 1 || r.Processes[0].CPUSeconds <= 0 || r.Processes[0].PeakRSSBytes <= 0 {
				t.Fatalf("weir's process was not measured: %+v", r.Processes)
			}
			if r.EndToEnd.Count == 0 {
				t.Fatal("no end-to-end latency measured")
			}
			html, err := os.ReadFile(filepath.Join(out, "report.html"))
			if err != nil || !strings.Contains(string(html), "<svg") {
				t.Fatalf("no HTML report with charts: %v", err)
			}
		})
	}
}

func TestFlagsRefuseNonsense(t *testing.T) {
	for _, args := range [][]string{
		{"-scenario", "nope"},
		{"-protocol", "otlp", "-no-verify", "-url", "http://127.0.0.1:1", "-duration", "1s", "-out", t.TempDir()},
		{"-pid", "weir", "-out", t.TempDir()},
		{"-exec", "no command name", "-out", t.TempDir()},
	} {
		if _, err := run(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
