// Package config holds weir's configuration: one struct with its defaults
// and validation, loaded by viper from a YAML file, WEIR_* environment
// variables and command-line flags (later sources win).
//
// Every field says its default and why. docs/configuration.md is the
// user-facing reference and must list the same settings.
package config

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Config is the whole configuration of a weir process, whatever targets it
// runs.
type Config struct {
	// DataDir holds everything weir keeps on disk: the embedded broker's log
	// (kafka/), TSDB shards (tsdb/) and the local bucket (bucket/).
	// Default ./data, so a first run needs no setup.
	DataDir string `mapstructure:"data_dir" yaml:"data_dir"`

	Log    LogConfig    `mapstructure:"log" yaml:"log"`
	HTTP   HTTPConfig   `mapstructure:"http" yaml:"http"`
	Auth   AuthConfig   `mapstructure:"auth" yaml:"auth"`
	Kafka  KafkaConfig  `mapstructure:"kafka" yaml:"kafka"`
	Edge   EdgeConfig   `mapstructure:"edge" yaml:"edge"`
	Stream StreamConfig `mapstructure:"stream" yaml:"stream"`
	Sink   SinkConfig   `mapstructure:"sink" yaml:"sink"`
	Bucket BucketConfig `mapstructure:"bucket" yaml:"bucket"`
	Rollup RollupConfig `mapstructure:"rollup" yaml:"rollup"`
}

// BucketConfig configures the object storage that receives TSDB blocks
// (and rollup files).
type BucketConfig struct {
	// Backend is filesystem or s3. Default filesystem, under
	// <data_dir>/bucket, so a first run needs no object store.
	Backend string `mapstructure:"backend" yaml:"backend"`
	// Dir is the filesystem bucket's directory. Default empty:
	// <data_dir>/bucket.
	Dir string         `mapstructure:"dir" yaml:"dir"`
	S3  S3BucketConfig `mapstructure:"s3" yaml:"s3"`
}

// S3BucketConfig configures an S3-compatible bucket (AWS S3, MinIO, …).
type S3BucketConfig struct {
	// Bucket is the bucket name; it must exist.
	Bucket string `mapstructure:"bucket" yaml:"bucket"`
	// Endpoint is host[:port] of the S3 API, e.g. s3.eu-west-1.amazonaws.com
	// or minio:9000.
	Endpoint  string `mapstructure:"endpoint" yaml:"endpoint"`
	Region    string `mapstructure:"region" yaml:"region"`
	AccessKey string `mapstructure:"access_key" yaml:"access_key"`
	SecretKey string `mapstructure:"secret_key" yaml:"secret_key"`
	// Insecure uses plain HTTP (MinIO in a local stack). Default false.
	Insecure bool `mapstructure:"insecure" yaml:"insecure"`
	// PathStyle addresses the bucket in the path rather than the host
	// name, as MinIO expects. Default false.
	PathStyle bool `mapstructure:"path_style" yaml:"path_style"`
}

// BucketDir is the directory of the filesystem bucket.
func (c *Config) BucketDir() string {
	if c.Bucket.Dir != "" {
		return c.Bucket.Dir
	}
	return filepath.Join(c.DataDir, "bucket")
}

// LogConfig configures the process log (log/slog).
type LogConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `mapstructure:"level" yaml:"level"`
	// Format is text or json. Default text, for people; use json when a
	// log pipeline reads the output.
	Format string `mapstructure:"format" yaml:"format"`
}

// HTTPConfig configures the HTTP listener that serves writes, queries and
// the operational endpoints.
type HTTPConfig struct {
	// Addr is the listen address. Default 127.0.0.1:9480: loopback, so a
	// first run exposes nothing; set 0.0.0.0:9480 to serve other hosts.
	Addr string `mapstructure:"addr" yaml:"addr"`
	// ReadHeaderTimeout bounds how long a client may take to send request
	// headers. Default 10s, so slow-header clients cannot hold
	// connections.
	ReadHeaderTimeout time.Duration `mapstructure:"read_header_timeout" yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request including its body.
	// Default 60s: a 10 MB body over a slow link still fits.
	ReadTimeout time.Duration `mapstructure:"read_timeout" yaml:"read_timeout"`
	// WriteTimeout bounds writing a response. Default 3m, above the query
	// timeout so long queries can answer.
	WriteTimeout time.Duration `mapstructure:"write_timeout" yaml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle this long. Default 2m.
	IdleTimeout time.Duration `mapstructure:"idle_timeout" yaml:"idle_timeout"`
	// MaxHeaderBytes bounds request headers. Default 64 KiB: far above
	// what any remote-write or line-protocol client sends.
	MaxHeaderBytes int `mapstructure:"max_header_bytes" yaml:"max_header_bytes"`
	// Pprof serves Go's profiling endpoints under /debug/pprof/ (CPU and
	// heap profiles for `go tool pprof`). Default false: they reveal
	// internals and a CPU profile costs CPU while it runs, so they are for
	// an operator who asks for them.
	Pprof bool `mapstructure:"pprof" yaml:"pprof"`

	TLS HTTPTLSConfig `mapstructure:"tls" yaml:"tls"`
}

// HTTPTLSConfig serves the HTTP listener over TLS (HTTPS), TLS 1.2 or
// newer.
type HTTPTLSConfig struct {
	// CertFile and KeyFile are the PEM certificate (chain) and key. Both
	// empty (the default) serves plain HTTP. They are re-read when they
	// change, so a renewed certificate is used without a restart.
	CertFile string `mapstructure:"cert_file" yaml:"cert_file"`
	KeyFile  string `mapstructure:"key_file" yaml:"key_file"`
	// ReloadInterval is how often the files are checked for changes.
	// Default 10s.
	ReloadInterval time.Duration `mapstructure:"reload_interval" yaml:"reload_interval"`
}

// AuthConfig configures authentication and tenants (docs/auth.md).
type AuthConfig struct {
	// TenantsFile lists the tenants and the hashes of their credentials.
	// Default empty: no authentication, and requests name their tenant in
	// X-Scope-OrgID (or an InfluxDB org/db), which suits a trusted network
	// or a proxy that authenticates.
	TenantsFile string `mapstructure:"tenants_file" yaml:"tenants_file"`
	// ReloadInterval is how often the tenants file is checked for
	// changes. Default 5s: a new or revoked credential is in force within
	// seconds.
	ReloadInterval time.Duration `mapstructure:"reload_interval" yaml:"reload_interval"`
}

// KafkaConfig configures the Kafka cluster weir writes to and reads from.
type KafkaConfig struct {
	// Brokers are the seed brokers of an external Kafka cluster. Default
	// empty: `weir all` then starts the embedded broker, and the separate
	// targets connect to Embedded.Addr (where `weir broker` listens).
	Brokers []string `mapstructure:"brokers" yaml:"brokers"`
	// TopicPrefix starts every topic weir creates: <prefix>.<tenant>.raw
	// and <prefix>.<tenant>.series. Default weir.
	TopicPrefix string `mapstructure:"topic_prefix" yaml:"topic_prefix"`
	// Partitions is the partition count of newly created topics. Default 8:
	// enough to spread a tenant over 8 sink shards or workers; more
	// partitions cost broker memory and file handles.
	Partitions int `mapstructure:"partitions" yaml:"partitions"`
	// ReplicationFactor of newly created topics. Default -1, the broker's
	// default.replication.factor.
	ReplicationFactor int `mapstructure:"replication_factor" yaml:"replication_factor"`
	// MaxRecordBytes is the largest record weir writes; bigger requests are
	// split by series. Topics are created with max.message.bytes a little
	// above it. Default 4 MiB: large enough that a 2000-series request is
	// one record, small enough for brokers' default fetch sizes.
	MaxRecordBytes int `mapstructure:"max_record_bytes" yaml:"max_record_bytes"`
	// Retention is how long records are kept (retention.ms of created
	// topics). Default 24h: enough to replay a day and to ride out a
	// long sink outage, bounded so the disk does not grow forever.
	Retention time.Duration `mapstructure:"retention" yaml:"retention"`
	// RetentionBytes bounds each partition's log (retention.bytes).
	// Default 1 GiB; -1 keeps records for Retention whatever their size.
	RetentionBytes int64 `mapstructure:"retention_bytes" yaml:"retention_bytes"`
	// ProduceTimeout is how long the edge waits for Kafka to acknowledge a
	// request's records before answering 503. Default 10s, below
	// Prometheus' 30s remote-write timeout so the sender retries instead
	// of timing out.
	ProduceTimeout time.Duration `mapstructure:"produce_timeout" yaml:"produce_timeout"`
	// ProducerMaxBufferedBytes bounds the records a producer holds before
	// Kafka acknowledges them; beyond it the edge refuses with 503 at once
	// instead of growing memory. Default 256 MiB.
	ProducerMaxBufferedBytes int `mapstructure:"producer_max_buffered_bytes" yaml:"producer_max_buffered_bytes"`
	// ProducerLinger is how long a producer waits to fill a batch. Default
	// 5ms: amortises requests without adding noticeable write latency.
	ProducerLinger time.Duration `mapstructure:"producer_linger" yaml:"producer_linger"`
	// Compression of produced batches: none, snappy, lz4 or zstd. Default
	// snappy: cheap on CPU, and remote-write payloads shrink 3–5×.
	Compression string `mapstructure:"compression" yaml:"compression"`
	// FetchMaxBytes bounds one fetch response. Default 64 MiB, which with
	// MaxConcurrentFetches bounds consumer memory.
	FetchMaxBytes int `mapstructure:"fetch_max_bytes" yaml:"fetch_max_bytes"`
	// MaxConcurrentFetches bounds in-flight fetches per consumer. Default 4.
	MaxConcurrentFetches int `mapstructure:"max_concurrent_fetches" yaml:"max_concurrent_fetches"`
	// MetadataMaxAge is how often clients refresh metadata, which is how a
	// regex consumer finds a new tenant's topics. Default 5s.
	MetadataMaxAge time.Duration `mapstructure:"metadata_max_age" yaml:"metadata_max_age"`
	// ClientID is sent to the brokers. Default weir.
	ClientID string `mapstructure:"client_id" yaml:"client_id"`

	SASL     SASLConfig     `mapstructure:"sasl" yaml:"sasl"`
	TLS      TLSConfig      `mapstructure:"tls" yaml:"tls"`
	Embedded EmbeddedConfig `mapstructure:"embedded" yaml:"embedded"`
}

// SASLConfig authenticates weir's Kafka clients.
type SASLConfig struct {
	// Mechanism is empty (no SASL), PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `mapstructure:"mechanism" yaml:"mechanism"`
	Username  string `mapstructure:"username" yaml:"username"`
	Password  string `mapstructure:"password" yaml:"password"`
}

// TLSConfig secures the connection to external brokers.
type TLSConfig struct {
	// Enabled turns TLS on. Default false.
	Enabled bool `mapstructure:"enabled" yaml:"enabled"`
	// CAFile verifies the brokers; empty uses the system roots.
	CAFile string `mapstructure:"ca_file" yaml:"ca_file"`
	// CertFile and KeyFile present a client certificate (mutual TLS).
	CertFile string `mapstructure:"cert_file" yaml:"cert_file"`
	KeyFile  string `mapstructure:"key_file" yaml:"key_file"`
	// ServerName overrides the name checked in the brokers' certificates.
	ServerName string `mapstructure:"server_name" yaml:"server_name"`
	// InsecureSkipVerify disables certificate checks: for tests only.
	InsecureSkipVerify bool `mapstructure:"insecure_skip_verify" yaml:"insecure_skip_verify"`
}

// EmbeddedConfig configures the embedded Kafka-protocol broker (franz-go's
// kfake persisted under <data_dir>/kafka).
type EmbeddedConfig struct {
	// Addr is where the embedded broker listens and what it advertises.
	// Default 127.0.0.1:19092, next to Kafka's usual 9092 without clashing
	// with a real broker.
	Addr string `mapstructure:"addr" yaml:"addr"`
	// SyncWrites fsyncs every produced batch before acknowledging it, so an
	// acknowledged sample survives a machine crash, not just a process
	// crash. Default false: it costs about a quarter of the throughput,
	// and the page cache already survives a killed process.
	SyncWrites bool `mapstructure:"sync_writes" yaml:"sync_writes"`
	// RetentionCheckInterval is how often expired records are deleted.
	// Default 5m.
	RetentionCheckInterval time.Duration `mapstructure:"retention_check_interval" yaml:"retention_check_interval"`
}

// EdgeConfig configures the receivers.
type EdgeConfig struct {
	// MaxRequestBytes bounds a request body as sent (compressed). Default
	// 10 MiB, well above Prometheus' largest default batch (2000 samples).
	MaxRequestBytes int64 `mapstructure:"max_request_bytes" yaml:"max_request_bytes"`
	// MaxDecompressedBytes bounds a body after decompression, checked
	// before inflating it so a compression bomb costs nothing. Default
	// 64 MiB.
	MaxDecompressedBytes int64 `mapstructure:"max_decompressed_bytes" yaml:"max_decompressed_bytes"`
	// MaxInflightBytes bounds the request memory all writes hold at once
	// in one edge: each counts its body, its decompressed body, and what
	// the series decoded from it and the records built from them take (a
	// measured multiple of the decompressed size: about 12 for
	// remote-write, 32 for line protocol). A write that would exceed it is
	// refused with 503 and Retry-After before more is read (413 when it
	// alone needs more), so a flood of requests or compression bombs
	// cannot exhaust the edge's memory. Default 1 GiB; 0 is unlimited.
	// The one edge.max_* setting that is not a tenant limit.
	MaxInflightBytes int64 `mapstructure:"max_inflight_bytes" yaml:"max_inflight_bytes"`

	// The settings below, like the two above, are the defaults of every
	// tenant's limits; RuntimeFile can change them and override them per
	// tenant without a restart. A zero limit is unlimited.

	// RuntimeFile holds per-tenant limits and overrides (docs/configuration.md),
	// reloaded when it changes. Default empty: every tenant gets the
	// defaults.
	RuntimeFile string `mapstructure:"runtime_file" yaml:"runtime_file"`
	// RuntimeReloadInterval is how often RuntimeFile is checked for
	// changes. Default 10s.
	RuntimeReloadInterval time.Duration `mapstructure:"runtime_reload_interval" yaml:"runtime_reload_interval"`
	// MaxBackfillAge is how far back `weir backfill` may write a tenant's
	// data. Default 720h (30 days): history beyond it should become TSDB
	// blocks, not out-of-order appends.
	MaxBackfillAge time.Duration `mapstructure:"max_backfill_age" yaml:"max_backfill_age"`
	// IngestionRate is the samples per second a tenant may write through
	// one edge. Default 0 (unlimited): a single-tenant install needs no
	// limit; set one per tenant when tenants share the pipeline.
	IngestionRate float64 `mapstructure:"ingestion_rate" yaml:"ingestion_rate"`
	// IngestionBurst is the samples a tenant may send at once above its
	// rate. Default 0: one second of IngestionRate.
	IngestionBurst int `mapstructure:"ingestion_burst" yaml:"ingestion_burst"`
	// MaxLabelsPerSeries bounds the labels of a series, name included.
	// Default 30, as Mimir: generous for real metrics, and a guard against
	// senders that turn unbounded data into labels.
	MaxLabelsPerSeries int `mapstructure:"max_labels_per_series" yaml:"max_labels_per_series"`
	// MaxLabelNameLength bounds a label name in bytes. Default 1024.
	MaxLabelNameLength int `mapstructure:"max_label_name_length" yaml:"max_label_name_length"`
	// MaxLabelValueLength bounds a label value in bytes. Default 2048, as
	// Mimir: room for URLs and paths, not for log lines.
	MaxLabelValueLength int `mapstructure:"max_label_value_length" yaml:"max_label_value_length"`
	// MaxFutureSkew is how far ahead of the edge's clock a sample may be.
	// Default 10m: covers clock drift, refuses samples whose timestamps
	// are in the wrong unit (seconds sent as nanoseconds land far away).
	MaxFutureSkew time.Duration `mapstructure:"max_future_skew" yaml:"max_future_skew"`
	// MaxExemplarsPerSeries bounds the exemplars of one series in one
	// request. Default 0 (unlimited): a sender catching up after an
	// outage legitimately sends many.
	MaxExemplarsPerSeries int `mapstructure:"max_exemplars_per_series" yaml:"max_exemplars_per_series"`
	// MaxTenantInflightBytes is one tenant's share of MaxInflightBytes:
	// beyond it the tenant's writes get 429 with Retry-After (413 for a
	// request that alone needs more), so a tenant that sends faster than
	// Kafka takes, or sends compression bombs, cannot crowd out the others.
	// Default 256 MiB: about 80 remote-write requests of 2000 samples in
	// flight at once (3 MiB each), or one of 20 MiB decompressed; 0 is
	// unlimited.
	MaxTenantInflightBytes int64 `mapstructure:"max_tenant_inflight_bytes" yaml:"max_tenant_inflight_bytes"`
	// InfluxStringFields is what happens to line-protocol string fields:
	// drop (the default: metrics stores keep numbers; they are counted) or
	// info (kept as labels of a <measurement>_info series).
	InfluxStringFields string `mapstructure:"influx_string_fields" yaml:"influx_string_fields"`
	// InfluxDatabaseLabel, when set, is a label that carries the db (v1)
	// or bucket (v2) of line-protocol writes. Default empty: Telegraf
	// always sends one, and most installs use a single one.
	InfluxDatabaseLabel string `mapstructure:"influx_database_label" yaml:"influx_database_label"`
	// InfluxKeepNames keeps line-protocol names as sent (any UTF-8, which
	// Prometheus 3 can query) instead of sanitizing them to
	// [a-zA-Z_:][a-zA-Z0-9_:]*. Default false, so every PromQL client can
	// query them unquoted.
	InfluxKeepNames bool `mapstructure:"influx_keep_names" yaml:"influx_keep_names"`
}

// StreamConfig configures the stream workers.
type StreamConfig struct {
	// GroupID is the consumer group of all stream workers. Default
	// weir-stream.
	GroupID string `mapstructure:"group_id" yaml:"group_id"`
	// InstanceID identifies this worker: its static group membership and
	// its transactional ID derive from it, so a restarted worker takes its
	// partitions back at once and fences its dead predecessor. It must be
	// unique among running workers and stable across restarts. Default the
	// host name.
	InstanceID string `mapstructure:"instance_id" yaml:"instance_id"`
	// TransactionTimeout bounds an open transaction; a worker that dies
	// holding one blocks its partitions at most this long when it does not
	// come back. Default 30s.
	TransactionTimeout time.Duration `mapstructure:"transaction_timeout" yaml:"transaction_timeout"`
	// PipelinesDir holds the pipeline files: default.yaml and
	// <tenant>.yaml (docs/pipelines.md). Default pipelines, the directory
	// of examples in the repository; a missing directory means no rules,
	// guard rails or budgets.
	PipelinesDir string `mapstructure:"pipelines_dir" yaml:"pipelines_dir"`
	// PipelinesReloadInterval is how often workers reread PipelinesDir;
	// changed files apply without a restart. Default 10s.
	PipelinesReloadInterval time.Duration `mapstructure:"pipelines_reload_interval" yaml:"pipelines_reload_interval"`
	// ActiveSeriesWindow is how long a series counts against its budget
	// after its last sample. Default 20m: a series scraped every few
	// minutes stays active, one that stopped frees its place after a
	// while.
	ActiveSeriesWindow time.Duration `mapstructure:"active_series_window" yaml:"active_series_window"`
	// RelabelCacheBytes bounds the cache of per-series pipeline decisions.
	// Default 64 MiB: about a million series of typical size; a series
	// evicted is only computed again.
	RelabelCacheBytes int `mapstructure:"relabel_cache_bytes" yaml:"relabel_cache_bytes"`
	// LabelValuesLimit bounds the distinct values the cardinality
	// explorer tracks per metric and label. Default 10000: enough to rank
	// labels; a label beyond it is reported as "at least".
	LabelValuesLimit int `mapstructure:"label_values_limit" yaml:"label_values_limit"`
	// BudgetPublishInterval is how often workers publish changed budget
	// state for the edges (and each other). Default 1s: the edge's view of
	// a budget lags by about this plus a fetch.
	BudgetPublishInterval time.Duration `mapstructure:"budget_publish_interval" yaml:"budget_publish_interval"`
	// MaxRecordsPerTransaction bounds the raw records one transaction
	// processes. Default 500 (a few MB): a transaction must end well within
	// stream.transaction_timeout even when Kafka is slow, or it aborts and
	// the same work is tried again.
	MaxRecordsPerTransaction int `mapstructure:"max_records_per_transaction" yaml:"max_records_per_transaction"`
}

// SinkConfig configures the sink workers and their TSDB shards.
type SinkConfig struct {
	// GroupID is the consumer group of the sink workers. Default weir-sink.
	GroupID string `mapstructure:"group_id" yaml:"group_id"`
	// InstanceID identifies this sink for static group membership, so a
	// restarted sink gets its partitions (and its local shards) back.
	// Default the host name.
	InstanceID string `mapstructure:"instance_id" yaml:"instance_id"`
	// TSDBShards is the number of TSDB shards per tenant; Kafka partition
	// p is stored in shard p mod TSDBShards. Default 2: one per core of a
	// small machine, so appends and compactions run in parallel.
	TSDBShards int `mapstructure:"tsdb_shards" yaml:"tsdb_shards"`
	// CommitInterval is how often the sink syncs the WAL and commits its
	// offsets. Default 1s: a crash replays at most about a second.
	CommitInterval time.Duration `mapstructure:"commit_interval" yaml:"commit_interval"`
	// WALFsync fsyncs the WAL before offsets are committed, so offsets
	// never get ahead of data even on a machine crash. Default true.
	WALFsync bool `mapstructure:"wal_fsync" yaml:"wal_fsync"`
	// MinFreeDiskBytes is the free space the data directory's filesystem
	// must keep: below it the sink stops appending (its partitions wait
	// in Kafka, their lag grows) until space returns. Default 256 MiB:
	// above the TSDB's WAL segment size (128 MiB), which reopening a
	// shard after a failed write may need to repair its WAL. A TSDB that
	// meets a full disk mid-write tears its WAL, and a repair on a full
	// disk loses the segment. 0 disables the check.
	MinFreeDiskBytes int64 `mapstructure:"min_free_disk_bytes" yaml:"min_free_disk_bytes"`
	// BlockDuration is the TSDB block range. Default 2h, as Prometheus.
	BlockDuration time.Duration `mapstructure:"block_duration" yaml:"block_duration"`
	// Retention is how long local TSDB blocks are kept. Default 15d, as
	// Prometheus.
	Retention time.Duration `mapstructure:"retention" yaml:"retention"`
	// OutOfOrderWindow accepts samples up to this much older than a
	// series' newest sample. Default 0 (in-order only), as Prometheus.
	OutOfOrderWindow time.Duration `mapstructure:"out_of_order_window" yaml:"out_of_order_window"`
	// QueryTimeout bounds one PromQL query. Default 2m, as Prometheus.
	QueryTimeout time.Duration `mapstructure:"query_timeout" yaml:"query_timeout"`
	// QueryMaxSamples bounds the samples one query may load. Default 50M,
	// as Prometheus.
	QueryMaxSamples int `mapstructure:"query_max_samples" yaml:"query_max_samples"`
	// StrongReadTimeout bounds how long a query with
	// X-Read-Consistency: strong waits for the pipeline to catch up before
	// it is answered 503. Default 10s: far above the normal end-to-end
	// latency, short enough for a dashboard.
	StrongReadTimeout time.Duration `mapstructure:"strong_read_timeout" yaml:"strong_read_timeout"`
	// ShipBlocks uploads every TSDB block to the bucket (under
	// blocks/<tenant>/<ULID>/ with Thanos metadata). Default true. A block
	// past sink.retention is deleted locally only after its upload.
	ShipBlocks bool `mapstructure:"ship_blocks" yaml:"ship_blocks"`
	// ShipInterval is how often new blocks are looked for and uploaded,
	// and failed uploads retried. Default 1m: blocks are cut every
	// sink.block_duration, so a minute's delay is immaterial.
	ShipInterval time.Duration `mapstructure:"ship_interval" yaml:"ship_interval"`
}

// RollupConfig configures the rollups (docs/rollups.md): the rollup stage,
// which `weir stream` runs beside the stream stage, and the Parquet writer,
// which `weir sink` runs beside the TSDB writer.
type RollupConfig struct {
	// Enabled runs the rollup stage and the Parquet writer. Default true:
	// long-term trends cost little and need nothing installed.
	Enabled bool `mapstructure:"enabled" yaml:"enabled"`
	// GroupID is the consumer group of the rollup stage. Default
	// weir-rollup. Its static member IDs are stream.instance_id.
	GroupID string `mapstructure:"group_id" yaml:"group_id"`
	// Resolutions are the window sizes of the default rollup, which every
	// tenant gets whose pipeline declares no rollups: every admitted
	// series. Default 5m,1h: 5m keeps a day's dashboard detailed, 1h makes
	// a quarter cheap to scan. Each must divide a day (or be whole days)
	// and divide the next larger one.
	Resolutions []string `mapstructure:"resolutions" yaml:"resolutions"`
	// AllowedLateness is how long after a window's end (by Kafka receive
	// time) its samples are still taken; later ones are counted as
	// discarded with reason late. Default 5m: a remote-write sender
	// retrying through a short outage still lands.
	AllowedLateness time.Duration `mapstructure:"allowed_lateness" yaml:"allowed_lateness"`
	// IdleTimeout lets the watermark of a partition that receives nothing
	// follow the clock, delayed by this much, once the stream stage has
	// caught up, so the last windows of a tenant that stopped sending still
	// close. Default 1m. It must exceed kafka.produce_timeout plus the
	// clock skew between hosts, or a delayed record could find its window
	// already closed.
	IdleTimeout time.Duration `mapstructure:"idle_timeout" yaml:"idle_timeout"`
	// CommitInterval is how often the rollup stage commits its checkpoint.
	// Default 5s. A restart replays from the oldest open window anyway,
	// so committing more often saves little.
	CommitInterval time.Duration `mapstructure:"commit_interval" yaml:"commit_interval"`
	// SketchRelativeAccuracy is the relative error bound of the gauge
	// quantile sketches (DDSketch). Default 0.01: every quantile within
	// 1 % of the true value, at about 230 bins per decade of values.
	SketchRelativeAccuracy float64 `mapstructure:"sketch_relative_accuracy" yaml:"sketch_relative_accuracy"`
	// ParquetGroupID is the consumer group of the Parquet writer. Default
	// weir-parquet. Its static member IDs are sink.instance_id.
	ParquetGroupID string `mapstructure:"parquet_group_id" yaml:"parquet_group_id"`
	// ParquetRowGroupRows bounds the rows of a Parquet row group. Default
	// 131072: column chunks large enough to compress and scan well, and
	// enough row groups in a large file for readers to scan in parallel.
	ParquetRowGroupRows int `mapstructure:"parquet_row_group_rows" yaml:"parquet_row_group_rows"`
	// ParquetMaxFileAge is the longest a file's rows wait in memory
	// before they are uploaded although the file's hour is not complete
	// (a later upload merges what arrives after). Default 2h: above the
	// hour plus lateness a file normally takes, so it only matters when a
	// partition stalls.
	ParquetMaxFileAge time.Duration `mapstructure:"parquet_max_file_age" yaml:"parquet_max_file_age"`
	// ParquetMaxFileRows bounds the rows one file holds in memory before
	// they are uploaded early (merged into the object, as for the age).
	// Default 2000000, about 1 GiB of memory at worst; it guards memory,
	// it is not a file-size target: more Kafka partitions make smaller
	// files.
	ParquetMaxFileRows int `mapstructure:"parquet_max_file_rows" yaml:"parquet_max_file_rows"`
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		DataDir: "./data",
		Log:     LogConfig{Level: "info", Format: "text"},
		HTTP: HTTPConfig{
			Addr:              "127.0.0.1:9480",
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       60 * time.Second,
			WriteTimeout:      3 * time.Minute,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			TLS:               HTTPTLSConfig{ReloadInterval: 10 * time.Second},
		},
		Auth: AuthConfig{ReloadInterval: 5 * time.Second},
		Kafka: KafkaConfig{
			TopicPrefix:              "weir",
			Partitions:               8,
			ReplicationFactor:        -1,
			MaxRecordBytes:           4 << 20,
			Retention:                24 * time.Hour,
			RetentionBytes:           1 << 30,
			ProduceTimeout:           10 * time.Second,
			ProducerMaxBufferedBytes: 256 << 20,
			ProducerLinger:           5 * time.Millisecond,
			Compression:              "snappy",
			FetchMaxBytes:            64 << 20,
			MaxConcurrentFetches:     4,
			MetadataMaxAge:           5 * time.Second,
			ClientID:                 "weir",
			Embedded: EmbeddedConfig{
				Addr:                   "127.0.0.1:19092",
				RetentionCheckInterval: 5 * time.Minute,
			},
		},
		Edge: EdgeConfig{
			MaxRequestBytes:        10 << 20,
			MaxDecompressedBytes:   64 << 20,
			MaxInflightBytes:       1 << 30,
			MaxTenantInflightBytes: 256 << 20,
			RuntimeReloadInterval:  10 * time.Second,
			MaxLabelsPerSeries:     30,
			MaxLabelNameLength:     1024,
			MaxLabelValueLength:    2048,
			MaxFutureSkew:          10 * time.Minute,
			MaxBackfillAge:         30 * 24 * time.Hour,
			InfluxStringFields:     "drop",
		},
		Stream: StreamConfig{
			GroupID:                  "weir-stream",
			InstanceID:               hostname(),
			TransactionTimeout:       30 * time.Second,
			PipelinesDir:             "pipelines",
			PipelinesReloadInterval:  10 * time.Second,
			ActiveSeriesWindow:       20 * time.Minute,
			RelabelCacheBytes:        64 << 20,
			LabelValuesLimit:         10000,
			BudgetPublishInterval:    time.Second,
			MaxRecordsPerTransaction: 500,
		},
		Bucket: BucketConfig{Backend: "filesystem"},
		Sink: SinkConfig{
			GroupID:           "weir-sink",
			InstanceID:        hostname(),
			TSDBShards:        2,
			CommitInterval:    time.Second,
			WALFsync:          true,
			MinFreeDiskBytes:  256 << 20,
			BlockDuration:     2 * time.Hour,
			Retention:         15 * 24 * time.Hour,
			QueryTimeout:      2 * time.Minute,
			QueryMaxSamples:   50_000_000,
			StrongReadTimeout: 10 * time.Second,
			ShipBlocks:        true,
			ShipInterval:      time.Minute,
		},
		Rollup: RollupConfig{
			Enabled:                true,
			GroupID:                "weir-rollup",
			Resolutions:            []string{"5m", "1h"},
			AllowedLateness:        5 * time.Minute,
			IdleTimeout:            time.Minute,
			CommitInterval:         5 * time.Second,
			SketchRelativeAccuracy: 0.01,
			ParquetGroupID:         "weir-parquet",
			ParquetRowGroupRows:    128 << 10,
			ParquetMaxFileAge:      2 * time.Hour,
			ParquetMaxFileRows:     2_000_000,
		},
	}
}

// KafkaDir is where the embedded broker keeps its log.
func (c *Config) KafkaDir() string { return filepath.Join(c.DataDir, "kafka") }

// TSDBDir is where the sink keeps its TSDB shards.
func (c *Config) TSDBDir() string { return filepath.Join(c.DataDir, "tsdb") }

// UsesEmbeddedBroker reports whether no external brokers are configured.
func (c *Config) UsesEmbeddedBroker() bool { return len(c.Kafka.Brokers) == 0 }

// SeedBrokers are the brokers clients connect to: the configured ones, or
// the embedded broker's address.
func (c *Config) SeedBrokers() []string {
	if c.UsesEmbeddedBroker() {
		return []string{c.Kafka.Embedded.Addr}
	}
	return c.Kafka.Brokers
}

// Validate reports every setting that cannot work, naming each.
func (c *Config) Validate() error {
	var errs []error
	bad := func(setting, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", setting, fmt.Sprintf(format, args...)))
	}
	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q is not one of text, json", c.Log.Format)
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
		bad("http.addr", "%q is not host:port: %v", c.HTTP.Addr, err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"http.read_header_timeout", c.HTTP.ReadHeaderTimeout},
		{"http.read_timeout", c.HTTP.ReadTimeout},
		{"http.write_timeout", c.HTTP.WriteTimeout},
		{"http.idle_timeout", c.HTTP.IdleTimeout},
		{"http.tls.reload_interval", c.HTTP.TLS.ReloadInterval},
		{"auth.reload_interval", c.Auth.ReloadInterval},
		{"edge.runtime_reload_interval", c.Edge.RuntimeReloadInterval},
		{"kafka.retention", c.Kafka.Retention},
		{"kafka.produce_timeout", c.Kafka.ProduceTimeout},
		{"kafka.metadata_max_age", c.Kafka.MetadataMaxAge},
		{"kafka.embedded.retention_check_interval", c.Kafka.Embedded.RetentionCheckInterval},
		{"stream.transaction_timeout", c.Stream.TransactionTimeout},
		{"stream.pipelines_reload_interval", c.Stream.PipelinesReloadInterval},
		{"sink.commit_interval", c.Sink.CommitInterval},
		{"sink.block_duration", c.Sink.BlockDuration},
		{"sink.retention", c.Sink.Retention},
		{"sink.query_timeout", c.Sink.QueryTimeout},
		{"sink.strong_read_timeout", c.Sink.StrongReadTimeout},
		{"sink.ship_interval", c.Sink.ShipInterval},
		{"rollup.idle_timeout", c.Rollup.IdleTimeout},
		{"rollup.commit_interval", c.Rollup.CommitInterval},
		{"rollup.parquet_max_file_age", c.Rollup.ParquetMaxFileAge},
	} {
		if d.v <= 0 {
			bad(d.name, "must be positive, got %s", d.v)
		}
	}
	if c.HTTP.MaxHeaderBytes < 4096 {
		bad("http.max_header_bytes", "must be at least 4096, got %d", c.HTTP.MaxHeaderBytes)
	}
	for i, b := range c.Kafka.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			bad(fmt.Sprintf("kafka.brokers[%d]", i), "%q is not host:port: %v", b, err)
		}
	}
	if c.Kafka.TopicPrefix == "" || strings.ContainsAny(c.Kafka.TopicPrefix, ". /") {
		bad("kafka.topic_prefix", "%q must be non-empty and contain no '.', '/' or space", c.Kafka.TopicPrefix)
	}
	if c.Kafka.Partitions < 1 || c.Kafka.Partitions > 10000 {
		bad("kafka.partitions", "must be between 1 and 10000, got %d", c.Kafka.Partitions)
	}
	if c.Kafka.ReplicationFactor == 0 || c.Kafka.ReplicationFactor < -1 {
		bad("kafka.replication_factor", "must be -1 (broker default) or positive, got %d", c.Kafka.ReplicationFactor)
	}
	if c.Kafka.MaxRecordBytes < 64<<10 || c.Kafka.MaxRecordBytes > 64<<20 {
		bad("kafka.max_record_bytes", "must be between 64 KiB and 64 MiB, got %d", c.Kafka.MaxRecordBytes)
	}
	if c.Kafka.RetentionBytes == 0 || c.Kafka.RetentionBytes < -1 {
		bad("kafka.retention_bytes", "must be -1 (unbounded) or positive, got %d", c.Kafka.RetentionBytes)
	}
	if c.Kafka.ProducerMaxBufferedBytes < 2*c.Kafka.MaxRecordBytes {
		bad("kafka.producer_max_buffered_bytes", "must be at least twice kafka.max_record_bytes (%d), got %d", c.Kafka.MaxRecordBytes, c.Kafka.ProducerMaxBufferedBytes)
	}
	if c.Kafka.ProducerLinger < 0 {
		bad("kafka.producer_linger", "must not be negative, got %s", c.Kafka.ProducerLinger)
	}
	switch c.Kafka.Compression {
	case "none", "snappy", "lz4", "zstd":
	default:
		bad("kafka.compression", "%q is not one of none, snappy, lz4, zstd", c.Kafka.Compression)
	}
	if c.Kafka.FetchMaxBytes < c.Kafka.MaxRecordBytes {
		bad("kafka.fetch_max_bytes", "must be at least kafka.max_record_bytes (%d), got %d", c.Kafka.MaxRecordBytes, c.Kafka.FetchMaxBytes)
	}
	if c.Kafka.MaxConcurrentFetches < 1 {
		bad("kafka.max_concurrent_fetches", "must be at least 1, got %d", c.Kafka.MaxConcurrentFetches)
	}
	switch c.Kafka.SASL.Mechanism {
	case "":
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if c.Kafka.SASL.Username == "" {
			bad("kafka.sasl.username", "must be set when kafka.sasl.mechanism is %s", c.Kafka.SASL.Mechanism)
		}
	default:
		bad("kafka.sasl.mechanism", "%q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", c.Kafka.SASL.Mechanism)
	}
	if (c.Kafka.TLS.CertFile == "") != (c.Kafka.TLS.KeyFile == "") {
		bad("kafka.tls.cert_file", "cert_file and key_file must be set together")
	}
	if _, _, err := net.SplitHostPort(c.Kafka.Embedded.Addr); err != nil {
		bad("kafka.embedded.addr", "%q is not host:port: %v", c.Kafka.Embedded.Addr, err)
	}
	if c.Edge.MaxRequestBytes < 1024 {
		bad("edge.max_request_bytes", "must be at least 1024, got %d", c.Edge.MaxRequestBytes)
	}
	if c.Edge.MaxDecompressedBytes < c.Edge.MaxRequestBytes {
		bad("edge.max_decompressed_bytes", "must be at least edge.max_request_bytes (%d), got %d", c.Edge.MaxRequestBytes, c.Edge.MaxDecompressedBytes)
	}
	// A body of the largest size must at least be readable.
	if c.Edge.MaxTenantInflightBytes < 0 || c.Edge.MaxTenantInflightBytes > 0 && c.Edge.MaxTenantInflightBytes < c.Edge.MaxRequestBytes {
		bad("edge.max_tenant_inflight_bytes", "must be 0 (unlimited) or at least edge.max_request_bytes (%d), got %d", c.Edge.MaxRequestBytes, c.Edge.MaxTenantInflightBytes)
	}
	if c.Edge.MaxInflightBytes < 0 || c.Edge.MaxInflightBytes > 0 && c.Edge.MaxInflightBytes < max(c.Edge.MaxRequestBytes, c.Edge.MaxTenantInflightBytes) {
		bad("edge.max_inflight_bytes", "must be 0 (unlimited) or at least edge.max_tenant_inflight_bytes and edge.max_request_bytes (%d), got %d", max(c.Edge.MaxRequestBytes, c.Edge.MaxTenantInflightBytes), c.Edge.MaxInflightBytes)
	}
	if (c.HTTP.TLS.CertFile == "") != (c.HTTP.TLS.KeyFile == "") {
		bad("http.tls.cert_file", "http.tls.cert_file and http.tls.key_file must be set together")
	}
	if c.Edge.IngestionRate < 0 {
		bad("edge.ingestion_rate", "must not be negative (0 is unlimited), got %v", c.Edge.IngestionRate)
	}
	for _, v := range []struct {
		name string
		v    int
	}{
		{"edge.ingestion_burst", c.Edge.IngestionBurst},
		{"edge.max_labels_per_series", c.Edge.MaxLabelsPerSeries},
		{"edge.max_label_name_length", c.Edge.MaxLabelNameLength},
		{"edge.max_label_value_length", c.Edge.MaxLabelValueLength},
		{"edge.max_exemplars_per_series", c.Edge.MaxExemplarsPerSeries},
	} {
		if v.v < 0 {
			bad(v.name, "must not be negative (0 is unlimited), got %d", v.v)
		}
	}
	if c.Edge.MaxFutureSkew < 0 {
		bad("edge.max_future_skew", "must not be negative (0 is unlimited), got %s", c.Edge.MaxFutureSkew)
	}
	switch c.Edge.InfluxStringFields {
	case "drop", "info":
	default:
		bad("edge.influx_string_fields", "%q is not one of drop, info", c.Edge.InfluxStringFields)
	}
	if n := c.Edge.InfluxDatabaseLabel; n != "" && (!isLabelName(n) || strings.HasPrefix(n, "__")) {
		bad("edge.influx_database_label", "%q is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)", n)
	}
	for _, s := range []struct{ name, v string }{
		{"stream.group_id", c.Stream.GroupID},
		{"stream.instance_id", c.Stream.InstanceID},
		{"sink.group_id", c.Sink.GroupID},
		{"sink.instance_id", c.Sink.InstanceID},
	} {
		if s.v == "" {
			bad(s.name, "must not be empty")
		}
	}
	if c.Stream.ActiveSeriesWindow < time.Minute || c.Stream.ActiveSeriesWindow%time.Minute != 0 {
		bad("stream.active_series_window", "must be a whole number of minutes, at least 1m, got %s", c.Stream.ActiveSeriesWindow)
	}
	if c.Stream.RelabelCacheBytes < 32<<20 {
		bad("stream.relabel_cache_bytes", "must be at least 33554432 (32 MiB, the cache's smallest size), got %d", c.Stream.RelabelCacheBytes)
	}
	if c.Stream.LabelValuesLimit < 1 {
		bad("stream.label_values_limit", "must be at least 1, got %d", c.Stream.LabelValuesLimit)
	}
	if c.Stream.BudgetPublishInterval < 100*time.Millisecond {
		bad("stream.budget_publish_interval", "must be at least 100ms, got %s", c.Stream.BudgetPublishInterval)
	}
	if c.Stream.MaxRecordsPerTransaction < 1 {
		bad("stream.max_records_per_transaction", "must be at least 1, got %d", c.Stream.MaxRecordsPerTransaction)
	}
	if c.Sink.TSDBShards < 1 || c.Sink.TSDBShards > c.Kafka.Partitions {
		bad("sink.tsdb_shards", "must be between 1 and kafka.partitions (%d), got %d", c.Kafka.Partitions, c.Sink.TSDBShards)
	}
	if c.Sink.BlockDuration%time.Minute != 0 {
		bad("sink.block_duration", "must be a whole number of minutes, got %s", c.Sink.BlockDuration)
	}
	if c.Sink.OutOfOrderWindow < 0 {
		bad("sink.out_of_order_window", "must not be negative, got %s", c.Sink.OutOfOrderWindow)
	}
	if c.Sink.QueryMaxSamples < 1 {
		bad("sink.query_max_samples", "must be positive, got %d", c.Sink.QueryMaxSamples)
	}
	switch c.Bucket.Backend {
	case "filesystem":
	case "s3":
		if c.Bucket.S3.Bucket == "" || c.Bucket.S3.Endpoint == "" {
			bad("bucket.s3.bucket", "bucket.s3.bucket and bucket.s3.endpoint must be set when bucket.backend is s3")
		}
	default:
		bad("bucket.backend", "%q is not one of filesystem, s3", c.Bucket.Backend)
	}
	c.validateRollup(bad)
	return errors.Join(errs...)
}

// ResolutionDurations returns rollup.resolutions parsed; call it on a
// validated configuration (entries that do not parse are left out).
func (r RollupConfig) ResolutionDurations() []time.Duration {
	var out []time.Duration
	for _, s := range r.Resolutions {
		if d, err := model.ParseDuration(strings.TrimSpace(s)); err == nil {
			out = append(out, time.Duration(d))
		}
	}
	return out
}

// validateRollup checks the rollup.* settings. The resolutions follow the
// rule of rollup specs (pkg/rollup): windows aligned to the epoch must
// also align to days, and each must nest in the next larger one.
func (c *Config) validateRollup(bad func(setting, format string, args ...any)) {
	r := c.Rollup
	for _, s := range []struct{ name, v string }{
		{"rollup.group_id", r.GroupID},
		{"rollup.parquet_group_id", r.ParquetGroupID},
	} {
		if s.v == "" {
			bad(s.name, "must not be empty")
		}
	}
	if len(r.Resolutions) == 0 {
		bad("rollup.resolutions", "must name at least one window size, e.g. 5m,1h")
	}
	var prev time.Duration
	for i, s := range r.Resolutions {
		md, err := model.ParseDuration(strings.TrimSpace(s))
		d := time.Duration(md)
		switch {
		case err != nil:
			bad(fmt.Sprintf("rollup.resolutions[%d]", i), "%q is not a duration like 5m or 1h: %v", s, err)
		case d < time.Second || d%time.Second != 0:
			bad(fmt.Sprintf("rollup.resolutions[%d]", i), "%s must be a whole number of seconds", s)
		case 24*time.Hour%d != 0 && d%(24*time.Hour) != 0:
			bad(fmt.Sprintf("rollup.resolutions[%d]", i), "%s must divide a day or be whole days, so windows align to days", s)
		case prev != 0 && (d <= prev || d%prev != 0):
			bad(fmt.Sprintf("rollup.resolutions[%d]", i), "%s must be larger than and a multiple of the one before (%s)", s, model.Duration(prev))
		}
		if err == nil {
			prev = d
		}
	}
	if r.AllowedLateness < 0 {
		bad("rollup.allowed_lateness", "must not be negative, got %s", r.AllowedLateness)
	}
	if r.IdleTimeout > 0 && r.IdleTimeout <= c.Kafka.ProduceTimeout {
		bad("rollup.idle_timeout", "must exceed kafka.produce_timeout (%s), got %s: a record the edge is still producing would find its window closed", c.Kafka.ProduceTimeout, r.IdleTimeout)
	}
	if r.SketchRelativeAccuracy <= 0 || r.SketchRelativeAccuracy >= 0.5 {
		bad("rollup.sketch_relative_accuracy", "must be above 0 and below 0.5, got %v", r.SketchRelativeAccuracy)
	}
	if r.ParquetRowGroupRows < 1024 {
		bad("rollup.parquet_row_group_rows", "must be at least 1024, got %d", r.ParquetRowGroupRows)
	}
	if r.ParquetMaxFileRows < r.ParquetRowGroupRows {
		bad("rollup.parquet_max_file_rows", "must be at least rollup.parquet_row_group_rows (%d), got %d", r.ParquetRowGroupRows, r.ParquetMaxFileRows)
	}
}

func isLabelName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return s != ""
}
