package rollupparquet

import (
	"bytes"
	"context"
	"io"
	"sort"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/thanos-io/objstore"

	"github.com/weir-metrics/weir/pkg/rollup"
)

const hour0 = int64(1_700_002_800_000) // an hour boundary

func row(metric string, hash uint64, start, resMs int64, v float64) rollup.Row {
	inc := v
	return rollup.Row{
		Tenant: "t1", Rollup: "default", Partition: 2, Metric: metric, Labels: map[string]string{"job": "x"},
		SeriesHash: hash, ResolutionMs: resMs, WindowStartMs: start, AllowedLatenessMs: 60_000, Kind: rollup.KindCounter,
		Count: 1, Sum: v, Min: v, Max: v, First: v, Last: v, FirstTimestampMs: start, LastTimestampMs: start, Increase: &inc,
	}
}

func objects(t *testing.T, bkt objstore.Bucket) map[string][]FileRow {
	t.Helper()
	out := map[string][]FileRow{}
	err := bkt.Iter(context.Background(), Prefix, func(name string) error {
		rc, err := bkt.Get(context.Background(), name)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		rows, _, err := Read(b)
		if err != nil {
			return err
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].WindowStart < rows[j].WindowStart })
		out[name] = rows
		return nil
	}, objstore.WithRecursiveIter())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWriterCompletesHoursAndMerges checks the file lifecycle: rows wait
// until the partition's watermark says their hour is complete, the object
// name follows the data, rows read again (a restart) or arriving late (a
// replay) merge into the object instead of duplicating or removing rows,
// a newer generation replaces it, and offsets are committable only up to
// the first row not uploaded.
func TestWriterCompletesHoursAndMerges(t *testing.T) {
	ctx := context.Background()
	bkt := objstore.NewInMemBucket()
	w := NewWriter(Options{Bucket: bkt, RowGroupRows: 1024, MaxFileAge: time.Hour, MaxFileRows: 1 << 20, TmpDir: t.TempDir()})
	id := PartitionID{"weir.t1.rollup", 2}
	now := time.Now()
	const res = 300_000
	add := func(off int64, mark int64, gen int64, rows ...rollup.Row) {
		t.Helper()
		if err := w.Add(id, off, rollup.Meta{Tenant: "t1", Watermark: mark, Generation: gen}, rows, now); err != nil {
			t.Fatal(err)
		}
	}
	// Windows of the first hour close one by one.
	for i := int64(0); i < 11; i++ {
		add(i, hour0+(i+1)*res+60_000, 0, row("m_total", 7, hour0+i*res, res, float64(i)))
	}
	if err := w.Flush(ctx, now, false); err != nil {
		t.Fatal(err)
	}
	if n := len(objects(t, bkt)); n != 0 {
		t.Fatalf("%d files before the hour is complete", n)
	}
	if got := w.Committable()[id]; got != 0 {
		t.Fatalf("committable offset %d with rows pending from offset 0", got)
	}
	// The last window of the hour, and the watermark that closes it.
	add(11, hour0+12*res+60_000, 0, row("m_total", 7, hour0+11*res, res, 11))
	add(12, hour0+12*res+60_000, 0, row("m_total", 7, hour0+12*res, res, 12)) // next hour
	if err := w.Flush(ctx, now, false); err != nil {
		t.Fatal(err)
	}
	objs := objects(t, bkt)
	name := "rollups/tenant=t1/resolution=5m/date=2023-11-14/23-default-p0002.parquet"
	if len(objs) != 1 || len(objs[name]) != 12 {
		t.Fatalf("files %v, want %s with 12 rows", keys(objs), name)
	}
	if got := w.Committable()[id]; got != 12 {
		t.Fatalf("committable offset %d, want 12 (the next hour's row is pending)", got)
	}
	// A restart reads offsets 5 to 12 again (identical rows), and a replay
	// brings a row the first pass lacked: merged, nothing duplicated.
	for i := int64(5); i < 12; i++ {
		add(i, hour0+12*res+60_000, 0, row("m_total", 7, hour0+i*res, res, float64(i)))
	}
	add(13, hour0+12*res+60_000, 0, row("m_total", 8, hour0, res, 100))
	if err := w.Flush(ctx, now, false); err != nil {
		t.Fatal(err)
	}
	if rows := objects(t, bkt)[name]; len(rows) != 13 {
		t.Fatalf("after the merge the file holds %d rows, want 13", len(rows))
	}
	// A recomputation (generation 5) of the hour replaces the file.
	add(14, hour0+12*res+60_000, 5, row("m_total", 7, hour0, res, 42))
	if err := w.Flush(ctx, now, false); err != nil {
		t.Fatal(err)
	}
	rows := objects(t, bkt)[name]
	if len(rows) != 1 || *rows[0].Increase != 42 {
		t.Fatalf("after a newer generation the file holds %d rows (%+v), want the recomputed one", len(rows), rows)
	}
	// Live rows arriving after that merge into the recomputed version.
	add(15, hour0+12*res+60_000, 0, row("m_total", 9, hour0, res, 1))
	if err := w.Flush(ctx, now, false); err != nil {
		t.Fatal(err)
	}
	if rows := objects(t, bkt)[name]; len(rows) != 2 {
		t.Fatalf("file holds %d rows, want 2", len(rows))
	}
	// An old file is uploaded although its hour is not complete; what comes
	// later merges.
	if err := w.Flush(ctx, now.Add(2*time.Hour), false); err != nil {
		t.Fatal(err)
	}
	next := "rollups/tenant=t1/resolution=5m/date=2023-11-15/00-default-p0002.parquet"
	if rows := objects(t, bkt)[next]; len(rows) != 1 {
		t.Fatalf("the old incomplete file holds %d rows, want 1", len(rows))
	}
	if got := w.Committable()[id]; got != 16 {
		t.Fatalf("committable offset %d, want 16", got)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestWriteIsSortedAndReadable checks the file itself: sorted rows, zstd,
// row groups of the configured size, the generation in the metadata.
func TestWriteIsSortedAndReadable(t *testing.T) {
	var rows []FileRow
	for i := 0; i < 3000; i++ {
		r := row([]string{"b", "a", "c"}[i%3], uint64(i%7), hour0+int64(i/21)*1000, 1000, float64(i))
		fr, err := ToFileRow(&r)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, fr)
	}
	var buf bytes.Buffer
	if err := Write(&buf, rows, WriteOptions{RowGroupRows: 1024, Generation: 3, Tenant: "t1"}); err != nil {
		t.Fatal(err)
	}
	back, gen, err := Read(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if gen != 3 || len(back) != 3000 {
		t.Fatalf("generation %d, %d rows", gen, len(back))
	}
	for i := 1; i < len(back); i++ {
		a, b := back[i-1], back[i]
		if a.Metric > b.Metric || a.Metric == b.Metric && (a.SeriesHash > b.SeriesHash || a.SeriesHash == b.SeriesHash && a.WindowStart > b.WindowStart) {
			t.Fatalf("rows %d and %d out of order", i-1, i)
		}
	}
	f, err := openFile(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.RowGroups()); n != 3 {
		t.Fatalf("%d row groups, want 3 of at most 1024 rows", n)
	}
	if c := f.Metadata().RowGroups[0].Columns[0].MetaData.Codec.String(); c != "ZSTD" {
		t.Fatalf("codec %s, want ZSTD", c)
	}
}

func TestObjectNames(t *testing.T) {
	for _, c := range []struct {
		k    FileKey
		want string
	}{
		{FileKey{"t1", "default", 300_000, hour0, 3}, "rollups/tenant=t1/resolution=5m/date=2023-11-14/23-default-p0003.parquet"},
		{FileKey{"t1", "by_job", 3_600_000, hour0 + 3_600_000, 12}, "rollups/tenant=t1/resolution=1h/date=2023-11-15/00-by_job-p0012.parquet"},
		{FileKey{"t1", "default", 86_400_000, hour0 + 3_600_000, 0}, "rollups/tenant=t1/resolution=1d/date=2023-11-15/00-default-p0000.parquet"},
	} {
		if got := c.k.ObjectName(); got != c.want {
			t.Errorf("%+v: %s, want %s", c.k, got, c.want)
		}
	}
	// The hour of 5m windows is complete when the last one closed.
	k := FileKey{"t1", "default", 300_000, hour0, 0}
	if k.Complete(hour0+3_600_000+59_999, 60_000) || !k.Complete(hour0+3_600_000+60_000, 60_000) {
		t.Error("5m file completion is off")
	}
	day := FileKey{"t1", "default", 86_400_000, hour0 + 3_600_000, 0}
	if day.Complete(hour0+3_600_000+86_400_000-1, 0) || !day.Complete(hour0+3_600_000+86_400_000, 0) {
		t.Error("1d file completion is off")
	}
}

func openFile(b []byte) (*parquet.File, error) {
	return parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
}
