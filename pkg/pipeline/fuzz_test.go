package pipeline

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/weir-metrics/weir/pkg/prw"
)

// FuzzParseFile feeds arbitrary pipeline files to the parser every stream
// worker runs on reload (and `weir check pipelines`): it never panics, and
// a file it accepts compiles into a pipeline whose decisions, for a few
// series, are series the rest of weir accepts — labels sorted, names
// unique, a metric name, valid UTF-8 (prw.TimeSeries.Normalize finds
// nothing to change) — and never alias the input after a change.
func FuzzParseFile(f *testing.F) {
	for _, dir := range []string{"../../pipelines", "../../pipelines/examples"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(filepath.Base(p), b)
		}
	}
	f.Add("team-b.yaml", []byte("relabel:\n  - source_labels: [job]\n    regex: (.*)\n    target_label: __name__\n    replacement: x_${1}\n"))
	f.Add("default.yaml", []byte("guard_rails:\n  max_label_count: 1\n  max_label_value_length: 3\n  long_value_action: drop\n"))
	f.Add("default.yaml", []byte("relabel: [{action: labelmap, regex: 'i(.*)', replacement: 'j$1'}]\nrollups: [{name: r, resolutions: [5m]}]\n"))
	inputs := [][]prw.Label{
		{{Name: "__name__", Value: "up"}, {Name: "instance", Value: "10.0.0.1:9100"}, {Name: "job", Value: "node"}},
		{{Name: "__name__", Value: "http_request_duration_seconds_bucket"}, {Name: "le", Value: "0.5"}, {Name: "path", Value: "/a/very/long/path/of/some/service"}, {Name: "pod_template_hash", Value: "abc"}},
		{{Name: "__name__", Value: "ümlaut_metric"}, {Name: "ä", Value: "ö"}},
	}
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		if !IsPipelineFile(name) {
			name = "fuzz.yaml"
		}
		def, err := ParseFile(name, data)
		if err != nil {
			return
		}
		set := Build(map[string]*Definition{name: def})
		p := set.For(TenantOf(name))
		if p == nil {
			t.Fatalf("no pipeline for tenant %q of file %s", TenantOf(name), name)
		}
		for _, in := range inputs {
			orig := slices.Clone(in)
			d := p.Apply(TenantOf(name), slices.Clone(in))
			if d.Drop != "" {
				continue
			}
			ts := prw.TimeSeries{Labels: slices.Clone(d.Labels)}
			if err := ts.Normalize(); err != nil {
				t.Fatalf("pipeline turned %v into %v, which weir refuses: %v", orig, d.Labels, err)
			}
			if !slices.Equal(ts.Labels, d.Labels) {
				t.Fatalf("pipeline output %v is not normalised (%v)", d.Labels, ts.Labels)
			}
			if d.Changed == slices.Equal(d.Labels, orig) {
				t.Fatalf("Changed=%v for %v -> %v", d.Changed, orig, d.Labels)
			}
		}
	})
}
