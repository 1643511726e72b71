package procstat

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestReadsCPUAndMemoryOfAProcess(t *testing.T) {
	// A real child process that burns CPU and holds memory.
	cmd := exec.Command("/bin/sh", "-c", `x=$(head -c 30000000 /dev/zero | tr '\0' a); i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5`)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	first, err := Read(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	var last Sample
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if last, err = Read(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		if last.CPUSeconds-first.CPUSeconds >= 0.2 && last.PeakRSSBytes >= 30<<20 {
			break
		}
	}
	if last.CPUSeconds-first.CPUSeconds < 0.2 {
		t.Fatalf("CPU went from %.2fs to %.2fs while the child was busy", first.CPUSeconds, last.CPUSeconds)
	}
	if last.PeakRSSBytes < 30<<20 || last.RSSBytes <= 0 || last.PeakRSSBytes < last.RSSBytes {
		t.Fatalf("RSS %d, peak %d; the child held a 30 MB string", last.RSSBytes, last.PeakRSSBytes)
	}
}

func TestSelfCountsOwnCPU(t *testing.T) {
	// Spin until Self reports 0.1s more; on a busy machine that takes
	// longer than 0.1s of wall time, but never 5s unless Self is wrong.
	before := Self()
	for start := time.Now(); Self()-before < 0.1; {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("Self grew by %.3fs over 5s of spinning", Self()-before)
		}
	}
}

func TestMissingProcess(t *testing.T) {
	if _, err := Read(1 << 30); err == nil {
		t.Fatal("reading a process that does not exist succeeded")
	}
	if _, err := Read(os.Getpid()); err != nil {
		t.Fatal(err)
	}
}

func TestHostBusyGrowsWithWork(t *testing.T) {
	before, err := HostBusy()
	if err != nil {
		t.Fatal(err)
	}
	self := Self()
	for start := time.Now(); Self()-self < 0.2; {
		if time.Since(start) > 5*time.Second {
			t.Fatal("could not spin 0.2s of CPU in 5s")
		}
	}
	after, err := HostBusy()
	if err != nil {
		t.Fatal(err)
	}
	// The host was busy at least as long as this process spun (less a
	// tick of rounding).
	if after-before < 0.18 {
		t.Fatalf("host busy time grew by %.2fs while this process used 0.2s", after-before)
	}
}
