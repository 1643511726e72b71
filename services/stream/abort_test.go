package stream_test

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/kafka"
	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
	"github.com/weir-metrics/weir/services/stream"
)

// TestAbortedTransactionsAreReprocessed makes the broker refuse the stream
// stage's first transactional produce requests, so its first
// transactions abort before any offset of the raw topic was ever
// committed. Every raw sample must still reach the series topic exactly
// once: an aborted poll is read again from where it started.
func TestAbortedTransactionsAreReprocessed(t *testing.T) {
	c := startCluster(t, map[string]string{"default.yaml": "{}\n"})
	var refused atomic.Int32
	c.broker.Cluster().ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.broker.Cluster().KeepControl()
		r := req.(*kmsg.ProduceRequest)
		if r.TransactionID == nil || refused.Load() >= 3 {
			return nil, nil, false
		}
		resp := r.ResponseKind().(*kmsg.ProduceResponse)
		for _, tp := range r.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic = tp.Topic
			rt.TopicID = tp.TopicID
			for _, p := range tp.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = kerr.InvalidRecord.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		refused.Add(1)
		return resp, nil, true
	})

	const requests = 6
	now := time.Now().UnixMilli()
	for i := 0; i < requests; i++ {
		req := request(now+int64(i)*1000, lbls("__name__", "abort_test", "i", fmt.Sprint(i%3)), lbls("__name__", "abort_test_b", "i", fmt.Sprint(i)))
		if err := weirtest.MustWrite(weirtest.WriteV1(c.url, "abort", req)); err != nil {
			t.Fatal(err)
		}
	}
	got := c.seriesTopic(t, "abort", 2*requests)
	if refused.Load() == 0 {
		t.Fatal("no produce request was refused: the test did not exercise an abort")
	}
	// Give a wrongly duplicated or late record time to show up.
	time.Sleep(time.Second)
	got = c.seriesTopic(t, "abort", 2*requests)
	if len(got) != 2*requests {
		t.Fatalf("series topic holds %d samples, want exactly %d", len(got), 2*requests)
	}
	if v := c.metric(t, "weir_stream_transactions_total", map[string]string{"result": "aborted"}); v == 0 {
		t.Fatal("no aborted transaction counted")
	}
}

// TestBacklogOfOldRecords feeds the stage raw records received an hour
// ago, as a worker that is far behind (or was down) sees them: they must
// go through like any other, not time out because franz-go measures
// delivery timeouts from the record's timestamp.
func TestBacklogOfOldRecords(t *testing.T) {
	c := startCluster(t, map[string]string{"default.yaml": "{}\n"})
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.cfg.SeedBrokers()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := kafka.NewTopics(cl, c.cfg.Kafka).EnsureTenant(ctx, "late"); err != nil {
		t.Fatal(err)
	}
	received := time.Now().Add(-time.Hour)
	var builder record.Builder
	var series []prw.TimeSeries
	for i := 0; i < 50; i++ {
		series = append(series, prw.TimeSeries{
			Labels:  []prw.Label{{Name: "__name__", Value: "backlog"}, {Name: "i", Value: fmt.Sprint(i)}},
			Samples: []prw.Sample{{Value: float64(i), Timestamp: received.UnixMilli()}},
		})
	}
	enc, err := builder.Build("late", series, c.cfg.Kafka.Partitions, c.cfg.Kafka.MaxRecordBytes)
	if err != nil {
		t.Fatal(err)
	}
	hs := record.Headers(record.Meta{Tenant: "late", Source: record.SourcePRW1, ReceivedAt: received})
	for _, e := range enc {
		r := &kgo.Record{Topic: kafka.Topic("weir", "late", kafka.KindRaw), Partition: e.Partition, Value: e.Value, Headers: hs, Timestamp: received}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.seriesTopic(t, "late", 50); len(got) != 50 {
		t.Fatalf("%d samples in the series topic, want 50", len(got))
	}
}

// TestFencedWorkerStartsOver fences the running stage's transactional
// producer from outside, as a broker that lost its producer state or a
// second worker with the same instance ID does. The stage must start a
// new session on its own, not stop, and every sample written before and
// after must reach the series topic exactly once.
func TestFencedWorkerStartsOver(t *testing.T) {
	c := startCluster(t, map[string]string{"default.yaml": "{}\n"})
	now := time.Now().UnixMilli()
	write := func(i int) {
		t.Helper()
		req := request(now+int64(i)*1000, lbls("__name__", "fence_test", "i", fmt.Sprint(i)))
		if err := weirtest.MustWrite(weirtest.WriteV1(c.url, "fence", req)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		write(i)
	}
	c.seriesTopic(t, "fence", 3)

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.cfg.SeedBrokers()...), kgo.TransactionalID(stream.TransactionalID(c.cfg.Stream.InstanceID)))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cl.ProducerID(context.Background()); err != nil {
		t.Fatal(err)
	}
	cl.Close()

	for i := 3; i < 6; i++ {
		write(i)
	}
	c.seriesTopic(t, "fence", 6)
	time.Sleep(time.Second)
	if got := c.seriesTopic(t, "fence", 6); len(got) != 6 {
		t.Fatalf("series topic holds %d samples, want exactly 6", len(got))
	}
	if v := c.metric(t, "weir_stream_transactions_total", map[string]string{"result": "failed"}); v == 0 {
		t.Fatal("no transaction failed: the fence did not reach the stage")
	}
}

// TestUnconfirmedCommitStartsNewSession: the broker answers one EndTxn
// with an error that is neither retriable nor a fence, as when it stays
// away longer than the client retries. The worker must not stop: it
// starts a new session, which aborts the open transaction and reads the
// raw topic again from the committed offsets, so every sample still
// reaches the series topic exactly once.
func TestUnconfirmedCommitStartsNewSession(t *testing.T) {
	c := startCluster(t, map[string]string{"default.yaml": "{}\n"})
	now := time.Now().UnixMilli()
	write := func(i int) {
		t.Helper()
		req := request(now+int64(i)*1000, lbls("__name__", "end_txn_test", "i", fmt.Sprint(i)))
		if err := weirtest.MustWrite(weirtest.WriteV1(c.url, "endtxn", req)); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	c.seriesTopic(t, "endtxn", 1)

	var refused atomic.Bool
	c.broker.Cluster().ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		end := req.(*kmsg.EndTxnRequest)
		if !end.Commit {
			c.broker.Cluster().KeepControl()
			return nil, nil, false
		}
		refused.Store(true)
		resp := end.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.InvalidTxnState.Code
		return resp, nil, true
	})
	for i := 1; i < 4; i++ {
		write(i)
	}
	c.seriesTopic(t, "endtxn", 4)
	time.Sleep(time.Second)
	if got := c.seriesTopic(t, "endtxn", 4); len(got) != 4 {
		t.Fatalf("series topic holds %d samples, want exactly 4", len(got))
	}
	if !refused.Load() {
		t.Fatal("no commit was refused")
	}
	if v := c.metric(t, "weir_stream_transactions_total", map[string]string{"result": "failed"}); v == 0 {
		t.Fatal("no transaction failed: the refusal did not reach the stage")
	}
}

// TestSeriesOrderAcrossPassThrough writes, in one produce call so that
// one poll takes both, two raw records of one partition holding series X:
// the first also holds a series the pipeline drops (so it is re-encoded),
// the second only series that pass unchanged (so it could go out as it
// is). X's samples must reach the series topic in the order they were
// written, or the sink, with no out-of-order window, drops the older.
func TestSeriesOrderAcrossPassThrough(t *testing.T) {
	c := startCluster(t, map[string]string{"default.yaml": "relabel:\n  - source_labels: [__name__]\n    regex: drop_me\n    action: drop\n"})
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.cfg.SeedBrokers()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := kafka.NewTopics(cl, c.cfg.Kafka).EnsureTenant(ctx, "order"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	series := func(name, v string, ts int64) prw.TimeSeries {
		return prw.TimeSeries{Labels: []prw.Label{{Name: "__name__", Value: name}, {Name: "v", Value: v}}, Samples: []prw.Sample{{Value: 1, Timestamp: ts}}}
	}
	var builder record.Builder
	// One record of one partition from the given series, or nil when they
	// do not all hash to one partition.
	one := func(ss ...prw.TimeSeries) *record.Encoded {
		enc, err := builder.Build("order", ss, c.cfg.Kafka.Partitions, c.cfg.Kafka.MaxRecordBytes)
		if err != nil {
			t.Fatal(err)
		}
		if len(enc) != 1 {
			return nil
		}
		e := enc[0]
		e.Value = bytes.Clone(e.Value)
		return &e
	}
	t1, t2 := now.Add(-2*time.Second).UnixMilli(), now.Add(-time.Second).UnixMilli()
	var first, second *record.Encoded
	for i := 0; first == nil || second == nil; i++ {
		if first == nil {
			first = one(series("order_x", "x", t1), series("drop_me", fmt.Sprint(i), t1))
		}
		if second == nil {
			second = one(series("order_x", "x", t2), series("order_z", fmt.Sprint(i), t2))
		}
		if first != nil && second != nil && first.Partition != second.Partition {
			second = nil
		}
	}
	hs := record.Headers(record.Meta{Tenant: "order", Source: record.SourcePRW1, ReceivedAt: now})
	topic := kafka.Topic("weir", "order", kafka.KindRaw)
	if err := cl.ProduceSync(ctx,
		&kgo.Record{Topic: topic, Partition: first.Partition, Value: first.Value, Headers: hs, Timestamp: now},
		&kgo.Record{Topic: topic, Partition: second.Partition, Value: second.Value, Headers: hs, Timestamp: now},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var xs []int64
	for _, s := range c.seriesTopic(t, "order", 3) {
		if s.Labels["__name__"] == "order_x" {
			xs = append(xs, s.Timestamp)
		}
	}
	if len(xs) != 2 || xs[0] != t1 || xs[1] != t2 {
		t.Fatalf("order_x in the series topic at %v, want [%d %d] in that order", xs, t1, t2)
	}
}
