package rollupparquet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/thanos-io/objstore"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/bucket"
	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/kafka"
	"github.com/weir-metrics/weir/pkg/rollup"
)

// flakyBucket is a real bucket that refuses every request while down.
type flakyBucket struct {
	objstore.Bucket
	down atomic.Bool
}

var errDown = errors.New("bucket unavailable (injected)")

func (b *flakyBucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	if b.down.Load() {
		return errDown
	}
	return b.Bucket.Upload(ctx, name, r, opts...)
}

func (b *flakyBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if b.down.Load() {
		return nil, errDown
	}
	return b.Bucket.Get(ctx, name)
}

func eventually(t *testing.T, d time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("after %s: %v", d, err)
}

// TestUnavailableBucketStallsWithoutLoss runs the writer against a real
// Kafka-protocol broker and a filesystem bucket that fails: the writer
// stalls, counts the failures, holds the rows, commits nothing past them
// and writes no file; once the bucket is back it catches up. A restart
// then reads some rows again and a replay adds rows to a written hour:
// every row ends in the files exactly once.
func TestUnavailableBucketStallsWithoutLoss(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.Kafka.Embedded.Addr = "127.0.0.1:0"
	cfg.Kafka.Partitions = 2
	cfg.Sink.InstanceID = "k1"
	log := slog.New(slog.DiscardHandler)
	b, err := kafka.StartBroker(&cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cfg.Kafka.Embedded.Addr = b.Addr()
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafka.NewTopics(cl, cfg.Kafka).EnsureTenant(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	topic := kafka.Topic("weir", "t1", kafka.KindRollup)
	const res = 300_000
	produce := func(p int32, mark int64, rows ...rollup.Row) {
		t.Helper()
		values, err := rollup.EncodeRows(rows, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range values {
			r := &kgo.Record{Topic: topic, Partition: p, Value: v, Headers: rollup.Headers(rollup.Meta{Tenant: "t1", Watermark: mark})}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A complete hour of 5m windows for 10 series in each partition.
	rowsOf := func(p int32, from, to int) []rollup.Row {
		var rows []rollup.Row
		for s := from; s < to; s++ {
			for w := int64(0); w < 12; w++ {
				r := row(fmt.Sprintf("m%d_total", s), uint64(s), hour0+w*res, res, float64(w))
				r.Partition = p
				rows = append(rows, r)
			}
		}
		return rows
	}
	closed := hour0 + 3_600_000 + 60_000
	for p := int32(0); p < 2; p++ {
		produce(p, closed, rowsOf(p, 0, 5)...)
		produce(p, closed, rowsOf(p, 5, 10)...)
	}

	fs, err := bucket.Open(&cfg, log, prometheus.NewRegistry(), "test")
	if err != nil {
		t.Fatal(err)
	}
	bkt := &flakyBucket{Bucket: fs}
	bkt.down.Store(true)
	run := func() (*Consumer, func()) {
		c, err := NewConsumer(&cfg, log, prometheus.NewRegistry(), Options{
			Bucket: bkt, RowGroupRows: 1024, MaxFileAge: time.Hour, MaxFileRows: 1 << 20, TmpDir: filepath.Join(dir, "tmp"),
		})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(rctx) }()
		return c, func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	adm := kadm.NewClient(cl)
	committed := func() (total int64) {
		offs, err := adm.FetchOffsets(ctx, cfg.Rollup.ParquetGroupID)
		if err != nil {
			t.Fatal(err)
		}
		offs.Each(func(o kadm.OffsetResponse) { total += o.At })
		return total
	}

	c, stop := run()
	eventually(t, 20*time.Second, func() error {
		if n := testutil.ToFloat64(c.m.uploadFailures); n < 2 {
			return fmt.Errorf("%v upload failures", n)
		}
		return nil
	})
	if n := testutil.ToFloat64(c.m.pendingRows); n != 240 {
		t.Fatalf("pending rows %v while the bucket is down, want all 240", n)
	}
	if n := committed(); n != 0 {
		t.Fatalf("offsets committed (sum %d) while no file was written", n)
	}
	if got := fileRows(t, fs); len(got) != 0 {
		t.Fatalf("%d rows in the bucket while it was down", len(got))
	}

	bkt.down.Store(false)
	eventually(t, 40*time.Second, func() error {
		if n := len(fileRows(t, fs)); n != 240 {
			return fmt.Errorf("%d rows in the files", n)
		}
		if n := committed(); n != 4 {
			return fmt.Errorf("committed offsets sum to %d, want 4 (both records of both partitions)", n)
		}
		return nil
	})
	if n := testutil.ToFloat64(c.m.pendingRows); n != 0 {
		t.Fatalf("pending rows %v after catching up", n)
	}
	stop()

	// Rows read again (a rollup stage restart re-emits them) and rows a
	// replay adds to the written hour: merged, not duplicated.
	produce(0, closed, rowsOf(0, 3, 7)...)
	produce(1, closed, rowsOf(1, 10, 12)...)
	_, stop = run()
	defer stop()
	eventually(t, 20*time.Second, func() error {
		got := fileRows(t, fs)
		if len(got) != 264 {
			return fmt.Errorf("%d rows in the files, want 264", len(got))
		}
		seen := map[string]bool{}
		for _, r := range got {
			k := fmt.Sprint(r.SourcePartition, r.key())
			if seen[k] {
				return fmt.Errorf("row %s twice", k)
			}
			seen[k] = true
		}
		return nil
	})
}

func fileRows(t *testing.T, bkt objstore.Bucket) []FileRow {
	t.Helper()
	var out []FileRow
	for _, rows := range objects(t, bkt) {
		out = append(out, rows...)
	}
	return out
}
