package weirtest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
)

// TopicSample is one float or histogram sample read back from a weir
// topic, with the series it belongs to.
type TopicSample struct {
	Series    string // sorted selector of the labels
	Labels    map[string]string
	Timestamp int64
	Value     float64
	Partition int32
	Offset    int64
}

// ReadTopic reads every committed record of topic (read_committed, as the
// sinks do) up to its last stable offset and returns their samples in
// partition and offset order.
func ReadTopic(ctx context.Context, brokers []string, topic string) ([]TopicSample, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
	cl.Close()
	if err != nil {
		return nil, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	want := map[int32]int64{}
	offsets := map[string]map[int32]kgo.Offset{topic: {}}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			want[o.Partition] = o.Offset
			offsets[topic][o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	if len(want) == 0 {
		return nil, nil
	}
	cl, err = kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(offsets),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var out []TopicSample
	var req prw.Request
	for len(want) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading %s: %w (partitions not read to the end: %v)", topic, err, want)
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, ferr
		}
		var derr error
		fetches.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			if r.Offset+1 >= end {
				delete(want, r.Partition)
			}
			if r.Attrs.IsControl() {
				return
			}
			meta, err := record.ParseHeaders(r.Headers)
			if err == nil {
				err = record.Decode(meta, r.Value, &req)
			}
			if err != nil {
				derr = fmt.Errorf("%s/%d@%d: %w", topic, r.Partition, r.Offset, err)
				return
			}
			for _, ts := range req.Series {
				ls := map[string]string{}
				for _, l := range ts.Labels {
					ls[l.Name] = l.Value
				}
				key := LabelsKey(ls)
				for _, s := range ts.Samples {
					out = append(out, TopicSample{Series: key, Labels: ls, Timestamp: s.Timestamp, Value: s.Value, Partition: r.Partition, Offset: r.Offset})
				}
				for _, h := range ts.Histograms {
					out = append(out, TopicSample{Series: key, Labels: ls, Timestamp: h.Timestamp, Partition: r.Partition, Offset: r.Offset})
				}
			}
		})
		if derr != nil {
			return nil, derr
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Partition != out[j].Partition {
			return out[i].Partition < out[j].Partition
		}
		return out[i].Offset < out[j].Offset
	})
	return out, nil
}

// SeriesOf returns the distinct series of samples whose metric is name
// ("" for all).
func SeriesOf(samples []TopicSample, name string) map[string]int {
	out := map[string]int{}
	for _, s := range samples {
		if name == "" || s.Labels["__name__"] == name {
			out[s.Series]++
		}
	}
	return out
}

// HasLabel reports whether any sample's series has label name.
func HasLabel(samples []TopicSample, name string) bool {
	for _, s := range samples {
		if _, ok := s.Labels[name]; ok {
			return true
		}
	}
	return false
}

// DescribeSeries lists a few series, for failure messages.
func DescribeSeries(series map[string]int, n int) string {
	keys := make([]string, 0, len(series))
	for k := range series {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > n {
		keys = append(keys[:n], "…")
	}
	return strings.Join(keys, "\n")
}
