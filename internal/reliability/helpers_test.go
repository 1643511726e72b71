package reliability

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weir-metrics/weir/internal/weirtest"
)

// soak is set by `make soak`: scenarios then run minutes instead of
// seconds.
var soak = os.Getenv("WEIR_SOAK") != ""

// length is a scenario's duration: quick under `make test`, long under
// `make soak`.
func length(quick, long time.Duration) time.Duration {
	if soak {
		return long
	}
	return quick
}

// The tenant the harness writes as.
const tenant = "loadtest"

// Rollup windows small enough for a test (as services/weir's rollup tests
// use): 2s and 10s windows, 1s of lateness, idle partitions closing after
// 3s, files uploaded at the latest 2s after their first row.
var (
	rollupResolutions = []time.Duration{2 * time.Second, 10 * time.Second}
	rollupLateness    = time.Second
)

const baseConfig = `
kafka:
  partitions: 4
  produce_timeout: 2s
rollup:
  resolutions: [2s, 10s]
  allowed_lateness: 1s
  idle_timeout: 3s
  commit_interval: 1s
  parquet_max_file_age: 2s
`

// produceTimeout is kafka.produce_timeout of baseConfig: the edge answers
// every write within it.
const produceTimeout = 2 * time.Second

// topology is weir as four processes (broker, edge, stream, sink) of the
// built binary, sharing one bucket directory.
type topology struct {
	dir, config, kafka, bucket string
	broker, edge, stream, sink *weirtest.Process
}

// startTopology starts the four processes with baseConfig plus extra
// YAML; dataDirs overrides a process' data directory (by name).
func startTopology(t *testing.T, extra string, dataDirs map[string]string) *topology {
	t.Helper()
	dir := t.TempDir()
	top := &topology{dir: dir, kafka: weirtest.FreeAddr(t), bucket: filepath.Join(dir, "bucket")}
	top.config = writeFile(t, filepath.Join(dir, "weir.yaml"), baseConfig+"bucket:\n  dir: "+top.bucket+"\n"+extra)
	args := func(name string, more ...string) []string {
		data := filepath.Join(dir, name)
		if d, ok := dataDirs[name]; ok {
			data = d
		}
		return append(append([]string{name}, more...), "--config="+top.config, "--data-dir="+data, "--kafka.embedded.addr="+top.kafka, "--log.level=info")
	}
	top.broker = weirtest.Start(t, "broker", args("broker")...)
	top.broker.WaitReady(30 * time.Second)
	top.edge = weirtest.Start(t, "edge", args("edge")...)
	top.stream = weirtest.Start(t, "stream", args("stream", "--stream.instance-id=s1")...)
	top.sink = weirtest.Start(t, "sink", args("sink", "--sink.instance-id=k1")...)
	for _, p := range []*weirtest.Process{top.edge, top.stream, top.sink} {
		p.WaitReady(30 * time.Second)
	}
	return top
}

// metricsURLs are the /metrics of edge, stream and sink, for the
// harness' counter check.
func (top *topology) metricsURLs() string {
	return top.edge.URL() + "/metrics," + top.stream.URL() + "/metrics," + top.sink.URL() + "/metrics"
}

func (top *topology) processes() []*weirtest.Process {
	return []*weirtest.Process{top.broker, top.edge, top.stream, top.sink}
}

// harness returns the load-test harness' arguments for a steady load of
// rate samples/s over 2000 series (500 a request) for d, writing to
// writeURL and checking through queryURL, plus extra flags.
func harness(writeURL, queryURL string, d time.Duration, rate int, extra ...string) []string {
	return append([]string{
		"-url", writeURL, "-query-url", queryURL,
		"-series", "2000", "-batch", "500", "-concurrency", "4", "-rate", strconv.Itoa(rate),
		"-duration", d.String(), "-settle", "3m", "-tenant", tenant, "-marker-timeout", "20s",
	}, extra...)
}

// requireLossCheck fails unless the harness found every acknowledged
// sample exactly once.
func requireLossCheck(t *testing.T, run *weirtest.LoadRun) {
	t.Helper()
	c := run.Check
	switch {
	case c == nil:
		t.Fatalf("no loss check ran: %v", run.Failures)
	case !c.OK || c.Missing != 0 || c.Duplicated != 0 || c.SamplesFound < c.SamplesAcked:
		t.Fatalf("loss check failed: %s\n%s", run.Summary(), strings.Join(c.Examples, "\n"))
	// More series found than written with a 2xx is fine: series whose
	// only writes timed out at the harness (unknown outcome) may be
	// stored too.
	case c.SamplesAcked == 0 || c.SeriesFound < c.SeriesWritten:
		t.Fatalf("loss check saw nothing to check: %s", run.Summary())
	}
}

// requireRetryAfter fails when an overload answer did not say when to
// come back.
func requireRetryAfter(t *testing.T, run *weirtest.LoadRun) {
	t.Helper()
	for k, n := range run.Errors {
		if strings.HasSuffix(k, "without Retry-After") {
			t.Fatalf("%d answers %s", n, k)
		}
	}
}

// figures are what a scenario measured: logged, and under `make soak`
// appended as one JSON line to $WEIR_SOAK_OUT for docs/reliability.md.
type figures map[string]any

var figuresMu sync.Mutex

func report(t *testing.T, f figures) {
	t.Helper()
	f["test"] = t.Name()
	f["soak"] = soak
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("figures: %s", b)
	out := os.Getenv("WEIR_SOAK_OUT")
	if out == "" {
		return
	}
	figuresMu.Lock()
	defer figuresMu.Unlock()
	fh, err := os.OpenFile(out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// mib renders bytes as MiB for figures.
func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// peakRSS is a process' peak resident set (VmHWM) from /proc.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	return procStatus(t, pid, "VmHWM:")
}

// procStatus reads one size (in kB in the file) of /proc/<pid>/status, in
// bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
