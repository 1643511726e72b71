package deploy_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/pipeline"
)

// stack is one run of deploy/stack/stack.sh up.
type stack struct {
	t    *testing.T
	env  []string
	dir  string
	addr map[string]string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newStackEnv(t *testing.T) (env []string, dir string, addr map[string]string) {
	dir = t.TempDir()
	addr = map[string]string{}
	for _, k := range []string{"BROKER_KAFKA_ADDR", "BROKER_HTTP_ADDR", "EDGE_HTTP_ADDR", "STREAM_HTTP_ADDR", "SINK_HTTP_ADDR"} {
		addr[k] = weirtest.FreeAddr(t)
	}
	env = append(os.Environ(), "WEIR="+weirtest.Binary(t), "STACK_DIR="+dir, "READY_TIMEOUT=60")
	for k, v := range addr {
		env = append(env, k+"="+v)
	}
	return env, dir, addr
}

func startStack(t *testing.T, env []string, dir string, addr map[string]string) *stack {
	t.Helper()
	s := &stack{t: t, env: env, dir: dir, addr: addr, out: &lockedBuffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command("bash", repoPath("deploy", "stack", "stack.sh"), "up")
	s.cmd.Env = env
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		// Whatever happened, leave no process behind.
		down := exec.Command("bash", repoPath("deploy", "stack", "stack.sh"), "down")
		down.Env = env
		_ = down.Run()
		_ = s.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("stack.sh output:\n%s", s.out.String())
			for _, n := range []string{"broker", "edge", "stream", "sink"} {
				b, _ := os.ReadFile(filepath.Join(dir, "logs", n+".log"))
				t.Logf("--- %s.log:\n%s", n, b)
			}
		}
	})
	err := waitFor(90*time.Second, func() error {
		select {
		case err := <-s.done:
			t.Fatalf("stack.sh up exited early (%v):\n%s", err, s.out.String())
		default:
		}
		if !strings.Contains(s.out.String(), "stack: up") {
			return fmt.Errorf("not up yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v:\n%s", err, s.out.String())
	}
	return s
}

func (s *stack) url(key string) string { return "http://" + s.addr[key] }

// wait waits for stack.sh up to exit and returns its error.
func (s *stack) wait(timeout time.Duration) error {
	select {
	case err := <-s.done:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("stack.sh up still running after %s", timeout)
	}
}

func (s *stack) pids() map[string]int {
	out := map[string]int{}
	for _, n := range []string{"broker", "edge", "stream", "sink"} {
		b, err := os.ReadFile(filepath.Join(s.dir, "pids", n))
		if err != nil {
			continue
		}
		var pid int
		fmt.Sscan(string(b), &pid)
		out[n] = pid
	}
	return out
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// TestStack runs `make stack`'s script: four processes on loopback with
// deploy/compose/weir.yaml, a sample written to the edge and read back
// from the sink, an orderly stop on Ctrl-C, a restart that still has the
// sample, and a stop from `make stack-down`.
func TestStack(t *testing.T) {
	env, dir, addr := newStackEnv(t)
	s := startStack(t, env, dir, addr)

	pids := s.pids()
	if len(pids) != 4 {
		t.Fatalf("pid files: %v", pids)
	}
	for name, pid := range pids {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			t.Fatalf("%s (pid %d): %v", name, pid, err)
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) < 2 || args[1] != name {
			t.Errorf("pid %d runs %v, want weir %s", pid, args, name)
		}
		if !strings.Contains(strings.Join(args, " "), "--config deploy/compose/weir.yaml") {
			t.Errorf("%s does not read the compose stack's configuration: %v", name, args)
		}
	}

	// The configuration file is in effect: topics get its partitions.
	cfg := loadWeirConfig(t, repoPath("deploy", "compose", "weir.yaml"), nil)
	const tenant = "stack-test"
	now := time.Now().UnixMilli()
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "stack_test_gauge"}, {Name: "job", Value: "stack"}},
		Samples: []prompb.Sample{{Value: 42, Timestamp: now}},
	}}}
	if err := weirtest.MustWrite(weirtest.WriteV1(s.url("EDGE_HTTP_ADDR"), tenant, req)); err != nil {
		t.Fatal(err)
	}
	readBack := func(s *stack) {
		t.Helper()
		weirtest.Eventually(t, 30*time.Second, func() error {
			got, err := weirtest.QueryRaw(s.url("SINK_HTTP_ADDR"), tenant, "stack_test_gauge", time.Minute, time.UnixMilli(now+1000))
			if err != nil {
				return err
			}
			if len(got) != 1 || len(got[0].Points) != 1 || got[0].Points[0].V != 42 {
				return fmt.Errorf("query returned %+v", got)
			}
			return nil
		})
	}
	readBack(s)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr["BROKER_KAFKA_ADDR"]))
	if err != nil {
		t.Fatal(err)
	}
	topics, err := kadm.NewClient(cl).ListTopics(context.Background(), "weir."+tenant+".raw")
	cl.Close()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(topics["weir."+tenant+".raw"].Partitions); n != cfg.Kafka.Partitions {
		t.Errorf("weir.%s.raw has %d partitions, deploy/compose/weir.yaml says %d", tenant, n, cfg.Kafka.Partitions)
	}

	// What the stack's Telegraf sends: gzipped line protocol to
	// /api/v2/write with its organization, bucket and tenant header.
	tg := parseTelegraf(t, repoPath("deploy", "compose", "telegraf.conf")).Outputs.InfluxDBv2[0]
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	fmt.Fprintf(zw, "stack_cpu,host=h1 usage_idle=97.5 %d\n", now*1_000_000)
	zw.Close()
	res, err := weirtest.PostRaw(s.url("EDGE_HTTP_ADDR")+"/api/v2/write?org="+tg.Org+"&bucket="+tg.Bucket, gz.Bytes(), map[string]string{
		"Content-Type": "text/plain; charset=utf-8", "Content-Encoding": tg.Encoding, "X-Scope-OrgID": tg.HTTPHeaders["X-Scope-OrgID"],
	})
	if err != nil || res.Status != http.StatusNoContent {
		t.Fatalf("line protocol as Telegraf sends it: %d %s (%v)", res.Status, res.Body, err)
	}
	weirtest.Eventually(t, 30*time.Second, func() error {
		got, err := weirtest.QueryRaw(s.url("SINK_HTTP_ADDR"), tg.HTTPHeaders["X-Scope-OrgID"], `{__name__=~"stack_cpu.*",host="h1"}`, time.Minute, time.UnixMilli(now+1000))
		if err != nil {
			return err
		}
		if len(got) != 1 || len(got[0].Points) != 1 || got[0].Points[0].V != 97.5 {
			return fmt.Errorf("query returned %+v", got)
		}
		return nil
	})
	// The stack's pipelines are in force: the budget of
	// deploy/compose/pipelines/default.yaml.
	set, err := pipeline.LoadDir(repoPath(cfg.Stream.PipelinesDir))
	if err != nil {
		t.Fatal(err)
	}
	if limit, err := weirtest.MetricValue(s.url("STREAM_HTTP_ADDR"), "weir_stream_series_limit", map[string]string{"tenant": tenant}); err != nil || limit != float64(set.For(tenant).Budget.MaxSeries) || limit == 0 {
		t.Errorf("the stream's series budget for %s is %v (%v), deploy/compose/pipelines says %d", tenant, limit, err, set.For(tenant).Budget.MaxSeries)
	}

	// Ctrl-C: the script stops the targets in order, each cleanly.
	if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := s.wait(90 * time.Second); err != nil {
		t.Fatalf("stack.sh up after Ctrl-C: %v\n%s", err, s.out.String())
	}
	out := s.out.String()
	last := -1
	for _, n := range []string{"edge", "stream", "sink", "broker"} {
		i := strings.Index(out, "stopped "+n)
		if i < 0 || i < last {
			t.Errorf("%s was not stopped after the previous target:\n%s", n, out)
		}
		last = i
		logs, err := os.ReadFile(filepath.Join(dir, "logs", n+".log"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(logs), "weir stopped") {
			t.Errorf("%s did not shut down cleanly; its log ends:\n%s", n, tail(string(logs), 10))
		}
	}
	for name, pid := range pids {
		if alive(pid) {
			t.Errorf("%s (pid %d) still runs after Ctrl-C", name, pid)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "sink", "tsdb", tenant)); err != nil {
		t.Errorf("the sink kept no data under the stack's directory: %v", err)
	}

	// Start again on the same directory: the sample is still there. Then
	// stop from outside, as `make stack-down` does.
	s2 := startStack(t, env, dir, addr)
	readBack(s2)
	pids = s2.pids()
	down := exec.Command("bash", repoPath("deploy", "stack", "stack.sh"), "down")
	down.Env = env
	if out, err := down.CombinedOutput(); err != nil {
		t.Fatalf("stack.sh down: %v\n%s", err, out)
	}
	if err := s2.wait(30 * time.Second); err != nil {
		t.Errorf("stack.sh up did not exit cleanly after stack.sh down: %v\n%s", err, s2.out.String())
	}
	for name, pid := range pids {
		if alive(pid) {
			t.Errorf("%s (pid %d) still runs after stack.sh down", name, pid)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "pids", "*")); len(left) > 0 {
		t.Errorf("pid files left behind: %v", left)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
