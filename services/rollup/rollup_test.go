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

// stageEnv is an embedded broker holding tenant t1's topics, a client of
// it, and the configuration a stage under test runs with: 1s and 2s
// windows, 500 ms of lateness, idle partitions closing after 2s.
type stageEnv struct {
	cfg    config.Config
	log    *slog.Logger
	broker *kafka.Broker
	cl     *kgo.Client
	raw    string // t1's raw topic
	series string // t1's series topic
}

func newStageEnv(t *testing.T, partitions int) *stageEnv {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Kafka.Embedded.Addr = "127.0.0.1:0"
	cfg.Kafka.Partitions = partitions
	cfg.Sink.TSDBShards = min(cfg.Sink.TSDBShards, partitions)
	cfg.Kafka.ProduceTimeout = time.Second
	cfg.Stream.InstanceID = "s1"
	cfg.Rollup.Resolutions = []string{"1s", "2s"}
	cfg.Rollup.AllowedLateness = 500 * time.Millisecond
	cfg.Rollup.IdleTimeout = 2 * time.Second
	cfg.Rollup.CommitInterval = 200 * time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := &stageEnv{cfg: cfg, log: slog.New(slog.DiscardHandler),
		raw: kafka.Topic("weir", "t1", kafka.KindRaw), series: kafka.Topic("weir", "t1", kafka.KindSeries)}
	b, err := kafka.StartBroker(&e.cfg, e.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	e.broker = b
	e.cfg.Kafka.Embedded.Addr = b.Addr()
	e.cl, err = kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cl.Close)
	if err := kafka.NewTopics(e.cl, e.cfg.Kafka).EnsureTenant(context.Background(), "t1"); err != nil {
		t.Fatal(err)
	}
	return e
}

// seriesRecord is a record of t1's series topic holding one sample of the
// gauge g at ts, received at ts.
func (e *stageEnv) seriesRecord(partition int32, ts time.Time, v float64) *kgo.Record {
	var enc prw.Encoder
	enc.Append(&prw.TimeSeries{Labels: []prw.Label{{Name: "__name__", Value: "g"}}, Samples: []prw.Sample{{Value: v, Timestamp: ts.UnixMilli()}}})
	return &kgo.Record{Topic: e.series, Partition: partition, Value: bytes.Clone(enc.Bytes()), Timestamp: ts,
		Headers: record.Headers(record.Meta{Tenant: "t1", Source: record.SourcePRW1, ReceivedAt: ts})}
}

func (e *stageEnv) produce(t *testing.T, r *kgo.Record) {
	t.Helper()
	if err := e.cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
		t.Error(err)
	}
}

// run starts the stage with the default rollups; it stops when the test
// ends.
func (e *stageEnv) run(t *testing.T) *Stage {
	t.Helper()
	specs, err := DefaultSpecs(&e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := New(&e.cfg, e.log, prometheus.NewRegistry(), specs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return st
}

// TestStageCommitsCheckpointsAndClosesIdleWindows runs the stage against
// a real Kafka-protocol broker. Rows of closed windows reach the rollup
// topic before the checkpoint that moves past them is committed, with the
// watermarks in the commit metadata. A partition that receives nothing
// keeps its last windows open while the stream stage has not consumed the
// raw topic (an older record may still come), and closes them once it has.
func TestStageCommitsCheckpointsAndClosesIdleWindows(t *testing.T) {
	e := newStageEnv(t, 2)
	cfg, cl, raw, series := e.cfg, e.cl, e.raw, e.series
	ctx := context.Background()
	// The raw topic holds a record the stream stage has not consumed.
	e.produce(t, &kgo.Record{Topic: raw, Partition: 0, Value: []byte("x")})
	start := time.Now().Add(-3 * time.Second).Truncate(2 * time.Second)
	for i := 0; i < 8; i++ {
		e.produce(t, e.seriesRecord(1, start.Add(time.Duration(i)*250*time.Millisecond), float64(i)))
	}
	st := e.run(t)

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
	emitted := rollupRows(t, e.broker.Addr(), cfg)
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
	rows := rollupRows(t, e.broker.Addr(), cfg)
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
	e := newStageEnv(t, 1)
	cfg, cl, raw, b := e.cfg, e.cl, e.raw, e.broker
	ctx := context.Background()
	// One raw record the stream stage has not consumed yet, and the
	// series record of an earlier one.
	e.produce(t, &kgo.Record{Topic: raw, Partition: 0, Value: []byte("x")})
	t0 := time.Now().Add(-10 * time.Second).Truncate(2 * time.Second)
	e.produce(t, e.seriesRecord(0, t0, 1))

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
			e.produce(t, e.seriesRecord(0, t0.Add(100*time.Millisecond), 2))
			if _, err := kadm.NewClient(cl).CommitOffsets(ctx, cfg.Stream.GroupID, kadm.OffsetsFromRecords(kgo.Record{Topic: raw, Partition: 0, Offset: 0})); err != nil {
				t.Error(err)
			}
		})
		b.Cluster().DropControl()
		return nil, nil, false
	})

	st := e.run(t)

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
