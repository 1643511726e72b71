package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/config"
)

// Kind is the stage a topic feeds.
type Kind string

const (
	// KindRaw holds what the edge accepted: weir.<tenant>.raw.
	KindRaw Kind = "raw"
	// KindSeries holds what the stream stage admitted: weir.<tenant>.series.
	KindSeries Kind = "series"
	// KindRollup holds the rows of closed rollup windows, partitioned like
	// the series topic they were computed from: weir.<tenant>.rollup.
	KindRollup Kind = "rollup"
)

// Topic names the topic of one tenant and kind.
func Topic(prefix, tenant string, kind Kind) string {
	return prefix + "." + tenant + "." + string(kind)
}

// TopicRegex matches every tenant's topic of one kind, for regex
// subscriptions.
func TopicRegex(prefix string, kind Kind) string {
	return "^" + strings.ReplaceAll(prefix, ".", `\.`) + `\.[A-Za-z0-9_-]+\.` + string(kind) + "$"
}

// ParseTopic returns the tenant and kind of a weir topic.
func ParseTopic(prefix, topic string) (tenant string, kind Kind, ok bool) {
	rest, found := strings.CutPrefix(topic, prefix+".")
	if !found {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 {
		return "", "", false
	}
	return rest[:i], Kind(rest[i+1:]), true
}

// TopicMaxMessageBytes is the max.message.bytes weir gives its topics: the
// largest record plus room for batch and record overhead.
func TopicMaxMessageBytes(maxRecordBytes int) int { return maxRecordBytes + 64<<10 }

// Topics creates tenants' topics on first use and remembers which exist, so
// the common case costs a map lookup.
type Topics struct {
	adm    *kadm.Client
	cl     *kgo.Client
	cfg    config.KafkaConfig
	mu     sync.Mutex
	known  map[string]struct{}
	create sync.Mutex
}

// NewTopics uses cl (which it does not own) to create topics.
func NewTopics(cl *kgo.Client, cfg config.KafkaConfig) *Topics {
	return &Topics{adm: kadm.NewClient(cl), cl: cl, cfg: cfg, known: map[string]struct{}{}}
}

// EnsureTenant makes sure the topics of every kind exist for tenant.
func (t *Topics) EnsureTenant(ctx context.Context, tenant string) error {
	raw := Topic(t.cfg.TopicPrefix, tenant, KindRaw)
	series := Topic(t.cfg.TopicPrefix, tenant, KindSeries)
	rollup := Topic(t.cfg.TopicPrefix, tenant, KindRollup)
	t.mu.Lock()
	_, ok1 := t.known[raw]
	_, ok2 := t.known[series]
	_, ok3 := t.known[rollup]
	t.mu.Unlock()
	if ok1 && ok2 && ok3 {
		return nil
	}
	return t.Ensure(ctx, raw, series, rollup)
}

// Ensure creates the topics that do not exist yet.
func (t *Topics) Ensure(ctx context.Context, topics ...string) error {
	// One creator at a time: concurrent first requests of a new tenant
	// then issue one CreateTopics, not one each.
	t.create.Lock()
	defer t.create.Unlock()
	var missing []string
	t.mu.Lock()
	for _, tp := range topics {
		if _, ok := t.known[tp]; !ok {
			missing = append(missing, tp)
		}
	}
	t.mu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	configs := map[string]*string{
		"max.message.bytes": ptr(strconv.Itoa(TopicMaxMessageBytes(t.cfg.MaxRecordBytes))),
		"retention.ms":      ptr(strconv.FormatInt(t.cfg.Retention.Milliseconds(), 10)),
		"retention.bytes":   ptr(strconv.FormatInt(t.cfg.RetentionBytes, 10)),
		// The record's timestamp is the receive time the edge set; keep it
		// so ListOffsets by time finds what arrived when.
		"message.timestamp.type": ptr("CreateTime"),
	}
	resp, err := t.adm.CreateTopics(ctx, int32(t.cfg.Partitions), int16(t.cfg.ReplicationFactor), configs, missing...)
	if err != nil {
		return fmt.Errorf("creating topics %v: %w", missing, err)
	}
	var errs []error
	var created bool
	for _, r := range resp.Sorted() {
		switch {
		case r.Err == nil:
			created = true
		case errors.Is(r.Err, kerr.TopicAlreadyExists):
		default:
			errs = append(errs, fmt.Errorf("creating topic %s: %w", r.Topic, r.Err))
			continue
		}
		t.mu.Lock()
		t.known[r.Topic] = struct{}{}
		t.mu.Unlock()
	}
	if created {
		// Producers learn of the new partitions now rather than at the
		// next metadata refresh.
		t.cl.ForceMetadataRefresh()
	}
	return errors.Join(errs...)
}

// Forget drops the memory of topics, for when they might have been deleted.
func (t *Topics) Forget() {
	t.mu.Lock()
	t.known = map[string]struct{}{}
	t.mu.Unlock()
}

// WaitReady blocks until the brokers answer metadata requests or ctx ends.
func WaitReady(ctx context.Context, cl *kgo.Client) error {
	adm := kadm.NewClient(cl)
	for {
		_, err := adm.BrokerMetadata(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("Kafka brokers unreachable: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func ptr[T any](v T) *T { return &v }
