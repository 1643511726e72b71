package shipper

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"
)

// tsdbWithBlocks writes 6 hours of samples of 3 series, one every 15s,
// and compacts them into 2h blocks.
func tsdbWithBlocks(t *testing.T) (*tsdb.DB, int) {
	t.Helper()
	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = 0
	db, err := tsdb.Open(t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)), nil, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	app := db.Appender(context.Background())
	n := 0
	for ts := int64(0); ts < int64(6*time.Hour/time.Millisecond); ts += 15000 {
		for s := 0; s < 3; s++ {
			if _, err := app.Append(0, labels.FromStrings("__name__", "m", "s", string(rune('a'+s))), ts, float64(ts/1000+int64(s))); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(db.Blocks()) < 2 {
		t.Fatalf("compaction made %d blocks", len(db.Blocks()))
	}
	return db, n
}

func metas(db *tsdb.DB) []tsdb.BlockMeta {
	var out []tsdb.BlockMeta
	for _, b := range db.Blocks() {
		out = append(out, b.Meta())
	}
	return out
}

// recordingBucket is a real bucket that notes the order of uploads and can
// be made to fail.
type recordingBucket struct {
	objstore.Bucket
	mu    sync.Mutex
	order []string
	fail  bool
}

func (b *recordingBucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	b.mu.Lock()
	fail := b.fail
	b.order = append(b.order, name)
	b.mu.Unlock()
	if fail {
		return errors.New("bucket unavailable")
	}
	return b.Bucket.Upload(ctx, name, r, opts...)
}

// TestShipAndReadBack uploads the blocks and reads every sample back from
// the bucket with prometheus/tsdb.
func TestShipAndReadBack(t *testing.T) {
	db, written := tsdbWithBlocks(t)
	bucketDir := t.TempDir()
	fs, err := filesystem.NewBucket(bucketDir)
	if err != nil {
		t.Fatal(err)
	}
	bkt := &recordingBucket{Bucket: fs}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := NewMetrics(prometheus.NewRegistry())
	s, err := New(bkt, db.Dir(), "blocks/team-a", map[string]string{"tenant": "team-a", "shard": "1"}, log, m)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Sync(context.Background(), metas(db))
	if err != nil || n != len(db.Blocks()) {
		t.Fatalf("uploaded %d of %d blocks: %v", n, len(db.Blocks()), err)
	}
	// meta.json of each block comes after all of its other files.
	lastMeta := map[string]int{}
	for i, name := range bkt.order {
		if strings.HasSuffix(name, "/meta.json") {
			lastMeta[path.Dir(name)] = i
		}
	}
	for i, name := range bkt.order {
		dir := path.Dir(strings.TrimSuffix(name, "/000001"))
		if strings.Contains(name, "/chunks/") {
			dir = path.Dir(path.Dir(name))
		}
		if !strings.HasSuffix(name, "meta.json") && i > lastMeta[dir] {
			t.Fatalf("%s uploaded after its block's meta.json", name)
		}
	}

	read := 0
	for _, meta := range metas(db) {
		prefix := path.Join("blocks/team-a", meta.ULID.String())
		dst := filepath.Join(t.TempDir(), meta.ULID.String())
		if err := objstore.DownloadDir(context.Background(), nopLogger{}, fs, prefix, prefix, dst); err != nil {
			t.Fatal(err)
		}
		raw, err := fs.Get(context.Background(), path.Join(prefix, "meta.json"))
		if err != nil {
			t.Fatal(err)
		}
		var withThanos struct {
			ULID   string `json:"ulid"`
			Thanos Thanos `json:"thanos"`
		}
		if err := json.NewDecoder(raw).Decode(&withThanos); err != nil {
			t.Fatal(err)
		}
		raw.Close()
		if withThanos.ULID != meta.ULID.String() || withThanos.Thanos.Labels["tenant"] != "team-a" || withThanos.Thanos.Labels["shard"] != "1" || len(withThanos.Thanos.SegmentFiles) == 0 {
			t.Fatalf("meta.json thanos section: %+v", withThanos)
		}
		b, err := tsdb.OpenBlock(nil, dst, nil, nil)
		if err != nil {
			t.Fatalf("block %s from the bucket does not open: %v", meta.ULID, err)
		}
		q, err := tsdb.NewBlockQuerier(b, math.MinInt64, math.MaxInt64)
		if err != nil {
			t.Fatal(err)
		}
		set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "m"))
		for set.Next() {
			it := set.At().Iterator(nil)
			for it.Next() == chunkenc.ValFloat {
				read++
			}
		}
		q.Close()
		b.Close()
	}
	inHead := headSamples(t, db)
	if read+inHead != written {
		t.Fatalf("bucket blocks hold %d samples and the head %d, %d were written", read, inHead, written)
	}

	// A new shipper on the same directory knows what was shipped.
	s2, err := New(bkt, db.Dir(), "blocks/team-a", nil, log, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, meta := range metas(db) {
		if !s2.Shipped(meta.ULID) {
			t.Fatalf("block %s forgotten after restart", meta.ULID)
		}
	}
	if n, _ := s2.Sync(context.Background(), metas(db)); n != 0 {
		t.Fatalf("re-uploaded %d blocks", n)
	}
}

func headSamples(t *testing.T, db *tsdb.DB) int {
	q, err := tsdb.NewBlockQuerier(tsdb.NewRangeHead(db.Head(), math.MinInt64, math.MaxInt64), math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	n := 0
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "m"))
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			n++
		}
	}
	return n
}

// TestUnavailableBucket: failed uploads are not marked shipped and are
// retried; nothing is lost.
func TestUnavailableBucket(t *testing.T) {
	db, _ := tsdbWithBlocks(t)
	bkt := &recordingBucket{Bucket: objstore.NewInMemBucket(), fail: true}
	reg := prometheus.NewRegistry()
	s, err := New(bkt, db.Dir(), "blocks/t", nil, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Sync(context.Background(), metas(db)); err == nil || n != 0 {
		t.Fatalf("sync against a failing bucket: %d, %v", n, err)
	}
	for _, m := range metas(db) {
		if s.Shipped(m.ULID) {
			t.Fatal("a failed upload was marked shipped")
		}
	}
	bkt.fail = false
	if n, err := s.Sync(context.Background(), metas(db)); err != nil || n != len(db.Blocks()) {
		t.Fatalf("retry uploaded %d: %v", n, err)
	}
}
