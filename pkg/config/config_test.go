package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func load(t *testing.T, args []string, env map[string]string) (Config, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return Load(fs)
}

func TestDefaultsAreValid(t *testing.T) {
	cfg, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "./data" || cfg.HTTP.Addr != "127.0.0.1:9480" || cfg.Kafka.Embedded.Addr != "127.0.0.1:19092" || len(cfg.Kafka.Brokers) != 0 {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
	if !cfg.UsesEmbeddedBroker() || cfg.SeedBrokers()[0] != "127.0.0.1:19092" {
		t.Fatal("no brokers must mean the embedded broker")
	}
}

// TestPrecedence checks file < environment < flags.
func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "weir.yaml")
	err := os.WriteFile(file, []byte(`
data_dir: /from/file
http:
  addr: 127.0.0.1:1111
kafka:
  partitions: 16
  produce_timeout: 3s
sink:
  tsdb_shards: 4
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := load(t,
		[]string{"--config", file, "--http.addr", "127.0.0.1:3333"},
		map[string]string{"WEIR_HTTP_ADDR": "127.0.0.1:2222", "WEIR_KAFKA_PARTITIONS": "12", "WEIR_KAFKA_BROKERS": "k1:9092,k2:9092"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/from/file" {
		t.Errorf("data_dir %q, want the file's", cfg.DataDir)
	}
	if cfg.HTTP.Addr != "127.0.0.1:3333" {
		t.Errorf("http.addr %q, want the flag's", cfg.HTTP.Addr)
	}
	if cfg.Kafka.Partitions != 12 {
		t.Errorf("kafka.partitions %d, want the environment's", cfg.Kafka.Partitions)
	}
	if cfg.Kafka.ProduceTimeout != 3*time.Second || cfg.Sink.TSDBShards != 4 {
		t.Errorf("file values lost: %s %d", cfg.Kafka.ProduceTimeout, cfg.Sink.TSDBShards)
	}
	if strings.Join(cfg.Kafka.Brokers, ",") != "k1:9092,k2:9092" || cfg.UsesEmbeddedBroker() {
		t.Errorf("kafka.brokers %v", cfg.Kafka.Brokers)
	}
}

func TestUnknownSettingInFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(file, []byte("kafka:\n  partitons: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := load(t, []string{"--config", file}, nil)
	if err == nil || !strings.Contains(err.Error(), "partitons") {
		t.Fatalf("want an error naming the misspelt setting, got %v", err)
	}
}

func TestValidateNamesEverySetting(t *testing.T) {
	cases := map[string]func(*Config){
		"http.addr":                         func(c *Config) { c.HTTP.Addr = "nope" },
		"kafka.partitions":                  func(c *Config) { c.Kafka.Partitions = 0 },
		"kafka.compression":                 func(c *Config) { c.Kafka.Compression = "brotli" },
		"kafka.brokers[0]":                  func(c *Config) { c.Kafka.Brokers = []string{"no-port"} },
		"kafka.max_record_bytes":            func(c *Config) { c.Kafka.MaxRecordBytes = 10 },
		"kafka.sasl.mechanism":              func(c *Config) { c.Kafka.SASL.Mechanism = "GSSAPI" },
		"sink.tsdb_shards":                  func(c *Config) { c.Sink.TSDBShards = 9 },
		"edge.max_decompressed_bytes":       func(c *Config) { c.Edge.MaxDecompressedBytes = 1 },
		"log.level":                         func(c *Config) { c.Log.Level = "loud" },
		"kafka.producer_max_buffered_bytes": func(c *Config) { c.Kafka.ProducerMaxBufferedBytes = 1 },
		"stream.instance_id":                func(c *Config) { c.Stream.InstanceID = "" },
		"rollup.resolutions[1]":             func(c *Config) { c.Rollup.Resolutions = []string{"5m", "7m"} },
		"rollup.idle_timeout":               func(c *Config) { c.Rollup.IdleTimeout = c.Kafka.ProduceTimeout },
		"rollup.sketch_relative_accuracy":   func(c *Config) { c.Rollup.SketchRelativeAccuracy = 0 },
		"rollup.parquet_max_file_rows":      func(c *Config) { c.Rollup.ParquetMaxFileRows = 10 },
		"http.tls.cert_file":                func(c *Config) { c.HTTP.TLS.CertFile = "cert.pem" },
		"auth.reload_interval":              func(c *Config) { c.Auth.ReloadInterval = 0 },
		"edge.ingestion_rate":               func(c *Config) { c.Edge.IngestionRate = -1 },
		"edge.max_labels_per_series":        func(c *Config) { c.Edge.MaxLabelsPerSeries = -1 },
		"edge.max_future_skew":              func(c *Config) { c.Edge.MaxFutureSkew = -time.Second },
		"edge.influx_string_fields":         func(c *Config) { c.Edge.InfluxStringFields = "keep" },
		"edge.influx_database_label":        func(c *Config) { c.Edge.InfluxDatabaseLabel = "__db" },
		"edge.max_tenant_inflight_bytes":    func(c *Config) { c.Edge.MaxTenantInflightBytes = c.Edge.MaxRequestBytes - 1 },
		"edge.max_inflight_bytes":           func(c *Config) { c.Edge.MaxInflightBytes = c.Edge.MaxTenantInflightBytes - 1 },
	}
	for setting, mutate := range cases {
		c := Default()
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), setting) {
			t.Errorf("%s: want an error naming the setting, got %v", setting, err)
		}
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	c := Default()
	c.Kafka.Brokers = []string{"a:1"}
	c.Sink.Retention = 36 * time.Hour
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	back, err := load(t, []string{"--config", file}, nil)
	if err != nil {
		t.Fatalf("printed configuration does not load: %v\n%s", err, out)
	}
	if back.Sink.Retention != c.Sink.Retention || back.Kafka.Brokers[0] != "a:1" {
		t.Fatalf("round trip lost values:\n%s", out)
	}
}

// TestDocumented keeps docs/configuration.md in step with the struct.
func TestDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if !strings.Contains(string(doc), "`"+k+"`") {
			t.Errorf("docs/configuration.md does not document `%s`", k)
		}
	}
}
