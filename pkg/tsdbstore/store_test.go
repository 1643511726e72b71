package tsdbstore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/weir-metrics/weir/pkg/prw"
)

func openStore(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(Options{
		Dir: dir, Shards: 2, BlockDuration: 2 * time.Hour, Retention: 24 * time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func request(name string, series, samples int, t0 int64) *prw.Request {
	req := &prw.Request{}
	for i := 0; i < series; i++ {
		ts := prw.TimeSeries{Labels: []prw.Label{{Name: "__name__", Value: name}, {Name: "i", Value: fmt.Sprint(i)}}}
		for j := 0; j < samples; j++ {
			ts.Samples = append(ts.Samples, prw.Sample{Value: float64(i + j), Timestamp: t0 + int64(j)*1000})
		}
		req.Series = append(req.Series, ts)
	}
	return req
}

// samples returns every sample of the tenant's series named name.
func samples(t *testing.T, s *Store, tenant, name string) map[string][]float64 {
	t.Helper()
	q, err := s.Querier(context.Background(), tenant, math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	out := map[string][]float64{}
	set := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", name))
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			_, v := it.At()
			out[set.At().Labels().String()] = append(out[set.At().Labels().String()], v)
		}
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRedeliveryIsHarmless appends the same record twice, as a consumer
// does after a crash between storing and committing: nothing doubles.
func TestRedeliveryIsHarmless(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	sh, err := s.Shard("a", 3)
	if err != nil {
		t.Fatal(err)
	}
	req := request("m", 10, 5, 1_000_000)
	res, err := sh.Append(context.Background(), req)
	if err != nil || res.Samples != 50 {
		t.Fatalf("first append: %+v %v", res, err)
	}
	res, err = sh.Append(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	got := samples(t, s, "a", "m")
	if len(got) != 10 {
		t.Fatalf("%d series, want 10", len(got))
	}
	for k, vs := range got {
		if len(vs) != 5 {
			t.Fatalf("%s has %d samples after redelivery, want 5", k, len(vs))
		}
	}
	// The redelivered samples older than each series' newest are
	// reported, not silently stored twice.
	if res.Samples+res.Discarded["out_of_order"] != 50 {
		t.Fatalf("redelivery result %+v does not account for 50 samples", res)
	}
}

func TestDiscardReasons(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	sh, _ := s.Shard("a", 0)
	if _, err := sh.Append(context.Background(), request("m", 1, 1, 10_000)); err != nil {
		t.Fatal(err)
	}
	dup := request("m", 1, 1, 10_000)
	dup.Series[0].Samples[0].Value = 99
	old := request("m", 1, 1, 5_000)
	res1, _ := sh.Append(context.Background(), dup)
	res2, _ := sh.Append(context.Background(), old)
	if res1.Discarded["duplicate_timestamp"] != 1 || res2.Discarded["out_of_order"] != 1 {
		t.Fatalf("got %+v and %+v", res1, res2)
	}
	bad := request("h", 1, 0, 0)
	bad.Series[0].Histograms = []prw.Histogram{{Timestamp: 1, Raw: []byte{0xff}}}
	res3, err := sh.Append(context.Background(), bad)
	if err != nil || res3.Discarded["invalid_histogram"] != 1 {
		t.Fatalf("invalid histogram: %+v %v", res3, err)
	}
}

// TestShardsAndTenantsAreSeparate checks partition-to-shard mapping and
// that a tenant's querier sees only its shards.
func TestShardsAndTenantsAreSeparate(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	for p := int32(0); p < 4; p++ {
		sh, err := s.Shard("a", p)
		if err != nil {
			t.Fatal(err)
		}
		if sh.Index() != int(p%2) {
			t.Fatalf("partition %d in shard %d", p, sh.Index())
		}
		if _, err := sh.Append(context.Background(), request(fmt.Sprintf("p%d", p), 1, 1, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	shB, _ := s.Shard("b", 0)
	if _, err := shB.Append(context.Background(), request("p0", 1, 1, 1000)); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"a/0", "a/1", "b/0"} {
		if _, err := os.Stat(filepath.Join(dir, d, "wal")); err != nil {
			t.Fatalf("shard %s: %v", d, err)
		}
	}
	if got := samples(t, s, "a", "p0"); len(got) != 1 {
		t.Fatalf("tenant a sees %d series p0, want 1", len(got))
	}
	if got := samples(t, s, "c", "p0"); len(got) != 0 {
		t.Fatalf("tenant c sees %d series", len(got))
	}
	// Reopening finds every shard, and the data.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir)
	defer s.Close()
	if n := len(s.Shards("a")); n != 2 {
		t.Fatalf("reopened store has %d shards of a, want 2", n)
	}
	for p := 0; p < 4; p++ {
		if got := samples(t, s, "a", fmt.Sprintf("p%d", p)); len(got) != 1 {
			t.Fatalf("after reopen, p%d has %d series", p, len(got))
		}
	}
}

func TestCheckpointSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	sh, _ := s.Shard("a", 1)
	if _, err := sh.Append(context.Background(), request("m", 1, 1, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := sh.SyncWAL(); err != nil {
		t.Fatal(err)
	}
	if err := sh.SaveCheckpoint(map[int32]int64{1: 42, 3: 7}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openStore(t, dir)
	defer s.Close()
	sh, _ = s.Shard("a", 3)
	cp := sh.Checkpoint()
	if cp[1] != 42 || cp[3] != 7 {
		t.Fatalf("checkpoint after reopen: %v", cp)
	}
}

func TestCorruptCheckpointIsAClearError(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	if _, err := s.Shard("a", 0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, "a", "0", checkpointFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Options{Dir: dir, Shards: 2, BlockDuration: 2 * time.Hour, Retention: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "delete it") {
		t.Fatalf("want an error that says what to do, got %v", err)
	}
}

// TestCachedReferenceOfDroppedSeries appends a series by its cached
// reference after compaction dropped it from the head: the append falls
// back to its labels and nothing is lost.
func TestCachedReferenceOfDroppedSeries(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	sh, _ := s.Shard("t", 0)
	hour := int64(time.Hour / time.Millisecond)
	a := request("a", 1, 6, 0) // 0..5s
	b := &prw.Request{Series: []prw.TimeSeries{{Labels: []prw.Label{{Name: "__name__", Value: "b"}}}}}
	for ts := int64(0); ts <= 5*hour; ts += hour / 4 {
		b.Series[0].Samples = append(b.Series[0].Samples, prw.Sample{Value: 1, Timestamp: ts})
	}
	for _, r := range []*prw.Request{a, b} {
		if _, err := sh.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := sh.DB().Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(sh.DB().Blocks()) == 0 {
		t.Fatal("no block was cut")
	}
	if n := sh.DB().Head().NumSeries(); n != 1 {
		t.Fatalf("head holds %d series; the test needs series a dropped from it", n)
	}
	later := request("a", 1, 1, 5*hour+1000)
	res, err := sh.Append(context.Background(), later)
	if err != nil || res.Samples != 1 {
		t.Fatalf("append after the head dropped the series: %+v %v", res, err)
	}
	if got := samples(t, s, "t", "a")[`{__name__="a", i="0"}`]; len(got) != 7 {
		t.Fatalf("series a has %d samples, want 7: %v", len(got), samples(t, s, "t", "a"))
	}
}

// TestPerTenantOutOfOrderWindow gives one tenant an out-of-order window
// and changes it while the shard is open.
func TestPerTenantOutOfOrderWindow(t *testing.T) {
	windows := map[string]time.Duration{"late": time.Hour}
	var mu sync.Mutex
	s, err := Open(Options{
		Dir: t.TempDir(), Shards: 1, BlockDuration: 2 * time.Hour, Retention: 24 * time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OutOfOrderWindowFor: func(ten string) time.Duration {
			mu.Lock()
			defer mu.Unlock()
			return windows[ten]
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UnixMilli()
	old := now - 30*time.Minute.Milliseconds()
	appendAt := func(ten string, ts int64) AppendResult {
		t.Helper()
		sh, err := s.Shard(ten, 0)
		if err != nil {
			t.Fatal(err)
		}
		res, err := sh.Append(context.Background(), request("m", 1, 1, ts))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, ten := range []string{"late", "strict"} {
		appendAt(ten, now)
	}
	if res := appendAt("late", old); res.Samples != 1 {
		t.Fatalf("tenant with a 1h window refused a 30m-old sample: %+v", res)
	}
	if res := appendAt("strict", old); res.Samples != 0 || res.Discarded["out_of_order"] != 1 {
		t.Fatalf("tenant without a window took a 30m-old sample: %+v", res)
	}
	mu.Lock()
	windows["strict"] = time.Hour
	mu.Unlock()
	if err := s.ApplyOutOfOrderWindows(); err != nil {
		t.Fatal(err)
	}
	if res := appendAt("strict", old+1000); res.Samples != 1 {
		t.Fatalf("after raising the window, a 30m-old sample was refused: %+v", res)
	}
}
