package tsdbstore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestFullDiskLosesNothing appends to a shard on a small tmpfs and fills
// the filesystem to the last byte halfway, twice: once with
// MinFreeDiskBytes unset, so that the TSDB meets the full disk mid-write
// and tears its WAL (as when the disk fills between the free-space check
// and the write), once with it set, so that appends are refused before
// anything is written. Appends are retried as the sink retries them (a
// failed append reopens the shard; reopening waits for free space). After
// the space returns and the store is reopened, as after a restart, every
// sample whose append succeeded must be there: a WAL repaired on a full
// disk, or appended to behind a torn record, loses them. Mounting needs
// root or CAP_SYS_ADMIN (CI runs as root).
func TestFullDiskLosesNothing(t *testing.T) {
	for _, guarded := range []bool{false, true} {
		t.Run(map[bool]string{false: "torn write", true: "refused before writing"}[guarded], func(t *testing.T) {
			testFullDisk(t, guarded)
		})
	}
}

func testFullDisk(t *testing.T, guarded bool) {
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=16m"); err != nil {
		t.Fatalf("mounting a tmpfs for the full-disk test: %v; this test needs root or CAP_SYS_ADMIN", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	opts := Options{
		Dir: dir, Shards: 1, BlockDuration: 2 * time.Hour, Retention: 24 * time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	const minFree = 4 << 20
	if guarded {
		opts.MinFreeDiskBytes = minFree
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}

	const series, requests, fillAt, fullFor = 200, 60, 20, 10
	var failures, lowDisk int
	// tryAppend appends request i as the sink does: on failure the shard
	// is reopened before anything else is appended to it.
	tryAppend := func(i int) error {
		sh, err := s.Shard("a", 0)
		if err == nil {
			if _, err = sh.Append(context.Background(), request("m", series, 1, 1_000_000+int64(i)*1000)); err != nil && !errors.Is(err, ErrLowDisk) {
				if cerr := s.Reopen("a", 0); cerr != nil {
					t.Logf("closing the failed shard: %v", cerr)
				}
			}
		}
		if err != nil {
			failures++
			if errors.Is(err, ErrLowDisk) {
				lowDisk++
			}
		}
		return err
	}
	filler := filepath.Join(dir, "filler")
	stored := 0
	pending := -1
	for i := 0; i < requests; i++ {
		switch i {
		case fillAt:
			fillDisk(t, filler)
		case fillAt + 1:
			// From here on, as the sink is configured: a failed shard is
			// opened again only with room for the WAL repair.
			s.opts.MinFreeDiskBytes = minFree
		case fillAt + fullFor:
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
		}
		if pending >= 0 {
			// The refused record is retried before the next, as the sink
			// retries its record before it takes the next.
			if tryAppend(pending) != nil {
				continue
			}
			pending = -1
			stored++
		}
		if err := tryAppend(i); err != nil {
			if i < fillAt || i >= fillAt+fullFor {
				t.Fatalf("append %d failed with space free: %v", i, err)
			}
			pending = i
			continue
		}
		stored++
	}
	if pending >= 0 {
		t.Fatalf("append %d never succeeded", pending)
	}
	if failures == 0 {
		t.Fatal("no append failed on the full disk: the test filled nothing")
	}
	if guarded && lowDisk != failures {
		t.Fatalf("%d of %d failed appends were not refused by the free-space check", failures-lowDisk, failures)
	}
	if err := s.Close(); err != nil {
		t.Logf("closing: %v", err)
	}

	s, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := samples(t, s, "a", "m")
	if len(got) != series {
		t.Fatalf("%d series after reopening, want %d", len(got), series)
	}
	for name, vs := range got {
		if len(vs) != stored {
			t.Fatalf("%s has %d samples after reopening, want the %d appended (%d appends failed on the full disk)", name, len(vs), stored, failures)
		}
	}
}

// fillDisk writes path until its filesystem is full, to the last byte.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{1 << 20, 4 << 10, 1} {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); errors.Is(err, syscall.ENOSPC) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
	}
}
