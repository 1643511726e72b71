package backfill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
)

// Options configure Produce.
type Options struct {
	Tenant string
	// Topic is the tenant's raw topic.
	Topic string
	// Source is the weir-source header of the records.
	Source         string
	Partitions     int
	MaxRecordBytes int
	// MaxAge refuses samples older than Now-MaxAge; 0 accepts any age.
	MaxAge time.Duration
	Now    time.Time
	// Progress, when set, is called about once a second and at the end.
	Progress func(Stats)
}

// Stats counts what Produce wrote.
type Stats struct {
	Series, Samples, Histograms int64
	Records, Bytes              int64
	MinTime, MaxTime            int64
	Elapsed                     time.Duration
}

// TooOldError refuses a backfill that reaches further back than the
// tenant may.
type TooOldError struct {
	Series string
	T      time.Time
	MaxAge time.Duration
}

func (e *TooOldError) Error() string {
	return fmt.Sprintf("sample of %s at %s is older than the backfill bound of %s; raise the tenant's max_backfill_age or drop older data", e.Series, e.T.UTC().Format(time.RFC3339), e.MaxAge)
}

// Produce reads every batch of r, validates it like the edge does, and
// writes it to the tenant's raw topic, waiting for Kafka to acknowledge
// each batch before reading the next (so memory stays bounded). On error
// nothing later is written; what was acknowledged stays.
func Produce(ctx context.Context, cl *kgo.Client, r Reader, o Options) (Stats, error) {
	start := time.Now()
	var (
		st      Stats
		builder record.Builder
		last    time.Time
	)
	st.MinTime, st.MaxTime = 1<<62, -1<<62
	oldest := int64(-1 << 62)
	if o.MaxAge > 0 {
		oldest = o.Now.Add(-o.MaxAge).UnixMilli()
	}
	headers := record.Headers(record.Meta{Tenant: o.Tenant, Source: o.Source, ReceivedAt: o.Now})
	for {
		batch, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return st, err
		}
		for i := range batch {
			ts := &batch[i]
			if err := ts.Normalize(); err != nil {
				return st, err
			}
			for _, s := range ts.Samples {
				if s.Timestamp < oldest {
					return st, &TooOldError{Series: prw.Selector(ts.Labels), T: time.UnixMilli(s.Timestamp), MaxAge: o.MaxAge}
				}
				st.MinTime, st.MaxTime = min(st.MinTime, s.Timestamp), max(st.MaxTime, s.Timestamp)
			}
			for _, h := range ts.Histograms {
				if h.Timestamp < oldest {
					return st, &TooOldError{Series: prw.Selector(ts.Labels), T: time.UnixMilli(h.Timestamp), MaxAge: o.MaxAge}
				}
				st.MinTime, st.MaxTime = min(st.MinTime, h.Timestamp), max(st.MaxTime, h.Timestamp)
			}
			st.Series++
			st.Samples += int64(len(ts.Samples))
			st.Histograms += int64(len(ts.Histograms))
		}
		encoded, err := builder.Build(o.Tenant, batch, o.Partitions, o.MaxRecordBytes)
		if err != nil {
			return st, err
		}
		if err := produceAll(ctx, cl, o, headers, encoded); err != nil {
			return st, err
		}
		for _, e := range encoded {
			st.Records++
			st.Bytes += int64(len(e.Value))
		}
		if o.Progress != nil && time.Since(last) >= time.Second {
			st.Elapsed = time.Since(start)
			o.Progress(st)
			last = time.Now()
		}
	}
	st.Elapsed = time.Since(start)
	if o.Progress != nil {
		o.Progress(st)
	}
	return st, nil
}

func produceAll(ctx context.Context, cl *kgo.Client, o Options, headers []kgo.RecordHeader, encoded []record.Encoded) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	wg.Add(len(encoded))
	for _, e := range encoded {
		// The record time is when the data entered weir, as for live
		// data; replay by time finds a backfill by when it ran.
		cl.Produce(ctx, &kgo.Record{Topic: o.Topic, Partition: e.Partition, Value: e.Value, Headers: headers, Timestamp: o.Now}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("writing to %s: %w", o.Topic, firstErr)
	}
	return nil
}
