package stream_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weir-metrics/weir/internal/weirtest"
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
