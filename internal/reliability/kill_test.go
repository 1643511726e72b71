package reliability

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/weir-metrics/weir/internal/weirtest"
)

// TestKillEveryProcessUnderLoad — scenario: the four-process topology
// (broker, edge, stream, sink) under a steady 20k samples/s from the
// harness; every 0.8–2.2 s one of the four, in shuffled turns, gets SIGKILL
// and is restarted after up to half a second. Duration: 25 s of load
// (make soak: 10 min). Checks: the harness' loss check — every sample
// acknowledged is queryable exactly once, values included; each process
// was killed at least twice; nothing a read_committed consumer of the
// series topic read during the kills changed afterwards; and the rollup
// Parquet files equal a clean recomputation from the series topic, window
// for window.
func TestKillEveryProcessUnderLoad(t *testing.T) {
	d := length(25*time.Second, 10*time.Minute)
	top := startTopology(t, "", nil)
	load := weirtest.StartLoad(t, harness(top.edge.URL(), top.sink.URL(), d, 20000, "-metrics-url", "none")...)
	load.WaitLoadStarted(time.Minute)
	watch := weirtest.WatchTopic(t, top.kafka, "weir."+tenant+".series")

	kills := killAtRandom(t, top.processes(), time.Now().Add(d-2*time.Second), 800*time.Millisecond, 2200*time.Millisecond)
	run := load.Wait(10 * time.Minute)
	requireLossCheck(t, run)
	for _, p := range top.processes() {
		if kills[p.Name] < 2 {
			t.Fatalf("%s was killed %d times: %v", p.Name, kills[p.Name], kills)
		}
	}
	for _, d := range watch.Check(t, top.kafka) {
		t.Error(d)
	}
	want := weirtest.RecomputeRollups(t, top.kafka, tenant, rollupResolutions, rollupLateness)
	windows := weirtest.CompareRollups(t, top.bucket, want, 2*time.Minute)
	report(t, figures{
		"load_seconds": run.Seconds, "kills": kills, "samples_acked": run.SamplesAcked, "samples_unknown": run.SamplesUnknown,
		"samples_found": run.Check.SamplesFound, "missing": run.Check.Missing, "duplicated": run.Check.Duplicated,
		"errors": run.Errors, "rollup_windows_compared": windows, "write_p99_ms": run.WriteLatency.P99,
	})
}

// TestKillAllInOneUnderLoad — scenario: `weir all` (embedded broker,
// edge, stream, sink in one process) under a steady 20k samples/s; every
// 2–4 s it gets SIGKILL and is restarted on the same data directory.
// Duration: 25 s of load (make soak: 10 min). Checks: the loss check
// (every acknowledged sample queryable exactly once), at least 4 kills,
// the series topic as read during the kills unchanged, and the rollup
// files equal to a clean recomputation.
func TestKillAllInOneUnderLoad(t *testing.T) {
	d := length(25*time.Second, 10*time.Minute)
	dir := t.TempDir()
	bucket := filepath.Join(dir, "bucket")
	cfg := writeFile(t, filepath.Join(dir, "weir.yaml"), baseConfig+"bucket:\n  dir: "+bucket+"\n")
	kafka := weirtest.FreeAddr(t)
	all := weirtest.Start(t, "all", "all", "--config="+cfg, "--data-dir="+filepath.Join(dir, "data"), "--kafka.embedded.addr="+kafka,
		"--stream.instance-id=s1", "--sink.instance-id=k1")
	all.WaitReady(time.Minute)
	load := weirtest.StartLoad(t, harness(all.URL(), all.URL(), d, 20000, "-metrics-url", "none")...)
	load.WaitLoadStarted(time.Minute)
	watch := weirtest.WatchTopic(t, kafka, "weir."+tenant+".series")

	kills := killAtRandom(t, []*weirtest.Process{all}, time.Now().Add(d-2*time.Second), 2*time.Second, 4*time.Second)
	run := load.Wait(10 * time.Minute)
	requireLossCheck(t, run)
	if kills["all"] < 4 {
		t.Fatalf("weir all was killed %d times", kills["all"])
	}
	for _, d := range watch.Check(t, kafka) {
		t.Error(d)
	}
	want := weirtest.RecomputeRollups(t, kafka, tenant, rollupResolutions, rollupLateness)
	windows := weirtest.CompareRollups(t, bucket, want, 2*time.Minute)
	report(t, figures{
		"load_seconds": run.Seconds, "kills": kills, "samples_acked": run.SamplesAcked, "samples_unknown": run.SamplesUnknown,
		"samples_found": run.Check.SamplesFound, "missing": run.Check.Missing, "duplicated": run.Check.Duplicated,
		"errors": run.Errors, "rollup_windows_compared": windows, "write_p99_ms": run.WriteLatency.P99,
	})
}

// killAtRandom kills one of procs (in shuffled turns, so each gets its
// share) with SIGKILL every min–max until deadline, restarting it after up
// to half a second, and returns the kills by process name.
func killAtRandom(t *testing.T, procs []*weirtest.Process, deadline time.Time, minGap, maxGap time.Duration) map[string]int {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 9))
	kills := map[string]int{}
	var turn []*weirtest.Process
	for time.Now().Before(deadline) {
		time.Sleep(minGap + time.Duration(rng.Int64N(int64(maxGap-minGap))))
		if len(turn) == 0 {
			turn = append(turn, procs...)
			rng.Shuffle(len(turn), func(i, j int) { turn[i], turn[j] = turn[j], turn[i] })
		}
		p := turn[0]
		turn = turn[1:]
		if p.Exited() {
			t.Fatalf("%s exited by itself:\n%s", p.Name, p.Logs())
		}
		p.Kill()
		kills[p.Name]++
		time.Sleep(time.Duration(rng.Int64N(int64(500 * time.Millisecond))))
		p.Restart()
	}
	t.Logf("kills (seed %d): %s", seed, fmt.Sprint(kills))
	return kills
}
