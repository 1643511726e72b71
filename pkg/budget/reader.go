package budget

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ReaderLookback is how far back a starting Reader reads the state topic.
// Stream workers republish every partition at least every
// PublishHeartbeat, so this finds every live partition without reading
// the topic's whole history (the embedded broker does not compact).
const ReaderLookback = 3 * PublishHeartbeat

// PublishHeartbeat is the longest a stream worker goes without publishing
// a partition's state, changed or not.
const PublishHeartbeat = time.Minute

// Reader follows the state topic into a View.
type Reader struct {
	view  *View
	log   *slog.Logger
	opts  []kgo.Opt
	topic string

	mu     sync.Mutex
	caught bool
}

// NewReader reads topic with a client built from opts (brokers,
// security); it connects in Run.
func NewReader(opts []kgo.Opt, topic string, log *slog.Logger) *Reader {
	return &Reader{view: NewView(), log: log, opts: opts, topic: topic}
}

// View is the view the reader keeps current.
func (r *Reader) View() *View { return r.view }

// Run consumes until ctx is done. Records of aborted transactions are
// never seen (read committed).
func (r *Reader) Run(ctx context.Context) {
	start := time.Now().Add(-ReaderLookback).UnixMilli()
	cl, err := kgo.NewClient(append(r.opts,
		kgo.ConsumeTopics(r.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(start)),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(250*time.Millisecond),
		kgo.MetadataMinAge(time.Second),
	)...)
	if err != nil {
		r.log.Error("cannot follow series budget state; the edge will not refuse requests over budget", "err", err)
		return
	}
	defer cl.Close()
	expire := time.NewTicker(10 * time.Second)
	defer expire.Stop()
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		fetches.EachError(func(t string, p int32, err error) {
			r.log.Debug("fetching series budget state", "topic", t, "partition", p, "err", err)
		})
		fetches.EachRecord(func(rec *kgo.Record) {
			s, err := UnmarshalState(rec.Value)
			if err != nil {
				r.log.Warn("skipping unreadable series budget state", "key", string(rec.Key), "err", err)
				return
			}
			r.view.Apply(s)
		})
		select {
		case <-expire.C:
			// A partition nobody published for a whole window has no
			// active series left.
			r.view.Expire(time.Now())
		default:
		}
	}
}
