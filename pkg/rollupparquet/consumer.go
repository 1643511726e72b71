package rollupparquet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/kafka"
	"github.com/weir-metrics/weir/pkg/rollup"
)

// Consumer feeds a Writer from every tenant's rollup topic in the
// weir-parquet consumer group and commits offsets only once the rows
// before them are uploaded.
type Consumer struct {
	cfg    *config.Config
	log    *slog.Logger
	w      *Writer
	m      *Metrics
	lag    *kafka.LagTracker
	commit map[PartitionID]int64 // last committed offsets
}

// NewConsumer prepares the consumer; opts.Bucket is where files go. Its
// temporary files live in opts.TmpDir, which it creates and empties.
func NewConsumer(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer, opts Options) (*Consumer, error) {
	log = log.With("service", "parquet")
	if err := os.RemoveAll(opts.TmpDir); err != nil {
		return nil, fmt.Errorf("emptying %s: %w", opts.TmpDir, err)
	}
	if err := os.MkdirAll(opts.TmpDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", opts.TmpDir, err)
	}
	opts.Logger = log
	opts.Metrics = NewMetrics(reg)
	return &Consumer{
		cfg:    cfg,
		log:    log,
		w:      NewWriter(opts),
		m:      opts.Metrics,
		lag:    kafka.NewLagTracker(reg, "parquet", cfg.Kafka.TopicPrefix),
		commit: map[PartitionID]int64{},
	}, nil
}

// Run consumes until ctx is done. An upload that fails stalls it: it
// retries, reads nothing more and commits nothing past the rows it holds,
// so an unavailable bucket loses nothing.
func (c *Consumer) Run(ctx context.Context) error {
	opts, err := kafka.ClientOpts(c.cfg, c.log)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(opts, append(kafka.ConsumerOpts(c.cfg),
		kgo.ConsumerGroup(c.cfg.Rollup.ParquetGroupID),
		kgo.InstanceID(c.cfg.Sink.InstanceID),
		kgo.ConsumeRegex(),
		kgo.ConsumeTopics(kafka.TopicRegex(c.cfg.Kafka.TopicPrefix, kafka.KindRollup)),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
			c.commitUploaded(ctx, cl)
			c.forget(revoked)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) { c.forget(lost) }),
	)...)...)
	if err != nil {
		return fmt.Errorf("creating Parquet writer consumer: %w", err)
	}
	defer cl.Close()
	var rows []rollup.Row
	for {
		pollCtx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := cl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			// Files not complete stay unwritten: their rows are read again
			// from the committed offsets after a restart.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			c.commitUploaded(fctx, cl)
			cancel()
			cl.AllowRebalance()
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				c.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
			}
		})
		now := time.Now()
		fetches.EachRecord(func(r *kgo.Record) {
			id := PartitionID{r.Topic, r.Partition}
			meta, err := rollup.ParseHeaders(r.Headers)
			if err == nil {
				rows, err = rollup.DecodeRows(r.Value, rows[:0])
			}
			if err == nil {
				err = c.w.Add(id, r.Offset, meta, rows, now)
			}
			if err != nil {
				// A record that cannot be read must not block the partition.
				c.m.RecordsDiscarded.WithLabelValues("invalid_record").Inc()
				c.log.Warn("skipping unreadable rollup record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
				c.w.Skip(id, r.Offset)
			}
		})
		c.lag.Observe(fetches)
		c.flush(ctx)
		c.commitUploaded(ctx, cl)
		cl.AllowRebalance()
	}
}

// flush uploads what is due, retrying with backoff while the bucket
// fails. Nothing else happens meanwhile: the partitions stall and their
// lag grows, visibly, and Kafka keeps the rows.
func (c *Consumer) flush(ctx context.Context) {
	for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
		err := c.w.Flush(ctx, time.Now(), false)
		if err == nil || ctx.Err() != nil {
			return
		}
		c.log.Error("cannot upload rollup file to the bucket; the Parquet writer is stalled and retries (Kafka keeps the rows, nothing is lost)",
			"err", err, "pending_rows", c.w.PendingRows(), "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// commitUploaded commits, per partition, the first offset whose rows are
// not uploaded yet.
func (c *Consumer) commitUploaded(ctx context.Context, cl *kgo.Client) {
	offsets := map[string]map[int32]kgo.EpochOffset{}
	for id, off := range c.w.Committable() {
		if c.commit[id] == off {
			continue
		}
		if offsets[id.Topic] == nil {
			offsets[id.Topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[id.Topic][id.Partition] = kgo.EpochOffset{Epoch: -1, Offset: off}
	}
	if len(offsets) == 0 {
		return
	}
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("committing Parquet writer offsets failed; the next commit retries", "err", err)
			}
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					c.log.Warn("committing a Parquet writer offset failed; the next commit retries", "topic", t.Topic, "partition", p.Partition, "err", err)
					continue
				}
				id := PartitionID{t.Topic, p.Partition}
				c.commit[id] = offsets[t.Topic][p.Partition].Offset
			}
		}
	})
}

func (c *Consumer) forget(parts map[string][]int32) {
	for topic, ps := range parts {
		for _, p := range ps {
			c.w.Forget(PartitionID{topic, p})
			delete(c.commit, PartitionID{topic, p})
		}
	}
	c.lag.Revoke(parts)
}
