package kafka

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// LagTracker follows how far a consumer is behind the end of each
// partition it fetched, from the high watermarks fetch responses carry,
// and publishes the sum per tenant.
type LagTracker struct {
	prefix string
	gauge  *prometheus.GaugeVec
	mu     sync.Mutex
	lag    map[string]map[int32]int64 // topic → partition → records behind
}

// NewLagTracker registers the lag gauge of a consuming stage.
func NewLagTracker(reg prometheus.Registerer, stage, prefix string) *LagTracker {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name:        "weir_kafka_consumer_lag_records",
		Help:        "Records in Kafka not yet processed by this consumer, summed over the tenant's partitions it owns.",
		ConstLabels: prometheus.Labels{"stage": stage},
	}, []string{"tenant"})
	reg.MustRegister(g)
	return &LagTracker{prefix: prefix, gauge: g, lag: map[string]map[int32]int64{}}
}

// Observe records the lag after processing fetches.
func (t *LagTracker) Observe(fetches kgo.Fetches) {
	t.mu.Lock()
	defer t.mu.Unlock()
	changed := map[string]struct{}{}
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 {
			return
		}
		last := p.Records[len(p.Records)-1].Offset
		parts := t.lag[p.Topic]
		if parts == nil {
			parts = map[int32]int64{}
			t.lag[p.Topic] = parts
		}
		parts[p.Partition] = max(0, p.HighWatermark-last-1)
		changed[p.Topic] = struct{}{}
	})
	for topic := range changed {
		t.publish(topic)
	}
}

// Revoke forgets partitions this consumer no longer owns.
func (t *LagTracker) Revoke(revoked map[string][]int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for topic, ps := range revoked {
		for _, p := range ps {
			delete(t.lag[topic], p)
		}
		t.publish(topic)
	}
}

// Total is the lag over every partition owned.
func (t *LagTracker) Total() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var sum int64
	for _, parts := range t.lag {
		for _, l := range parts {
			sum += l
		}
	}
	return sum
}

func (t *LagTracker) publish(topic string) {
	tenant, _, ok := ParseTopic(t.prefix, topic)
	if !ok {
		return
	}
	var sum int64
	for _, l := range t.lag[topic] {
		sum += l
	}
	t.gauge.WithLabelValues(tenant).Set(float64(sum))
}

// RegisterProducerGauges exposes how much a producing client holds that
// Kafka has not acknowledged yet.
func RegisterProducerGauges(reg prometheus.Registerer, stage string, cl *kgo.Client) {
	RegisterProducerGaugesOf(reg, stage, func() *kgo.Client { return cl })
}

// RegisterProducerGaugesOf is RegisterProducerGauges for a stage whose
// client changes over its life: client returns the current one, or nil.
func RegisterProducerGaugesOf(reg prometheus.Registerer, stage string, client func() *kgo.Client) {
	gauge := func(f func(*kgo.Client) int64) func() float64 {
		return func() float64 {
			if cl := client(); cl != nil {
				return float64(f(cl))
			}
			return 0
		}
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "weir_kafka_producer_buffered_records",
			Help:        "Records handed to the producer and not yet acknowledged by Kafka.",
			ConstLabels: prometheus.Labels{"stage": stage},
		}, gauge((*kgo.Client).BufferedProduceRecords)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "weir_kafka_producer_buffered_bytes",
			Help:        "Bytes handed to the producer and not yet acknowledged by Kafka.",
			ConstLabels: prometheus.Labels{"stage": stage},
		}, gauge((*kgo.Client).BufferedProduceBytes)),
	)
}
