package stream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/budget"
	"github.com/weir-metrics/weir/pkg/cardinality"
	"github.com/weir-metrics/weir/pkg/kafka"
)

// KindLedger is the topic kind of a tenant's series ledger:
// weir.<tenant>.ledger, one partition per raw partition, written in the
// same transactions as the series topic. It is how budgets survive
// restarts and rebalances.
const KindLedger kafka.Kind = "ledger"

// ownership is the set of raw partitions this worker owns, by tenant.
// The poll loop changes it; the budget and the explorer read it.
type ownership struct {
	mu    sync.RWMutex
	parts map[string]map[int32]bool
}

func (o *ownership) set(tenant string, p int32, owned bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.parts == nil {
		o.parts = map[string]map[int32]bool{}
	}
	if !owned {
		delete(o.parts[tenant], p)
		return
	}
	if o.parts[tenant] == nil {
		o.parts[tenant] = map[int32]bool{}
	}
	o.parts[tenant][p] = true
}

func (o *ownership) owns(tenant string, p int32) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.parts[tenant][p]
}

func (o *ownership) count(tenant string) int {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return len(o.parts[tenant])
}

func (o *ownership) all() map[string][]int32 {
	o.mu.RLock()
	defer o.mu.RUnlock()
	out := map[string][]int32{}
	for t, ps := range o.parts {
		for p := range ps {
			out[t] = append(out[t], p)
		}
	}
	return out
}

// remoteUsage counts what other workers published for the partitions
// this one does not own (cardinality.Remote).
type remoteUsage struct {
	view  *budget.View
	owned *ownership
}

func (r remoteUsage) Active(tenant string) int {
	u := r.view.Tenant(tenant)
	if u == nil {
		return 0
	}
	n := 0
	for p := 0; p < u.Partitions; p++ {
		if s := u.Partition(int32(p)); s != nil && !r.owned.owns(tenant, int32(p)) {
			n += s.Active
		}
	}
	return n
}

func (r remoteUsage) MetricActive(tenant, metric string) int {
	u := r.view.Tenant(tenant)
	if u == nil {
		return 0
	}
	n := 0
	for p := 0; p < u.Partitions; p++ {
		s := u.Partition(int32(p))
		if s == nil || r.owned.owns(tenant, int32(p)) {
			continue
		}
		for _, m := range s.Metrics {
			if m.Name == metric {
				n += m.Active
				break
			}
		}
	}
	return n
}

// stateTopics creates the ledger and state topics on first use.
type stateTopics struct {
	adm         *kadm.Client
	partitions  int
	replication int16
	retention   time.Duration // the active-series window
	mu          sync.Mutex
	known       map[string]bool
}

func (t *stateTopics) ensure(ctx context.Context, topic string, partitions int, configs map[string]*string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.known[topic] {
		return nil
	}
	_, err := t.adm.CreateTopic(ctx, int32(partitions), t.replication, configs, topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	if t.known == nil {
		t.known = map[string]bool{}
	}
	t.known[topic] = true
	return nil
}

// ensureLedger creates a tenant's ledger topic: as many partitions as the
// raw topic, kept three windows (a replay reads one window and a bit).
func (t *stateTopics) ensureLedger(ctx context.Context, topic string) error {
	return t.ensure(ctx, topic, t.partitions, map[string]*string{
		"retention.ms":   ptr(strconv.FormatInt((3 * t.retention).Milliseconds(), 10)),
		"cleanup.policy": ptr("delete"),
	})
}

// ensureState creates the budget state topic: one partition, compacted
// by tenant/partition key (and bounded in time where compaction is not
// available, as on the embedded broker).
func (t *stateTopics) ensureState(ctx context.Context, topic string) error {
	return t.ensure(ctx, topic, 1, map[string]*string{
		"cleanup.policy": ptr("compact,delete"),
		"retention.ms":   ptr(strconv.FormatInt(time.Hour.Milliseconds(), 10)),
	})
}

func ptr[T any](v T) *T { return &v }

// replayLedger rebuilds one partition's budget state from its ledger:
// the entries of the last window, up to the last stable offset, so
// exactly what committed transactions admitted.
func replayLedger(ctx context.Context, opts []kgo.Opt, adm *kadm.Client, topic string, partition int32, since time.Time, apply func(at time.Time, entries []cardinality.LedgerEntry) error) (int, error) {
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	end, ok := ends.Lookup(topic, partition)
	if !ok || errors.Is(end.Err, kerr.UnknownTopicOrPartition) {
		return 0, nil // no ledger yet: nothing was ever admitted
	}
	if end.Err != nil {
		return 0, fmt.Errorf("listing offsets of %s: %w", topic, end.Err)
	}
	starts, err := adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topic)
	if err != nil {
		return 0, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	start, ok := starts.Lookup(topic, partition)
	if !ok || start.Err != nil || start.Offset >= end.Offset {
		return 0, nil
	}
	cl, err := kgo.NewClient(append(opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(start.Offset)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Markers come through so the replay knows it reached the end
		// even when the last offsets are a commit marker.
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	n := 0
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return n, fmt.Errorf("reading %s: %w", topic, ferr)
		}
		done := false
		var aerr error
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Offset+1 >= end.Offset {
				done = true
			}
			if r.Attrs.IsControl() || aerr != nil || r.Offset >= end.Offset {
				return
			}
			entries, err := cardinality.DecodeLedger(r.Value)
			if err != nil {
				aerr = fmt.Errorf("%s partition %d offset %d: %w", topic, partition, r.Offset, err)
				return
			}
			n += len(entries)
			aerr = apply(r.Timestamp, entries)
		})
		if aerr != nil {
			return n, aerr
		}
		if done {
			return n, nil
		}
	}
}
