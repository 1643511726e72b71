package replay

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/kafka"
	"github.com/weir-metrics/weir/pkg/pipeline"
	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
)

// BenchmarkReplayIntoTSDB replays 100 rounds of 10k series × 11 labels
// (1 M samples) from the raw topic into the series topic of an embedded
// broker, with a pipeline of 10 relabel rules, and reports the samples per
// second of the whole replay (read, relabel, re-encode, produce and wait
// for Kafka's acknowledgement). Compare with the live figures of
// docs/performance.md.
func BenchmarkReplayIntoTSDB(b *testing.B) {
	cfg := config.Default()
	cfg.DataDir = b.TempDir()
	cfg.Kafka.Embedded.Addr = "127.0.0.1:0"
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	broker, err := kafka.StartBroker(&cfg, log)
	if err != nil {
		b.Fatal(err)
	}
	defer broker.Close()
	cfg.Kafka.Embedded.Addr = broker.Addr()
	opts, err := kafka.ClientOpts(&cfg, log)
	if err != nil {
		b.Fatal(err)
	}
	opts = append(opts, kafka.ProducerOpts(&cfg)...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := kafka.NewTopics(cl, cfg.Kafka).EnsureTenant(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	const seriesN, rounds = 10_000, 100
	start := time.Now().Add(-time.Hour)
	var builder record.Builder
	samples := 0
	for round := 0; round < rounds; round++ {
		for lo := 0; lo < seriesN; lo += 2000 {
			var series []prw.TimeSeries
			for i := lo; i < lo+2000; i++ {
				series = append(series, prw.TimeSeries{Labels: []prw.Label{
					{Name: "__name__", Value: fmt.Sprintf("node_metric_%d_total", i%50)},
					{Name: "cluster", Value: "eu-west-1"}, {Name: "container", Value: "node-exporter"},
					{Name: "cpu", Value: fmt.Sprint(i % 16)}, {Name: "endpoint", Value: "metrics"},
					{Name: "instance", Value: fmt.Sprintf("10.0.%d.%d:9100", i/250, i%250)},
					{Name: "job", Value: "node-exporter"}, {Name: "mode", Value: "idle"},
					{Name: "namespace", Value: "monitoring"}, {Name: "pod", Value: fmt.Sprintf("node-exporter-%05d", i/40)},
					{Name: "service", Value: "node-exporter"},
				}, Samples: []prw.Sample{{Value: float64(round), Timestamp: start.Add(time.Duration(round) * 15 * time.Second).UnixMilli()}}})
			}
			enc, err := builder.Build("bench", series, cfg.Kafka.Partitions, cfg.Kafka.MaxRecordBytes)
			if err != nil {
				b.Fatal(err)
			}
			at := start.Add(time.Duration(round) * 15 * time.Second)
			hs := record.Headers(record.Meta{Tenant: "bench", Source: record.SourcePRW1, ReceivedAt: at})
			for _, e := range enc {
				cl.Produce(ctx, &kgo.Record{Topic: kafka.Topic("weir", "bench", kafka.KindRaw), Partition: e.Partition, Value: e.Value, Headers: hs, Timestamp: at}, func(_ *kgo.Record, err error) {
					if err != nil {
						b.Error(err)
					}
				})
			}
			samples += len(series)
		}
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	cl.Close()
	defs := map[string]*pipeline.Definition{}
	var rules string
	for i := 0; i < 10; i++ {
		rules += fmt.Sprintf("  - source_labels: [__name__]\n    regex: never_%d_.*\n    action: drop\n", i)
	}
	d, err := pipeline.ParseFile("default.yaml", []byte("relabel:\n"+rules))
	if err != nil {
		b.Fatal(err)
	}
	defs["default"] = d
	set := pipeline.Build(defs)
	opts = append(opts, kafka.ConsumerOpts(&cfg)...)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, err := Run(ctx, opts, Options{
			Tenant: "bench", From: start.Add(-time.Minute), To: time.Now(), Into: IntoTSDB, ID: fmt.Sprint("bench-", i),
			TopicPrefix: "weir", Partitions: cfg.Kafka.Partitions, MaxRecordBytes: cfg.Kafka.MaxRecordBytes, Pipelines: set,
		})
		if err != nil || p.Samples != int64(samples) {
			b.Fatalf("replay: %d samples of %d: %v (%+v)", p.Samples, samples, err, p)
		}
	}
	b.ReportMetric(float64(samples*b.N)/b.Elapsed().Seconds(), "samples/s")
}
