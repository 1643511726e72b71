package pipeline

import (
	"fmt"
	"testing"

	"github.com/weir-metrics/weir/pkg/prw"
)

const benchPipeline = `
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
guard_rails:
  max_label_count: 30
  keep_labels: [job, instance]
  max_label_value_length: 2048
`

func benchSeries(n int) [][]prw.Label {
	out := make([][]prw.Label, n)
	for i := range out {
		out[i] = []prw.Label{
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
	}
	return out
}

// BenchmarkPipeline compares running ten relabel rules and guard rails on
// a series (uncached: what every new series costs) with the cached
// decision of a series already seen.
func BenchmarkPipeline(b *testing.B) {
	def, err := ParseFile("default.yaml", []byte(benchPipeline))
	if err != nil {
		b.Fatal(err)
	}
	set := Build(map[string]*Definition{"default.yaml": def})
	series := benchSeries(10000)
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if d := set.For("t").Apply("t", series[i%len(series)]); !d.Changed {
				b.Fatal("rules did not apply")
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		p := NewProcessor(NewCache(64 << 20))
		for _, s := range series {
			p.Process(set, "t", s)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if i%len(series) == 0 {
				p.BeginBatch()
			}
			if r := p.Process(set, "t", series[i%len(series)]); !r.Changed {
				b.Fatal("rules did not apply")
			}
		}
	})
}
