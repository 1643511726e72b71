package bucket

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/thanos-io/objstore"
)

// blockingReader hands out its first half, then waits until released.
type blockingReader struct {
	data    string
	pos     int
	half    chan struct{}
	release chan struct{}
	fail    bool
}

func (r *blockingReader) Read(p []byte) (int, error) {
	if r.pos == len(r.data)/2 {
		close(r.half)
		<-r.release
		if r.fail {
			return 0, errors.New("sender went away")
		}
	}
	end := len(r.data)
	if r.pos < len(r.data)/2 {
		end = len(r.data) / 2
	}
	n := copy(p, r.data[r.pos:end])
	r.pos += n
	if r.pos == len(r.data) {
		return n, io.EOF
	}
	return n, nil
}

// TestFilesystemUploadsAreAtomic: while an upload is half done, the object
// is neither listed nor readable (the old version stays readable), and a
// failed upload leaves neither the object nor a temporary file behind.
func TestFilesystemUploadsAreAtomic(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := newAtomicFilesystem(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Upload(ctx, "r/a.parquet", strings.NewReader("old")); err != nil {
		t.Fatal(err)
	}
	current := "old"
	for _, fail := range []bool{false, true} {
		r := &blockingReader{data: strings.Repeat("x", 1<<20), half: make(chan struct{}), release: make(chan struct{}), fail: fail}
		done := make(chan error, 1)
		go func() { done <- b.Upload(ctx, "r/a.parquet", r) }()
		<-r.half
		var names []string
		if err := b.Iter(ctx, "", func(n string) error { names = append(names, n); return nil }, objstore.WithRecursiveIter()); err != nil {
			t.Fatal(err)
		}
		if len(names) != 1 || names[0] != "r/a.parquet" {
			t.Fatalf("listing during an upload: %v, want only r/a.parquet", names)
		}
		rc, err := b.Get(ctx, "r/a.parquet")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if string(got) != current {
			t.Fatalf("during an upload the object reads %d bytes, want the previous version's %d", len(got), len(current))
		}
		close(r.release)
		err = <-done
		if fail != (err != nil) {
			t.Fatalf("upload (failing: %v): %v", fail, err)
		}
		if !fail {
			current = r.data
		}
	}
	entries, _ := os.ReadDir(dir + "/r")
	if len(entries) != 1 {
		t.Fatalf("files left in the bucket: %v", entries)
	}
	rc, _ := b.Get(ctx, "r/a.parquet")
	got, _ := io.ReadAll(rc)
	rc.Close()
	if len(got) != 1<<20 {
		t.Fatalf("object holds %d bytes, want the complete first upload", len(got))
	}
}
