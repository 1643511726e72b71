package stream

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/weir-metrics/weir/pkg/cardinality"
	"github.com/weir-metrics/weir/pkg/pipeline"
	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
)

// Ten relabel rules as a tenant might write them. In "unchanged" none
// alters a typical series (drops and label removals of things it does not
// have), so records pass through; in "rewriting" two rules add labels to
// every series, so every record is re-encoded and repartitioned.
const benchRulesUnchanged = `
relabel:
  - {source_labels: [__name__], regex: 'go_gc_.*', action: drop}
  - {source_labels: [__name__], regex: 'debug_.*|test_.*', action: drop}
  - {source_labels: [job], regex: 'blackhole', action: drop}
  - {source_labels: [__name__], regex: '.+', action: keep}
  - {regex: 'pod_template_hash|controller_revision_hash', action: labeldrop}
  - {source_labels: [env], regex: 'staging', target_label: tier, replacement: low}
  - {source_labels: [__tenant__, job], regex: 'nobody;.*', action: drop}
  - {source_labels: [zone], target_label: region, regex: '(\w+)-\w+', replacement: '$1'}
  - {source_labels: [le], regex: '\+Inf', action: drop}
  - {source_labels: [secret], regex: '.+', target_label: secret, replacement: redacted}
`

const benchRulesRewriting = `
relabel:
  - {source_labels: [__name__], regex: 'go_gc_.*', action: drop}
  - {source_labels: [__name__], regex: 'debug_.*|test_.*', action: drop}
  - {source_labels: [job], regex: 'blackhole', action: drop}
  - {source_labels: [__name__], regex: '.+', action: keep}
  - {regex: 'pod_template_hash|controller_revision_hash', action: labeldrop}
  - {source_labels: [instance], regex: '([^:]+):\d+', target_label: host, replacement: '$1'}
  - {target_label: cluster, replacement: eu-west-1}
  - {source_labels: [zone], target_label: region, regex: '(\w+)-\w+', replacement: '$1'}
  - {source_labels: [le], regex: '\+Inf', action: drop}
  - {source_labels: [secret], regex: '.+', target_label: secret, replacement: redacted}
`

const benchRails = `
guard_rails:
  max_label_count: 30
  keep_labels: [job, instance]
  max_label_value_length: 2048
budget:
  max_series: 1000000
  max_series_per_metric: 100000
`

// benchRecords builds the raw records of `requests` requests of 2000
// series each (10k series in all, 11 labels, one sample), split by
// partition as the edge writes them.
func benchRecords(b *testing.B, tenant string, partitions int) (records []benchRecord, samples int) {
	var builder record.Builder
	const seriesTotal, perRequest = 10000, 2000
	for r := 0; r < seriesTotal/perRequest; r++ {
		var series []prw.TimeSeries
		for i := r * perRequest; i < (r+1)*perRequest; i++ {
			ls := []prw.Label{
				{Name: "__name__", Value: fmt.Sprintf("app_metric_%d_total", i%50)},
				{Name: "code", Value: fmt.Sprint(200 + i%5)},
				{Name: "env", Value: "production"},
				{Name: "handler", Value: fmt.Sprintf("/api/v1/resource/%d", i%40)},
				{Name: "instance", Value: fmt.Sprintf("10.1.%d.%d:9100", i/250%250, i%250)},
				{Name: "job", Value: "app"},
				{Name: "method", Value: []string{"GET", "POST", "PUT"}[i%3]},
				{Name: "namespace", Value: "payments"},
				{Name: "pod", Value: fmt.Sprintf("payments-api-%08x", i)},
				{Name: "service", Value: "payments-api"},
				{Name: "zone", Value: "eu-west1-b"},
			}
			series = append(series, prw.TimeSeries{Labels: ls, Samples: []prw.Sample{{Value: float64(i), Timestamp: 1_700_000_000_000 + int64(i)}}})
		}
		enc, err := builder.Build(tenant, series, partitions, 4<<20)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range enc {
			records = append(records, benchRecord{partition: e.Partition, value: e.Value})
		}
		samples += len(series)
	}
	return records, samples
}

// cpuTime is the CPU time the process used so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type benchRecord struct {
	partition int32
	value     []byte
}

// BenchmarkStreamStage measures the stream stage's work per raw record
// — decode, relabel (10 rules) and guard rails through the decision cache,
// series budget, re-encode when needed — for series already seen, on one
// goroutine, so samples/s is samples per CPU-second. Kafka is not
// included: the transactional copy costs 2–13 % (shared/KAFKA-NOTES.md).
func BenchmarkStreamStage(b *testing.B) {
	for _, bc := range []struct{ name, rules string }{
		{"unchanged", benchRulesUnchanged},
		{"rewriting", benchRulesRewriting},
	} {
		b.Run(bc.name, func(b *testing.B) {
			def, err := pipeline.ParseFile("default.yaml", []byte(bc.rules+benchRails))
			if err != nil {
				b.Fatal(err)
			}
			set := pipeline.Build(map[string]*pipeline.Definition{"default.yaml": def})
			const tenant, partitions = "team-a", 8
			records, samples := benchRecords(b, tenant, partitions)
			tr := cardinality.New(cardinality.Options{Window: 20 * time.Minute})
			st := &stage{
				proc:       pipeline.NewProcessor(pipeline.NewCache(64 << 20)),
				track:      tr,
				partitions: partitions,
				maxRecord:  4 << 20,
				counts:     &pollCounts{},
			}
			meta := record.Meta{Version: record.Version1, Tenant: tenant}
			var rebuilt int
			st.emit = func(_ record.Meta, _ time.Time, recs []record.Encoded) { rebuilt += len(recs) }
			run := func() (pass int) {
				tr.Lock()
				defer tr.Unlock()
				for _, r := range records {
					part := tr.Partition(tenant, r.partition)
					if st.run(set, meta, part, r.partition, r.value, time.Time{}) {
						pass++
					}
					if st.full() {
						st.flush()
					}
				}
				st.flush()
				st.counts.reset()
				return pass
			}
			run() // every series seen once: the cache and the budget know them
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			var pass int
			rebuilt = 0
			for i := 0; i < b.N; i++ {
				pass += run()
			}
			b.StopTimer()
			cpu := cpuTime() - cpu0
			b.ReportMetric(float64(samples*b.N)/b.Elapsed().Seconds(), "samples/s")
			// CPU time of the whole process (GC included), so the figure
			// holds on a machine shared with other work.
			b.ReportMetric(float64(samples*b.N)/cpu.Seconds(), "samples/cpu-s")
			// Records passed through, of all produced.
			b.ReportMetric(float64(pass)/float64(pass+rebuilt), "passthrough")
			if a, _ := tr.Active(tenant, ""); a != 10000 {
				b.Fatalf("%d active series, want 10000", a)
			}
		})
	}
}
