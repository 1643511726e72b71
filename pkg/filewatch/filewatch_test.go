package filewatch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestReload changes a watched file: good content is put in force, bad
// content is refused with the previous content kept, and the metrics say
// which.
func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("one")
	var inForce string
	loads := 0
	reg := prometheus.NewRegistry()
	w, err := New(Options{
		Name:  "test",
		Paths: []string{path},
		Load: func(c [][]byte) error {
			loads++
			if strings.HasPrefix(string(c[0]), "bad") {
				return errors.New("bad content")
			}
			inForce = string(c[0])
			return nil
		},
		Registerer: reg,
	})
	if err != nil || inForce != "one" {
		t.Fatalf("initial load: %v, in force %q", err, inForce)
	}
	if ok, err := w.Check(); ok || err != nil || loads != 1 {
		t.Fatalf("unchanged file reloaded: %v %v, %d loads", ok, err, loads)
	}
	write("two")
	if ok, err := w.Check(); !ok || err != nil || inForce != "two" {
		t.Fatalf("changed file: %v %v, in force %q", ok, err, inForce)
	}
	write("bad one")
	if ok, err := w.Check(); ok || err == nil || inForce != "two" {
		t.Fatalf("bad file: %v %v, in force %q", ok, err, inForce)
	}
	if v := testutil.ToFloat64(w.lastOK); v != 0 {
		t.Fatalf("last_reload_successful = %v after a refused file", v)
	}
	// The same bad content is not loaded again at every poll.
	before := loads
	if _, err := w.Check(); err == nil || loads != before {
		t.Fatalf("bad content retried: %v, %d loads", err, loads-before)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if ok, err := w.Check(); ok || err == nil || inForce != "two" {
		t.Fatalf("missing file: %v %v, in force %q", ok, err, inForce)
	}
	write("three")
	if ok, err := w.Check(); !ok || err != nil || inForce != "three" {
		t.Fatalf("fixed file: %v %v, in force %q", ok, err, inForce)
	}
	if v := testutil.ToFloat64(w.lastOK); v != 1 {
		t.Fatalf("last_reload_successful = %v after a good file", v)
	}
	if v := testutil.ToFloat64(w.reloads.WithLabelValues("failure")); v != 2 {
		t.Fatalf("failed reloads = %v, want 2", v)
	}
	if v := testutil.ToFloat64(w.reloads.WithLabelValues("success")); v != 2 {
		t.Fatalf("successful reloads = %v, want 2", v)
	}

	// A file that does not load at start is an error.
	write("bad")
	if _, err := New(Options{Name: "x", Paths: []string{path}, Load: func(c [][]byte) error { return errors.New("no") }}); err == nil {
		t.Fatal("New accepted a file that does not load")
	}
}
