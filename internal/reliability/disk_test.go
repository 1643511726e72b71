package reliability

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weir-metrics/weir/internal/weirtest"
)

// TestDiskFullUnderLoad — scenario: the four-process topology under a
// steady 20k samples/s, with the data directories of the broker and of
// the sink on size-limited tmpfs mounts (mounting needs root or
// CAP_SYS_ADMIN, as in CI). First the sink's disk is filled to the last
// byte, then freed; then the broker's; then broker and sink are killed
// (SIGKILL) and restarted on what the full disks left. Duration: 8 s per
// full disk in about 40 s of load (make soak: 2 min each). Checks: while
// the sink's disk is full, the edge keeps acknowledging (Kafka holds the
// data) and the sink stops appending (below sink.min_free_disk_bytes, 16
// MiB here) or fails to, says why ("disk nearly full" or "no space left
// on device") and retries; while the
// broker's disk is full, writes get 503 with Retry-After (all but the
// few small batches that fit in the unused tail of a file's last page),
// and the broker says why; after space returns and after the
// kills, both start on their data (no corruption) and the loss check
// finds every acknowledged sample exactly once.
func TestDiskFullUnderLoad(t *testing.T) {
	full := length(8*time.Second, 2*time.Minute)
	settle := 5 * time.Second
	dir := t.TempDir()
	size := "96m"
	if soak {
		size = "2g"
	}
	dataDirs := map[string]string{"broker": filepath.Join(dir, "broker-disk"), "sink": filepath.Join(dir, "sink-disk")}
	for _, d := range dataDirs {
		mountTmpfs(t, d, size)
	}
	top := startTopology(t, "sink:\n  min_free_disk_bytes: 16777216\n", dataDirs)
	d := 3*time.Second + 2*(full+settle) + 14*time.Second
	load := weirtest.StartLoad(t, harness(top.edge.URL(), top.sink.URL(), d, 20000, "-metrics-url", "none")...)
	load.WaitLoadStarted(time.Minute)

	time.Sleep(3 * time.Second)
	sinkFull := time.Now()
	sinkFilled := fill(t, dataDirs["sink"])
	time.Sleep(full)
	appendFailures, err := weirtest.MetricValue(top.sink.URL(), "weir_sink_append_failures_total", nil)
	if err != nil {
		t.Fatal(err)
	}
	unfill(t, dataDirs["sink"])
	sinkFreed := time.Now()
	time.Sleep(settle)

	brokerFull := time.Now()
	brokerFilled := fill(t, dataDirs["broker"])
	time.Sleep(full)
	unfill(t, dataDirs["broker"])
	brokerFreed := time.Now()
	time.Sleep(settle)

	// What the full disks left must load.
	brokerLog, sinkLog := top.broker.Logs(), top.sink.Logs()
	for _, p := range []*weirtest.Process{top.broker, top.sink} {
		p.Kill()
		p.Restart()
	}
	top.broker.WaitReady(time.Minute)
	top.sink.WaitReady(time.Minute)

	run := load.Wait(10 * time.Minute)
	requireLossCheck(t, run)
	requireRetryAfter(t, run)
	if appendFailures == 0 || !strings.Contains(sinkLog, "no space left on device") && !strings.Contains(sinkLog, "disk nearly full") {
		t.Fatalf("the sink did not report its full disk (%v append failures):\n%s", appendFailures, sinkLog)
	}
	if !strings.Contains(brokerLog, "no space left on device") {
		t.Fatalf("the broker did not report its full disk:\n%s", brokerLog)
	}
	if n := run.AcceptedBetween(sinkFull.Add(time.Second), sinkFreed); n == 0 {
		t.Fatal("nothing was acknowledged while only the sink's disk was full: Kafka should have taken the writes")
	}
	// A full filesystem still takes a write that fits in the unused tail
	// of a file's last page, so a few small batches may be stored, and
	// then rightly acknowledged (the loss check covers them); everything
	// else must be refused.
	ackedWhileFull := run.AcceptedBetween(brokerFull.Add(time.Second), brokerFreed)
	if offered := 20000 * (brokerFreed.Sub(brokerFull) - time.Second).Seconds(); ackedWhileFull > offered/100 {
		t.Fatalf("%.0f samples acknowledged while the broker's disk was full, more than 1%% of the %.0f offered", ackedWhileFull, offered)
	}
	if run.Errors["503"] == 0 {
		t.Fatalf("no 503 while the broker's disk was full: %v", run.Errors)
	}
	if first := run.FirstAcceptedAfter(brokerFreed); first.IsZero() || first.Sub(brokerFreed) > 20*time.Second {
		t.Fatalf("ingest did not resume within 20s of the broker's disk being freed (first acknowledgement %v)", first)
	}
	report(t, figures{
		"full_seconds": full.Seconds(), "tmpfs": size, "sink_filler": mib(sinkFilled), "broker_filler": mib(brokerFilled),
		"load_seconds": run.Seconds, "samples_acked": run.SamplesAcked, "samples_unknown": run.SamplesUnknown,
		"samples_found": run.Check.SamplesFound, "errors": run.Errors, "sink_append_failures": appendFailures,
		"acked_while_sink_full":     run.AcceptedBetween(sinkFull.Add(time.Second), sinkFreed),
		"acked_while_broker_full":   ackedWhileFull,
		"resumed_after_broker_disk": run.FirstAcceptedAfter(brokerFreed).Sub(brokerFreed).Round(100 * time.Millisecond).String(),
	})
}

// mountTmpfs mounts a tmpfs of the given size (e.g. "64m") on dir for the
// test: a real filesystem that runs full. It needs root or
// CAP_SYS_ADMIN; without, the test fails saying so.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mounting a %s tmpfs on %s for the disk-full test: %v; this test needs root or CAP_SYS_ADMIN (CI runs as root)", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
}

// fill writes a file into dir until the filesystem is full, to the last
// byte, and returns its size.
func fill(t *testing.T, dir string) int64 {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	for _, chunk := range []int{1 << 20, 4 << 10, 1} {
		buf := make([]byte, chunk)
		for {
			w, err := f.Write(buf)
			n += int64(w)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return n
}

func unfill(t *testing.T, dir string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
}
