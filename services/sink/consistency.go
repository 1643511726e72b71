package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/kafka"
)

// HeaderReadConsistency asks a query to wait for the sink: "strong" waits
// until the sink has consumed everything the tenant wrote before the query
// arrived; anything else (or nothing) reads what is there.
const HeaderReadConsistency = "X-Read-Consistency"

// positions are the next offsets the sink will consume, per topic and
// partition. Waiters are woken on every publish.
type positions struct {
	mu      sync.Mutex
	next    map[string]map[int32]int64
	changed chan struct{}
}

func (p *positions) advance(topic string, partition int32, next int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next == nil {
		p.next = map[string]map[int32]int64{}
	}
	parts := p.next[topic]
	if parts == nil {
		parts = map[int32]int64{}
		p.next[topic] = parts
	}
	parts[partition] = next
}

// publish wakes the waiters after a poll was processed.
func (p *positions) publish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
}

// wait returns a channel closed at the next publish.
func (p *positions) wait() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.changed == nil {
		p.changed = make(chan struct{})
	}
	return p.changed
}

func (p *positions) get(topic string, partition int32) (int64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	off, ok := p.next[topic][partition]
	return off, ok
}

func (p *positions) snapshot() map[string]map[int32]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]map[int32]int64, len(p.next))
	for t, parts := range p.next {
		m := make(map[int32]int64, len(parts))
		for k, v := range parts {
			m[k] = v
		}
		out[t] = m
	}
	return out
}

func (p *positions) forget(parts map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for topic, ps := range parts {
		for _, n := range ps {
			delete(p.next[topic], n)
		}
	}
}

func (s *Sink) setClient(cl *kgo.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.client = cl
}

func (s *Sink) kafkaClient() *kgo.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client
}

// readConsistency serves strong reads: before the query runs, it waits
// (at most sink.strong_read_timeout) until the stream stage committed
// everything in the tenant's raw topic at the time the query arrived and
// this sink consumed everything the stream had produced by then.
func (s *Sink) readConsistency(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get(HeaderReadConsistency), "strong") {
			next.ServeHTTP(w, r)
			return
		}
		ten, err := s.tenantFromRequest(r)
		if err != nil {
			// The API answers the tenant error in its own format.
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Sink.StrongReadTimeout)
		defer cancel()
		err = s.waitConsumed(ctx, ten)
		s.metrics.strongReadWait.Observe(time.Since(start).Seconds())
		if err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{
				"status":    "error",
				"errorType": "unavailable",
				"error":     fmt.Sprintf("strong read consistency not reached within sink.strong_read_timeout (%s): %v", s.cfg.Sink.StrongReadTimeout, err),
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// waitConsumed blocks until everything tenant wrote before the call has
// reached this sink's shards.
func (s *Sink) waitConsumed(ctx context.Context, ten string) error {
	cl := s.kafkaClient()
	if cl == nil {
		return errors.New("sink is not consuming yet")
	}
	adm := kadm.NewClient(cl)
	prefix := s.cfg.Kafka.TopicPrefix
	raw := kafka.Topic(prefix, ten, kafka.KindRaw)
	series := kafka.Topic(prefix, ten, kafka.KindSeries)

	rawEnds, err := endOffsets(ctx, adm, raw)
	if err != nil || len(rawEnds) == 0 {
		return err
	}
	// 1. The stream stage has committed its transactions up to rawEnds.
	for {
		committed, err := adm.FetchOffsets(ctx, s.cfg.Stream.GroupID)
		// A group that never committed does not exist yet: it is behind.
		if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
			return fmt.Errorf("reading the stream stage's offsets: %w", err)
		}
		behind := err != nil
		for p, end := range rawEnds {
			if behind {
				break
			}
			if o, ok := committed.Lookup(raw, p); !ok || o.At < end {
				behind = true
				break
			}
		}
		if !behind {
			break
		}
		select {
		case <-ctx.Done():
			return errors.New("the stream stage has not processed the tenant's latest writes")
		case <-time.After(20 * time.Millisecond):
		}
	}
	// 2. This sink has consumed the series topic up to its end offsets.
	seriesEnds, err := endOffsets(ctx, adm, series)
	if err != nil {
		return err
	}
	for {
		changed := s.positions.wait()
		behind := false
		for p, end := range seriesEnds {
			if pos, ok := s.positions.get(series, p); !ok || pos < end {
				behind = true
				break
			}
		}
		if !behind {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("the sink has not consumed the tenant's latest series records")
		case <-changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// endOffsets lists the end offsets of a topic's non-empty partitions; a
// topic that does not exist has none.
func endOffsets(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	listed, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	var errs []error
	listed.Each(func(o kadm.ListedOffset) {
		switch {
		case errors.Is(o.Err, kerr.UnknownTopicOrPartition):
		case o.Err != nil:
			errs = append(errs, o.Err)
		case o.Offset > 0:
			out[o.Partition] = o.Offset
		}
	})
	return out, errors.Join(errs...)
}
