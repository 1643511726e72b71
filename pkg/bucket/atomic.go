package bucket

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"
)

// atomicFilesystem is objstore's filesystem bucket with whole-object
// uploads: the provider writes into the final file, so a reader (DuckDB
// on the rollup files, a block syncer) could see half an object. Here the
// content goes to a hidden temporary file in the same directory, is
// synced, and is renamed into place, as an S3 PUT behaves; listings leave
// such files out.
type atomicFilesystem struct {
	*filesystem.Bucket
	dir string
}

func newAtomicFilesystem(dir string) (*atomicFilesystem, error) {
	b, err := filesystem.NewBucket(dir)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return &atomicFilesystem{Bucket: b, dir: abs}, nil
}

// tmpMarker is in the name of every temporary file an upload writes.
const tmpMarker = ".tmp-"

// inFlight reports whether a listed name is an upload's temporary file.
func inFlight(name string) bool {
	base := path.Base(strings.TrimSuffix(name, objstore.DirDelim))
	return strings.HasPrefix(base, ".") && strings.Contains(base, tmpMarker)
}

// Iter lists objects, leaving out uploads in flight.
func (b *atomicFilesystem) Iter(ctx context.Context, dir string, f func(string) error, options ...objstore.IterOption) error {
	return b.Bucket.Iter(ctx, dir, func(name string) error {
		if inFlight(name) {
			return nil
		}
		return f(name)
	}, options...)
}

// IterWithAttributes lists objects, leaving out uploads in flight.
func (b *atomicFilesystem) IterWithAttributes(ctx context.Context, dir string, f func(objstore.IterObjectAttributes) error, options ...objstore.IterOption) error {
	return b.Bucket.IterWithAttributes(ctx, dir, func(a objstore.IterObjectAttributes) error {
		if inFlight(a.Name) {
			return nil
		}
		return f(a)
	}, options...)
}

// Upload writes the object whole or not at all.
func (b *atomicFilesystem) Upload(ctx context.Context, name string, r io.Reader, _ ...objstore.ObjectUploadOption) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	file := filepath.Join(b.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	// The name starts with a dot and does not end in the object's
	// extension, so globs like **/*.parquet never match it.
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+tmpMarker+"*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = io.Copy(tmp, r); err != nil {
		return fmt.Errorf("copy to %s: %w", file, err)
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}
