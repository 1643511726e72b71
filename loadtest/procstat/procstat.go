// Package procstat reads a local process' CPU time and memory from /proc,
// so the harness can report what a target spent without any help from it.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times. It is 100
// on every Linux architecture Go supports.
const clockTicks = 100

// Sample is one reading of a process.
type Sample struct {
	// CPUSeconds is user + system time since the process started.
	CPUSeconds float64
	// RSSBytes is the resident set size now; PeakRSSBytes the highest it
	// has been (VmHWM).
	RSSBytes     int64
	PeakRSSBytes int64
}

// Read reads process pid.
func Read(pid int) (Sample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Sample{}, fmt.Errorf("reading CPU time of process %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces and parentheses; the
	// fields after its closing parenthesis are fixed.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return Sample{}, fmt.Errorf("process %d: malformed /proc stat", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return Sample{}, fmt.Errorf("process %d: short /proc stat", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return Sample{}, fmt.Errorf("process %d: malformed CPU times in /proc stat", pid)
	}
	s := Sample{CPUSeconds: float64(ut+st) / clockTicks}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Sample{}, fmt.Errorf("reading memory of process %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "VmRSS":
			s.RSSBytes = kib(v)
		case "VmHWM":
			s.PeakRSSBytes = kib(v)
		}
	}
	return s, nil
}

func kib(v string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
	return n << 10
}

// Self returns the CPU seconds the calling process used so far, from
// getrusage, which is finer than /proc's 10 ms ticks.
func Self() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return tv(ru.Utime) + tv(ru.Stime)
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// HostBusy returns the CPU seconds all CPUs of the machine spent busy
// (everything but idle and iowait) since boot, from /proc/stat. Its change
// over a run, less what the target and the harness used, is what other
// processes took: the noise a figure was measured under.
func HostBusy() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("reading host CPU time: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("malformed /proc/stat")
	}
	var busy uint64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc/stat: %q", v)
		}
		busy += n
	}
	return float64(busy) / clockTicks, nil
}
