package rollup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/kafka"
	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
	"github.com/weir-metrics/weir/pkg/rollup"
)

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

// TestStageCommitsCheckpointsAndClosesIdleWindows runs the stage against
// a real Kafka-protocol broker. Rows of closed windows reach the rollup
// topic before the checkpoint that moves past them is committed, with the
// watermarks in the commit metadata. A partition that receives nothing
// keeps its last windows open while the stream stage has not consumed the
// raw topic (an older record may still come), and closes them once it has.
func TestStageCommitsCheckpointsAndClosesIdleWindows(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Kafka.Embedded.Addr = "127.0.0.1:0"
	cfg.Kafka.Partitions = 2
	cfg.Kafka.ProduceTimeout = time.Second
	cfg.Stream.InstanceID = "s1"
	cfg.Rollup.Resolutions = []string{"1s", "2s"}
	cfg.Rollup.AllowedLateness = 500 * time.Millisecond
	cfg.Rollup.IdleTimeout = 2 * time.Second
	cfg.Rollup.CommitInterval = 200 * time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
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
	// The raw topic holds a record the stream stage has not consumed.
	raw := kafka.Topic("weir", "t1", kafka.KindRaw)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: raw, Partition: 0, Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	series := kafka.Topic("weir", "t1", kafka.KindSeries)
	start := time.Now().Add(-3 * time.Second).Truncate(2 * time.Second)
	ls := []prw.Label{{Name: "__name__", Value: "g"}}
	for i := 0; i < 8; i++ {
		ts := start.Add(time.Duration(i) * 250 * time.Millisecond)
		var enc prw.Encoder
		enc.Append(&prw.TimeSeries{Labels: ls, Samples: []prw.Sample{{Value: float64(i), Timestamp: ts.UnixMilli()}}})
		r := &kgo.Record{Topic: series, Partition: 1, Value: bytes.Clone(enc.Bytes()), Timestamp: ts,
			Headers: record.Headers(record.Meta{Tenant: "t1", Source: record.SourcePRW1, ReceivedAt: ts})}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	reg := prometheus.NewRegistry()
	specs, err := DefaultSpecs(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := New(&cfg, log, reg, specs)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- st.Run(rctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	adm := kadm.NewClient(cl)
	checkpoint := func() (rollup.Checkpoint, bool) {
		offs, err := adm.FetchOffsets(ctx, cfg.Rollup.GroupID)
		if errors.Is(err, kerr.GroupIDNotFound) {
			return rollup.Checkpoint{}, false
		}
		if err != nil {
			t.Fatal(err)
		}
		o, ok := offs.Lookup(series, 1)
		if !ok {
			return rollup.Checkpoint{}, false
		}
		return rollup.ParseCheckpoint(o.At, o.Metadata), true
	}
	// All eight records are processed and checkpointed; the windows after
	// the last record's watermark (minus lateness) stay open.
	eventually(t, 20*time.Second, func() error {
		cp, ok := checkpoint()
		if !ok || cp.Position != 8 {
			return fmt.Errorf("checkpoint %+v", cp)
		}
		return nil
	})
	time.Sleep(2 * cfg.Rollup.IdleTimeout)
	cp, _ := checkpoint()
	if cp.Offset >= 8 || cp.Watermark != start.Add(7*250*time.Millisecond).UnixMilli() {
		t.Fatalf("checkpoint %+v: windows should still be open, the watermark the last record's", cp)
	}
	if n := testutil.ToFloat64(st.metrics.windowsOpen.WithLabelValues("t1")); n == 0 {
		t.Fatal("no window open while the stream stage lags")
	}
	emitted := rollupRows(t, b.Addr(), cfg)
	// Once the stream stage consumed the raw topic, the idle partition's
	// watermark follows the clock and every window closes.
	if _, err := adm.CommitOffsets(ctx, cfg.Stream.GroupID, kadm.OffsetsFromRecords(kgo.Record{Topic: raw, Partition: 0, Offset: 0})); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		cp, _ := checkpoint()
		if cp.Offset != 8 || cp.Watermark < time.Now().Add(-2*cfg.Rollup.IdleTimeout).UnixMilli() {
			return fmt.Errorf("checkpoint %+v: want every window closed", cp)
		}
		return nil
	})
	rows := rollupRows(t, b.Addr(), cfg)
	if len(rows) <= len(emitted) {
		t.Fatalf("%d rows before the idle advance, %d after", len(emitted), len(rows))
	}
	var sum1s, sum2s float64
	for _, r := range rows {
		switch r.ResolutionMs {
		case 1000:
			sum1s += r.Sum
		case 2000:
			sum2s += r.Sum
		}
	}
	if sum1s != 28 || sum2s != 28 {
		t.Fatalf("rows sum to %v (1s) and %v (2s), want 0+1+…+7 = 28 in each", sum1s, sum2s)
	}
}

// rollupRows reads every row of the rollup topic.
func rollupRows(t *testing.T, addr string, cfg config.Config) []rollup.Row {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(kafka.Topic("weir", "t1", kafka.KindRollup)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var rows []rollup.Row
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return rows
		}
		fs.EachRecord(func(r *kgo.Record) {
			if _, err := rollup.ParseHeaders(r.Headers); err != nil {
				t.Fatal(err)
			}
			rows, err = rollup.DecodeRows(r.Value, rows)
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestIdleAdvanceSeesTransactionsCommittedMeanwhile: the stream stage may
// commit a transaction while the stage checks whether an idle partition
// may follow the clock. The transaction's records in the series topic are
// older than the clock's watermark; had the stage read the partition's end
// before the stream stage's progress, it would count the partition as read
// to its end, close the windows, and find the records late — which a
// recomputation from the topic would not.
func TestIdleAdvanceSeesTransactionsCommittedMeanwhile(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Kafka.Embedded.Addr = "127.0.0.1:0"
	cfg.Kafka.Partitions = 1
	cfg.Sink.TSDBShards = 1
	cfg.Kafka.ProduceTimeout = time.Second
	cfg.Stream.InstanceID = "s1"
	cfg.Rollup.Resolutions = []string{"1s", "2s"}
	cfg.Rollup.AllowedLateness = 500 * time.Millisecond
	cfg.Rollup.IdleTimeout = 2 * time.Second
	cfg.Rollup.CommitInterval = 200 * time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
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
	raw := kafka.Topic("weir", "t1", kafka.KindRaw)
	series := kafka.Topic("weir", "t1", kafka.KindSeries)
	seriesRecord := func(ts time.Time, v float64) *kgo.Record {
		var enc prw.Encoder
		enc.Append(&prw.TimeSeries{Labels: []prw.Label{{Name: "__name__", Value: "g"}}, Samples: []prw.Sample{{Value: v, Timestamp: ts.UnixMilli()}}})
		return &kgo.Record{Topic: series, Partition: 0, Value: bytes.Clone(enc.Bytes()), Timestamp: ts,
			Headers: record.Headers(record.Meta{Tenant: "t1", Source: record.SourcePRW1, ReceivedAt: ts})}
	}
	// One raw record the stream stage has not consumed yet, and the
	// series record of an earlier one.
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: raw, Partition: 0, Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-10 * time.Second).Truncate(2 * time.Second)
	if err := cl.ProduceSync(ctx, seriesRecord(t0, 1)).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// When the stage asks for the raw topic's end, the stream stage
	// "commits" the raw record's transaction: its series record (received
	// just after the first, so in the same windows) lands, and the raw
	// offset is committed.
	var hooked atomic.Bool
	b.Cluster().ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		lr := req.(*kmsg.ListOffsetsRequest)
		if len(lr.Topics) == 0 || lr.Topics[0].Topic != raw || hooked.Load() {
			b.Cluster().KeepControl()
			return nil, nil, false
		}
		hooked.Store(true)
		b.Cluster().SleepControl(func() {
			if err := cl.ProduceSync(ctx, seriesRecord(t0.Add(100*time.Millisecond), 2)).FirstErr(); err != nil {
				t.Error(err)
			}
			if _, err := kadm.NewClient(cl).CommitOffsets(ctx, cfg.Stream.GroupID, kadm.OffsetsFromRecords(kgo.Record{Topic: raw, Partition: 0, Offset: 0})); err != nil {
				t.Error(err)
			}
		})
		b.Cluster().DropControl()
		return nil, nil, false
	})

	reg := prometheus.NewRegistry()
	specs, err := DefaultSpecs(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := New(&cfg, log, reg, specs)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- st.Run(rctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// Both samples belong in the 2s window: its row counts two, and
	// nothing was late.
	eventually(t, 20*time.Second, func() error {
		for _, r := range rollupRows(t, b.Addr(), cfg) {
			if r.ResolutionMs == 2000 && r.WindowStartMs == t0.UnixMilli() {
				if r.Count != 2 {
					t.Fatalf("the 2s window holds %d samples, want 2 (late: %v)", r.Count,
						testutil.ToFloat64(st.metrics.samplesDiscarded.WithLabelValues("t1", rollup.DefaultName, "2s", rollup.ReasonLate)))
				}
				return nil
			}
		}
		return fmt.Errorf("no row for the 2s window yet (hook ran: %v)", hooked.Load())
	})
}
