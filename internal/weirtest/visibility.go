package weirtest

import (
	"context"
	"fmt"
	"hash/crc32"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TopicWatch reads a topic as a read_committed consumer does while a test
// runs, remembering every record it saw and every offset it passed over
// (aborted records, markers). Compared with a read at the end, it shows
// whether what consumers saw stayed what the topic holds: a record that
// disappears, changes, or becomes visible after readers had passed it
// breaks every exactly-once argument downstream of the broker.
type TopicWatch struct {
	topic  string
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	seen    map[int32]map[int64]uint32 // partition → offset → checksum
	control map[int32]map[int64]bool   // markers seen
	next    map[int32]int64            // next offset per partition
	resets  int                        // times a position went backwards
	changed []string                   // offsets seen twice with different contents
}

// WatchTopic starts reading topic from its start; Stop ends it.
func WatchTopic(t testing.TB, kafkaAddr, topic string) *TopicWatch {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), kgo.MetadataMinAge(time.Second), kgo.MetadataMaxAge(time.Second), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &TopicWatch{topic: topic, cl: cl, cancel: cancel, done: make(chan struct{}),
		seen: map[int32]map[int64]uint32{}, control: map[int32]map[int64]bool{}, next: map[int32]int64{}}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			w.observe(cl.PollFetches(ctx))
		}
	}()
	t.Cleanup(w.Stop)
	return w
}

func recordSum(r *kgo.Record) uint32 {
	h := crc32.NewIEEE()
	h.Write(r.Value)
	for _, hd := range r.Headers {
		h.Write([]byte(hd.Key))
		h.Write(hd.Value)
	}
	return h.Sum32()
}

func (w *TopicWatch) observe(fs kgo.Fetches) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fs.EachRecord(func(r *kgo.Record) {
		p := r.Partition
		if next, ok := w.next[p]; ok && r.Offset < next {
			w.resets++
		}
		w.next[p] = r.Offset + 1
		if r.Attrs.IsControl() {
			if w.control[p] == nil {
				w.control[p] = map[int64]bool{}
			}
			w.control[p][r.Offset] = true
			return
		}
		if w.seen[p] == nil {
			w.seen[p] = map[int64]uint32{}
		}
		sum := recordSum(r)
		if old, ok := w.seen[p][r.Offset]; ok && old != sum {
			w.changed = append(w.changed, fmt.Sprintf("%s/%d@%d", r.Topic, p, r.Offset))
		}
		w.seen[p][r.Offset] = sum
	})
}

// Stop ends the watch.
func (w *TopicWatch) Stop() {
	w.cancel()
	<-w.done
	w.cl.Close()
}

// Check stops the watch, reads the topic again from its start up to the
// last stable offsets and returns, in words, every record whose
// visibility or contents differ from what the watch saw while the test
// ran (empty when none).
func (w *TopicWatch) Check(t testing.TB, kafkaAddr string) []string {
	t.Helper()
	w.Stop()
	final := map[int32]map[int64]uint32{}
	ReadCommitted(t, kafkaAddr, w.topic, func(r *kgo.Record) {
		if r.Attrs.IsControl() {
			return
		}
		if final[r.Partition] == nil {
			final[r.Partition] = map[int64]uint32{}
		}
		final[r.Partition][r.Offset] = recordSum(r)
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	out = append(out, w.changed...)
	if w.resets > 0 {
		out = append(out, fmt.Sprintf("the watch's position went backwards %d times", w.resets))
	}
	for p, offs := range w.seen {
		for off, sum := range offs {
			got, ok := final[p][off]
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("%s/%d@%d was read while the test ran and is not visible now", w.topic, p, off))
			case got != sum:
				out = append(out, fmt.Sprintf("%s/%d@%d holds other contents now", w.topic, p, off))
			}
		}
	}
	for p, offs := range final {
		for off := range offs {
			if _, ok := w.seen[p][off]; !ok && off < w.next[p] {
				out = append(out, fmt.Sprintf("%s/%d@%d is visible now but was passed over while the test ran (control: %v)", w.topic, p, off, w.control[p][off]))
			}
		}
	}
	if len(out) > 40 {
		out = append(out[:40], fmt.Sprintf("… and %d more", len(out)-40))
	}
	return out
}
