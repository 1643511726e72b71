package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/logrepeat"
)

// Broker is the embedded Kafka-protocol broker: franz-go's kfake with its
// log persisted on disk. Ordinary Kafka clients (kcat, kafka-console-*)
// reach it at its address. kfake's in-memory mode keeps every batch on the
// heap, so weir always gives it a data directory.
type Broker struct {
	cluster *kfake.Cluster
	addr    string
	dir     string
	log     *slog.Logger

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// StartBroker starts the embedded broker listening on cfg.Kafka.Embedded.Addr
// with its log under cfg.KafkaDir(). Topics, records and committed offsets
// of a previous run are loaded from there. With port 0 the system picks a
// port; Addr tells which.
func StartBroker(cfg *config.Config, log *slog.Logger) (*Broker, error) {
	addr := cfg.Kafka.Embedded.Addr
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("kafka.embedded.addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		// The broker advertises its listen address in metadata; clients
		// cannot connect to 0.0.0.0.
		return nil, fmt.Errorf("kafka.embedded.addr %q: use a concrete host or IP that clients can reach, not %s", addr, host)
	}
	portNum, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("kafka.embedded.addr %q: bad port: %w", addr, err)
	}
	opts := []kfake.Opt{
		kfake.ClusterID("weir-embedded"),
		kfake.WithLogger(&kfakeLogger{log: log, repeats: logrepeat.New(repeatEvery)}),
		kfake.DefaultNumPartitions(cfg.Kafka.Partitions),
		kfake.BrokerConfigs(map[string]string{
			"message.max.bytes":   strconv.Itoa(TopicMaxMessageBytes(cfg.Kafka.MaxRecordBytes)),
			"log.retention.ms":    strconv.FormatInt(cfg.Kafka.Retention.Milliseconds(), 10),
			"log.retention.bytes": strconv.FormatInt(cfg.Kafka.RetentionBytes, 10),
		}),
	}
	if cfg.Kafka.Embedded.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	dir := cfg.KafkaDir()
	if needsRecovery(dir) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		// weir writes raw and rollup topics without transactions.
		notTransactional := func(topic string) bool {
			_, kind, ok := ParseTopic(cfg.Kafka.TopicPrefix, topic)
			return ok && (kind == KindRaw || kind == KindRollup)
		}
		n, err := recoverDataDir(ctx, dir, opts, notTransactional)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("recovering the embedded broker's log in %s after an unclean stop: %w", dir, err)
		}
		log.Info("embedded Kafka broker recovered after an unclean stop: open transactions aborted with markers", "dir", dir, "transactional_ids", n)
	}
	// Present again only once this run closes in order.
	if err := os.Remove(filepath.Join(dir, cleanStopFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("embedded broker data directory %s: %w", dir, err)
	}
	opts = append(opts,
		kfake.DataDir(dir),
		kfake.Ports(portNum),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, addr)
		}),
	)
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("starting embedded broker at %s with data in %s: %w", addr, cfg.KafkaDir(), err)
	}
	// With port 0 the system chose one; clients need the real address.
	if addrs := cluster.ListenAddrs(); len(addrs) == 1 {
		addr = addrs[0]
	}
	b := &Broker{cluster: cluster, addr: addr, dir: dir, log: log, stop: make(chan struct{})}
	b.wg.Add(1)
	go b.enforceRetention(cfg.Kafka.Embedded.RetentionCheckInterval)
	log.Info("embedded Kafka broker started", "addr", addr, "dir", cfg.KafkaDir(), "sync_writes", cfg.Kafka.Embedded.SyncWrites)
	return b, nil
}

// Addr is the address clients connect to.
func (b *Broker) Addr() string { return b.addr }

// Cluster exposes the kfake cluster, for tests that inject faults.
func (b *Broker) Cluster() *kfake.Cluster { return b.cluster }

// enforceRetention deletes expired records periodically: kfake applies
// retention only when asked.
func (b *Broker) enforceRetention(every time.Duration) {
	defer b.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.cluster.ApplyRetention()
		}
	}
}

// Close stops the broker and flushes its state to disk. Closing twice is
// harmless.
func (b *Broker) Close() {
	b.closeOnce.Do(func() {
		close(b.stop)
		b.wg.Wait()
		b.cluster.Close()
		if err := os.WriteFile(filepath.Join(b.dir, cleanStopFile), nil, 0o644); err != nil {
			b.log.Warn("cannot mark the embedded broker's log as closed in order; the next start recovers it", "err", err)
		}
		b.log.Info("embedded Kafka broker stopped")
	})
}

// Run serves until ctx is done, then closes the broker.
func (b *Broker) Run(ctx context.Context) error {
	<-ctx.Done()
	b.Close()
	return nil
}

// kfakeLogger sends the broker's log to slog. Warnings and errors of one
// kind (one format string) are logged at most once per repeatEvery, with
// how many were left out: a broker that fails every write (a full disk)
// then says why once a few seconds instead of a thousand times a second,
// which would fill the disk the operator is trying to free.
type kfakeLogger struct {
	log     *slog.Logger
	repeats *logrepeat.Limiter
}

const repeatEvery = 5 * time.Second

func (l *kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	var lvl slog.Level
	switch level {
	case kfake.LogLevelError:
		lvl = slog.LevelError
	case kfake.LogLevelWarn:
		lvl = slog.LevelWarn
	default:
		// kfake logs every request at info; that is debug for weir.
		lvl = slog.LevelDebug
	}
	if !l.log.Enabled(context.Background(), lvl) {
		return
	}
	attrs := []any{"component", "broker"}
	if lvl >= slog.LevelWarn {
		ok, left := l.repeats.Admit(format)
		if !ok {
			return
		}
		if left > 0 {
			attrs = append(attrs, "similar_lines_left_out", left)
		}
	}
	l.log.Log(context.Background(), lvl, fmt.Sprintf(format, args...), attrs...)
}
