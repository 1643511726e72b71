// Package kafka wires weir to Kafka: client options from the
// configuration, topic naming and creation, and the embedded broker.
package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/weir-metrics/weir/pkg/config"
)

// ClientOpts returns the options every weir Kafka client shares:
// brokers, identity, security and metadata refresh.
func ClientOpts(cfg *config.Config, log *slog.Logger) ([]kgo.Opt, error) {
	k := cfg.Kafka
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.SeedBrokers()...),
		kgo.ClientID(k.ClientID),
		kgo.MetadataMaxAge(k.MetadataMaxAge),
		kgo.WithLogger(kgoLogger{log}),
		kgo.BrokerMaxWriteBytes(int32(max(100<<20, 2*TopicMaxMessageBytes(k.MaxRecordBytes)))),
		kgo.BrokerMaxReadBytes(int32(max(100<<20, 2*k.FetchMaxBytes))),
	}
	switch k.SASL.Mechanism {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: k.SASL.Username, Pass: k.SASL.Password}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: k.SASL.Username, Pass: k.SASL.Password}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: k.SASL.Username, Pass: k.SASL.Password}.AsSha512Mechanism()))
	}
	if k.TLS.Enabled {
		tc, err := tlsConfig(k.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	return opts, nil
}

// ProducerOpts are the options of producing clients: acknowledged by all
// in-sync replicas, idempotent, bounded buffering. They set no delivery
// timeout: franz-go measures it from the record's timestamp, and the
// stream stage and replay produce records with the time they were first
// received, which may be long ago.
func ProducerOpts(cfg *config.Config) []kgo.Opt {
	k := cfg.Kafka
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(compression(k.Compression)),
		kgo.ProducerBatchMaxBytes(int32(TopicMaxMessageBytes(k.MaxRecordBytes))),
		kgo.ProducerLinger(k.ProducerLinger),
		kgo.MaxBufferedBytes(k.ProducerMaxBufferedBytes),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	}
}

// ConsumerOpts are the options of consuming clients: bounded fetch memory
// and only committed records, so aborted transactions stay invisible.
func ConsumerOpts(cfg *config.Config) []kgo.Opt {
	k := cfg.Kafka
	return []kgo.Opt{
		kgo.FetchMaxBytes(int32(k.FetchMaxBytes)),
		kgo.FetchMaxPartitionBytes(int32(TopicMaxMessageBytes(k.MaxRecordBytes))),
		kgo.MaxConcurrentFetches(k.MaxConcurrentFetches),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}
}

func compression(name string) kgo.CompressionCodec {
	switch name {
	case "snappy":
		return kgo.SnappyCompression()
	case "lz4":
		return kgo.Lz4Compression()
	case "zstd":
		return kgo.ZstdCompression()
	}
	return kgo.NoCompression()
}

func tlsConfig(c config.TLSConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // opt-in, documented as test-only
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls.ca_file %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// kgoLogger sends franz-go's log lines to slog.
type kgoLogger struct{ log *slog.Logger }

func (l kgoLogger) Level() kgo.LogLevel {
	ctx := context.Background()
	switch {
	case l.log.Enabled(ctx, slog.LevelDebug):
		return kgo.LogLevelDebug
	case l.log.Enabled(ctx, slog.LevelInfo):
		// franz-go's info level reports every rebalance and metadata
		// change; keep weir's info log readable.
		return kgo.LogLevelWarn
	case l.log.Enabled(ctx, slog.LevelWarn):
		return kgo.LogLevelWarn
	}
	return kgo.LogLevelError
}

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var lvl slog.Level
	switch level {
	case kgo.LogLevelError:
		lvl = slog.LevelError
	case kgo.LogLevelWarn:
		lvl = slog.LevelWarn
	case kgo.LogLevelInfo:
		lvl = slog.LevelInfo
	default:
		lvl = slog.LevelDebug
	}
	l.log.Log(context.Background(), lvl, msg, append(keyvals, "component", "kafka-client")...)
}
