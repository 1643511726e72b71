package tsdbstore

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/weir-metrics/weir/pkg/prw"
)

// TestBlocksKeptUntilApproved: blocks past retention are deleted only when
// CanDeleteBlock approves (the sink approves uploaded blocks only).
func TestBlocksKeptUntilApproved(t *testing.T) {
	var approve atomic.Bool
	s, err := Open(Options{
		Dir: t.TempDir(), Shards: 1, BlockDuration: 2 * time.Hour, Retention: 6 * time.Hour,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		CanDeleteBlock: func(*Shard, ulid.ULID) bool { return approve.Load() },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sh, _ := s.Shard("t", 0)
	req := &prw.Request{Series: []prw.TimeSeries{{Labels: []prw.Label{{Name: "__name__", Value: "m"}}}}}
	for ts := int64(0); ts <= int64(20*time.Hour/time.Millisecond); ts += int64(10 * time.Minute / time.Millisecond) {
		req.Series[0].Samples = append(req.Series[0].Samples, prw.Sample{Value: 1, Timestamp: ts})
	}
	if _, err := sh.Append(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if err := sh.DB().Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := len(sh.DB().Blocks())
	if n < 6 {
		t.Fatalf("only %d blocks; the test needs blocks past retention", n)
	}
	// Queries read blocks and head together.
	if got := samples(t, s, "t", "m")[`{__name__="m"}`]; len(got) != len(req.Series[0].Samples) {
		t.Fatalf("query over blocks and head returns %d samples, %d were written", len(got), len(req.Series[0].Samples))
	}
	if sh.DB().Blocks()[0].Meta().MinTime != 0 {
		t.Fatal("the oldest block is already gone although nothing approved its deletion")
	}
	approve.Store(true)
	// Blocks are deleted when the TSDB reloads its blocks, after its next
	// compaction: give it one.
	req.Series[0].Samples = req.Series[0].Samples[:0]
	for ts := int64(21 * time.Hour / time.Millisecond); ts <= int64(26*time.Hour/time.Millisecond); ts += int64(10 * time.Minute / time.Millisecond) {
		req.Series[0].Samples = append(req.Series[0].Samples, prw.Sample{Value: 1, Timestamp: ts})
	}
	if _, err := sh.Append(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if err := sh.DB().Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(sh.DB().Blocks()); got >= n {
		t.Fatalf("approved blocks past retention were not deleted: %d blocks before, %d after", n, got)
	}
}
