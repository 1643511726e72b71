package pipeline

import (
	"crypto/md5"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"go.yaml.in/yaml/v2"

	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
)

func mustSet(t testing.TB, files map[string]string) *Set {
	t.Helper()
	defs := map[string]*Definition{}
	for name, body := range files {
		d, err := ParseFile(name, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		defs[name] = d
	}
	return Build(defs)
}

func toPRW(ls labels.Labels) []prw.Label {
	var out []prw.Label
	ls.Range(func(l labels.Label) { out = append(out, prw.Label{Name: l.Name, Value: l.Value}) })
	return out
}

func fromPRW(ls []prw.Label) labels.Labels {
	b := labels.NewScratchBuilder(len(ls))
	for _, l := range ls {
		b.Add(l.Name, l.Value)
	}
	b.Sort()
	return b.Labels()
}

// prometheusOracle applies rules with Prometheus' own code on its own label
// type, parsed by its own YAML library,
// with the tenant label visible during relabeling and removed after: what
// weir promises.
func prometheusOracle(t *testing.T, rulesYAML, tenant string, in labels.Labels) (labels.Labels, bool) {
	t.Helper()
	var cfgs []*relabel.Config
	// Prometheus parses its configuration with yaml v2; do the same here,
	// independently of weir's parser.
	if err := yaml.UnmarshalStrict([]byte(rulesYAML), &cfgs); err != nil {
		t.Fatal(err)
	}
	for _, c := range cfgs {
		if err := c.Validate(model.UTF8Validation); err != nil {
			t.Fatal(err)
		}
	}
	b := labels.NewBuilder(in)
	b.Set(TenantLabel, tenant)
	if !relabel.ProcessBuilder(b, cfgs...) {
		return labels.EmptyLabels(), false
	}
	return b.Del(TenantLabel).Labels(), true
}

var relabelInputs = []labels.Labels{
	labels.FromStrings("__name__", "http_requests_total", "job", "api", "instance", "10.0.0.1:9090", "method", "GET", "Code", "200"),
	labels.FromStrings("__name__", "http_requests_total", "job", "api", "instance", "10.0.0.2:9090", "method", "POST", "env", "prod"),
	labels.FromStrings("__name__", "go_gc_duration_seconds", "job", "node", "instance", "host-a:9100", "quantile", "0.5"),
	labels.FromStrings("__name__", "node_cpu_seconds_total", "job", "node", "instance", "host-b:9100", "cpu", "3", "mode", "idle", "env", "prod", "team", "prod"),
	labels.FromStrings("__name__", "up", "job", "API", "instance", "Host-C"),
}

// TestRelabelActionsMatchPrometheus runs every relabel action through
// weir's pipeline (parse, apply, cache round trip) and compares each
// result with Prometheus' relabel.Process on the same input.
func TestRelabelActionsMatchPrometheus(t *testing.T) {
	cases := map[string]string{
		"replace": `
- source_labels: [instance]
  regex: '([^:]+):\d+'
  target_label: host
  replacement: '${1}'`,
		"replace_delete_by_empty": `
- target_label: env
  replacement: ''`,
		"replace_dynamic_target": `
- source_labels: [method]
  regex: '(.+)'
  target_label: 'm_${1}'
  replacement: yes`,
		"keep":      "\n- source_labels: [job]\n  regex: api|node\n  action: keep",
		"drop":      "\n- source_labels: [__name__]\n  regex: go_.*\n  action: drop",
		"keepequal": "\n- source_labels: [env]\n  target_label: team\n  action: keepequal",
		"dropequal": "\n- source_labels: [env]\n  target_label: team\n  action: dropequal",
		"hashmod":   "\n- source_labels: [instance]\n  modulus: 7\n  target_label: shard\n  action: hashmod",
		"labelmap":  "\n- regex: '(method|job)'\n  replacement: 'orig_${1}'\n  action: labelmap",
		"labeldrop": "\n- regex: 'instance|Code'\n  action: labeldrop",
		"labelkeep": "\n- regex: '__name__|job'\n  action: labelkeep",
		"lowercase": "\n- source_labels: [job, instance]\n  target_label: job\n  action: lowercase",
		"uppercase": "\n- source_labels: [job]\n  separator: '-'\n  target_label: JOB\n  action: uppercase",
		"tenant_visible_then_removed": `
- source_labels: [__tenant__]
  target_label: owner
- source_labels: [__tenant__, job]
  regex: 'team-a;node'
  action: drop`,
	}
	for name, rules := range cases {
		t.Run(name, func(t *testing.T) {
			set := mustSet(t, map[string]string{"default.yaml": "relabel:" + rules})
			p := NewProcessor(NewCache(32 << 20))
			for _, in := range relabelInputs {
				want, keep := prometheusOracle(t, rules, "team-a", in)
				for pass := 0; pass < 2; pass++ { // a miss, then a cache hit
					res := p.Process(set, "team-a", toPRW(in))
					if !keep {
						if res.Drop != DropRelabel {
							t.Fatalf("pass %d: %s: Prometheus drops it, weir says %q %v", pass, in, res.Drop, res.Labels)
						}
						continue
					}
					if want.Get("__name__") == "" {
						if res.Drop != DropNoMetricName {
							t.Fatalf("pass %d: %s lost its name, want drop %q, got %q", pass, in, DropNoMetricName, res.Drop)
						}
						continue
					}
					if res.Drop != "" {
						t.Fatalf("pass %d: %s dropped (%s), Prometheus keeps %s", pass, in, res.Drop, want)
					}
					if got := fromPRW(res.Labels); !labels.Equal(got, want) {
						t.Fatalf("pass %d: %s: weir %s, Prometheus %s", pass, in, got, want)
					}
					if res.Changed != !labels.Equal(want, in) {
						t.Fatalf("pass %d: Changed=%v for %s → %s", pass, res.Changed, in, want)
					}
					if res.OutHash != record.SeriesHash("team-a", toPRW(want)) || res.RawHash != record.SeriesHash("team-a", toPRW(in)) {
						t.Fatalf("pass %d: hashes differ from record.SeriesHash", pass)
					}
					if res.Metric != want.Get("__name__") {
						t.Fatalf("pass %d: metric %q, want %q", pass, res.Metric, want.Get("__name__"))
					}
				}
			}
			if hits, misses := p.Stats(); hits != uint64(len(relabelInputs)) || misses != uint64(len(relabelInputs)) {
				t.Fatalf("cache hits %d misses %d, want %d each", hits, misses, len(relabelInputs))
			}
		})
	}
}

// TestRelabelKnownResults pins a few results by hand, so the oracle
// comparison above cannot pass by both sides being wrong the same way.
func TestRelabelKnownResults(t *testing.T) {
	set := mustSet(t, map[string]string{"default.yaml": `
relabel:
  - source_labels: [instance]
    regex: '([^:]+):\d+'
    target_label: host
  - source_labels: [instance]
    modulus: 4
    target_label: shard
    action: hashmod
  - source_labels: [__tenant__]
    target_label: owner
  - regex: instance
    action: labeldrop
`})
	p := NewProcessor(NewCache(32 << 20))
	in := toPRW(labels.FromStrings("__name__", "up", "instance", "db-1:9100", "job", "db"))
	res := p.Process(set, "team-x", in)
	sum := md5.Sum([]byte("db-1:9100"))
	shard := strconv.FormatUint(binary.BigEndian.Uint64(sum[8:])%4, 10)
	want := labels.FromStrings("__name__", "up", "host", "db-1", "job", "db", "owner", "team-x", "shard", shard)
	if got := fromPRW(res.Labels); !labels.Equal(got, want) {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestGuardRails(t *testing.T) {
	set := mustSet(t, map[string]string{"default.yaml": `
guard_rails:
  max_label_count: 3
  keep_labels: [job, zone]
  max_label_value_length: 8
  long_value_action: truncate
  metrics:
    strict:
      long_value_action: drop
    wide:
      max_label_count: 0
      max_label_value_length: 0
`})
	p := NewProcessor(NewCache(32 << 20))
	cases := []struct {
		in        labels.Labels
		drop      DropReason
		want      labels.Labels
		limited   bool
		truncated bool
	}{
		{ // within bounds: untouched
			in:   labels.FromStrings("__name__", "m", "a", "1", "job", "j"),
			want: labels.FromStrings("__name__", "m", "a", "1", "job", "j"),
		},
		{ // 5 labels: keep list first (job, zone), then a (name order)
			in:      labels.FromStrings("__name__", "m", "a", "1", "b", "2", "job", "j", "zone", "z", "c", "3"),
			want:    labels.FromStrings("__name__", "m", "a", "1", "job", "j", "zone", "z"),
			limited: true,
		},
		{ // long value truncated on a UTF-8 boundary: "héhéhé" is 9 bytes
			in:        labels.FromStrings("__name__", "m", "a", "héhéhé"),
			want:      labels.FromStrings("__name__", "m", "a", "héhéh"),
			truncated: true,
		},
		{ // per-metric override: drop instead of truncate
			in:   labels.FromStrings("__name__", "strict", "a", "123456789"),
			drop: DropLongValue,
		},
		{ // a label removed by the count limit cannot drop the series
			in:      labels.FromStrings("__name__", "strict", "job", "j", "zone", "z", "a", "1", "zz", "123456789"),
			want:    labels.FromStrings("__name__", "strict", "job", "j", "zone", "z", "a", "1"),
			limited: true,
		},
		{ // per-metric override: no limits at all
			in:   labels.FromStrings("__name__", "wide", "a", "123456789012", "b", "2", "c", "3", "d", "4"),
			want: labels.FromStrings("__name__", "wide", "a", "123456789012", "b", "2", "c", "3", "d", "4"),
		},
	}
	for i, c := range cases {
		for pass := 0; pass < 2; pass++ {
			res := p.Process(set, "t", toPRW(c.in))
			if res.Drop != c.drop {
				t.Fatalf("case %d pass %d: drop %q, want %q", i, pass, res.Drop, c.drop)
			}
			if c.drop != "" {
				continue
			}
			if got := fromPRW(res.Labels); !labels.Equal(got, c.want) {
				t.Fatalf("case %d pass %d: got %s, want %s", i, pass, got, c.want)
			}
			if res.LabelsLimited != c.limited || res.ValuesTruncated != c.truncated {
				t.Fatalf("case %d pass %d: limited %v truncated %v, want %v %v", i, pass, res.LabelsLimited, res.ValuesTruncated, c.limited, c.truncated)
			}
		}
	}
}

// TestTenantFilesInheritSections checks that a tenant file replaces the
// sections it has and inherits the others from default.yaml.
func TestTenantFilesInheritSections(t *testing.T) {
	set := mustSet(t, map[string]string{
		"default.yaml": `
relabel:
  - target_label: source
    replacement: default
guard_rails:
  max_label_count: 1
  keep_labels: [source]
budget:
  max_series: 100
`,
		"team-a.yaml": `
relabel:
  - target_label: source
    replacement: team-a
budget:
  max_series: 5
  metrics:
    big: 3
`,
		"team-b.yaml": "relabel: []\n",
	})
	p := NewProcessor(NewCache(32 << 20))
	in := toPRW(labels.FromStrings("__name__", "m", "a", "1"))
	for _, c := range []struct {
		tenant string
		want   labels.Labels
		budget int
	}{
		{"team-a", labels.FromStrings("__name__", "m", "source", "team-a"), 5}, // guard rails inherited: 1 label, source preferred
		{"team-b", labels.FromStrings("__name__", "m", "a", "1"), 100},         // no rules, inherited guard rails fit
		{"other", labels.FromStrings("__name__", "m", "source", "default"), 100},
	} {
		res := p.Process(set, c.tenant, in)
		if got := fromPRW(res.Labels); !labels.Equal(got, c.want) {
			t.Errorf("%s: got %s, want %s", c.tenant, got, c.want)
		}
		if b := set.For(c.tenant).Budget.MaxSeries; b != c.budget {
			t.Errorf("%s: budget %d, want %d", c.tenant, b, c.budget)
		}
	}
	if got := set.For("team-a").Budget.MetricLimit("big"); got != 3 {
		t.Errorf("metric limit %d", got)
	}
	if got := set.For("team-a").Sources; strings.Join(got, ",") != "team-a.yaml,default.yaml" {
		t.Errorf("sources %v", got)
	}
}

func TestBadFilesNameFileAndLine(t *testing.T) {
	cases := []struct {
		body string
		want string
	}{
		{"relabel:\n  - source_labels: [a]\n    regex: '(('\n", "bad.yaml:2: relabel rule 1:"},
		{"relabel:\n  - action: keep\n  - action: explode\n", `bad.yaml:3: relabel rule 2: unknown relabel action "explode"`},
		{"relabel:\n  - source_labels: [a]\n    target: b\n", `bad.yaml:3: relabel rule 1: unknown field "target"`},
		{"relabel:\n  - action: hashmod\n    target_label: x\n", "bad.yaml:2: relabel rule 1: relabel configuration for hashmod requires non-zero modulus"},
		{"budgets:\n  max_series: 3\n", `bad.yaml:1: unknown section "budgets"`},
		{"budget:\n  max_series: -3\n", "bad.yaml:2: budget.max_series must be 0 (no limit) or positive, got -3"},
		{"budget:\n  max_series: lots\n", "bad.yaml:2: budget: cannot unmarshal !!str `lots` into int"},
		{"guard_rails:\n  long_value_action: shorten\n", `bad.yaml:2: guard_rails.long_value_action "shorten" is not truncate or drop`},
		{"guard_rails:\n  metrics:\n    m:\n      max_label_count: -1\n", "bad.yaml:4: guard_rails.metrics.m.max_label_count must be 0 (no limit) or positive"},
		{"relabel: [\n", "bad.yaml:1: did not find expected node content"},
		{"- a\n- b\n", "bad.yaml:1: a pipeline file is a mapping"},
	}
	for _, c := range cases {
		_, err := ParseFile("bad.yaml", []byte(c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got  %v\n want %s", c.body, err, c.want)
		}
	}
	// A directory with a bad file and a file that is no tenant ID.
	dir := t.TempDir()
	write(t, dir, "default.yaml", "budget:\n  max_series: 10\n")
	write(t, dir, "team-a.yaml", "guard_rails:\n  max_label_count: x\n")
	write(t, dir, "bad tenant.yaml", "")
	write(t, dir, "README.md", "not a pipeline")
	_, err := LoadDir(dir)
	if err == nil {
		t.Fatal("LoadDir accepted a bad directory")
	}
	for _, want := range []string{filepath.Join(dir, "team-a.yaml") + ":2: guard_rails: cannot unmarshal", filepath.Join(dir, "bad tenant.yaml") + ": the file name must be default.yaml or <tenant>.yaml"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("LoadDir error lacks %q:\n%v", want, err)
		}
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func write(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestWatcherHotReload changes files under a running Watcher: good edits
// apply, a bad edit is refused with its file and line and the last good
// version keeps running, a removed file sends its tenant back to the
// default.
func TestWatcherHotReload(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "default.yaml", "relabel:\n  - target_label: v\n    replacement: d1\n")
	write(t, dir, "team-a.yaml", "relabel:\n  - target_label: v\n    replacement: a1\n")
	w, err := NewWatcher(dir, discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := NewProcessor(NewCache(32 << 20))
	in := toPRW(labels.FromStrings("__name__", "m"))
	check := func(tenant, want string) {
		t.Helper()
		res := p.Process(w.Set(), tenant, in)
		if got := fromPRW(res.Labels).Get("v"); got != want {
			t.Fatalf("%s: v=%q, want %q", tenant, got, want)
		}
	}
	check("team-a", "a1")
	check("team-b", "d1")

	if changed, err := w.Reload(); changed || err != nil {
		t.Fatalf("reload without change: changed=%v err=%v", changed, err)
	}
	gen := w.Set().Generation()
	write(t, dir, "team-a.yaml", "relabel:\n  - target_label: v\n    replacement: a2\n")
	if changed, err := w.Reload(); !changed || err != nil {
		t.Fatalf("reload: changed=%v err=%v", changed, err)
	}
	if w.Set().Generation() == gen {
		t.Fatal("generation did not change")
	}
	check("team-a", "a2")

	write(t, dir, "team-a.yaml", "relabel:\n  - target_label: v\n    replacement: a3\n    action: nonsense\n")
	write(t, dir, "default.yaml", "relabel:\n  - target_label: v\n    replacement: d2\n")
	_, err = w.Reload()
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "team-a.yaml")+":2:") || !strings.Contains(err.Error(), `unknown relabel action "nonsense"`) {
		t.Fatalf("bad file not refused with file:line: %v", err)
	}
	check("team-a", "a2") // last good version of the bad file
	check("team-b", "d2") // the good file of the same reload applied
	if _, err := w.Reload(); err == nil {
		t.Fatal("an unchanged bad file must still be reported")
	}

	if err := os.Remove(filepath.Join(dir, "team-a.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	check("team-a", "d2")
}

// TestCachedLabelsSurviveBatches checks that labels served from the cache
// stay intact after later batches reuse the processor.
func TestCachedLabelsSurviveBatches(t *testing.T) {
	set := mustSet(t, map[string]string{"default.yaml": "relabel:\n  - source_labels: [i]\n    target_label: copy\n"})
	p := NewProcessor(NewCache(32 << 20))
	check := func(rs []Result) {
		t.Helper()
		for _, r := range rs {
			if r.Labels[0].Name != "__name__" || r.Labels[1].Name != "copy" || r.Labels[1].Value != r.Labels[2].Value {
				t.Fatalf("cached labels were overwritten: %v", r.Labels)
			}
		}
	}
	var prev []Result
	for round := 0; round < 5; round++ {
		p.BeginBatch()
		// The previous batch's labels are intact while this one runs.
		var cur []Result
		for i := 0; i < 200; i++ {
			cur = append(cur, p.Process(set, "t", []prw.Label{{Name: "__name__", Value: "m"}, {Name: "i", Value: strconv.Itoa((i + round*37) % 200)}}))
			check(prev)
		}
		check(cur)
		prev = cur
	}
}

// TestRepositoryPipelines checks that the pipelines shipped in the
// repository, and the examples users start from, load.
func TestRepositoryPipelines(t *testing.T) {
	for _, dir := range []string{"../../pipelines", "../../pipelines/examples"} {
		files, err := ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("%s has no pipeline files", dir)
		}
		if _, err := LoadDir(dir); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
	}
}
