package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"
	"gopkg.in/yaml.v3"

	"github.com/weir-metrics/weir/pkg/rollup"
	"github.com/weir-metrics/weir/pkg/tenant"
)

// FileError is a problem in a pipeline file, located by line.
type FileError struct {
	File    string
	Line    int
	Problem string
}

func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Problem)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Problem)
}

// generations numbers loaded Sets.
var generations atomic.Uint32

// IsPipelineFile reports whether a file name in a pipelines directory is
// a pipeline: <tenant>.yaml or <tenant>.yml. Other files (a README) are
// ignored.
func IsPipelineFile(name string) bool {
	return !strings.HasPrefix(name, ".") && (strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml"))
}

// TenantOf returns the tenant a pipeline file belongs to; "" for
// default.yaml.
func TenantOf(name string) string {
	base := strings.TrimSuffix(strings.TrimSuffix(name, ".yaml"), ".yml")
	if base == "default" {
		return ""
	}
	return base
}

// ParseFile parses and validates one pipeline file. name is used in
// messages and decides whether the file is the default.
func ParseFile(name string, data []byte) (*Definition, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line := yamlErrLine(err)
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.TrimPrefix(msg, fmt.Sprintf("line %d: ", line))
		return nil, &FileError{File: name, Line: line, Problem: msg}
	}
	def := &Definition{}
	if len(doc.Content) == 0 {
		return def, nil // an empty file: everything inherited
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &FileError{File: name, Line: root.Line, Problem: "a pipeline file is a mapping with the sections relabel, guard_rails, budget and rollups"}
	}
	var errs []error
	fail := func(line int, format string, args ...any) {
		errs = append(errs, &FileError{File: name, Line: line, Problem: fmt.Sprintf(format, args...)})
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if seen[k.Value] {
			fail(k.Line, "section %q appears twice", k.Value)
			continue
		}
		seen[k.Value] = true
		switch k.Value {
		case "relabel":
			def.hasRelabel = true
			def.Relabel = parseRelabel(v, fail)
		case "guard_rails":
			def.GuardRails = parseGuardRails(v, fail)
		case "budget":
			def.Budget = parseBudget(v, fail)
		case "rollups":
			def.hasRollups = true
			def.Rollups = parseRollups(v, fail)
		default:
			fail(k.Line, "unknown section %q; a pipeline has relabel, guard_rails, budget and rollups", k.Value)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return def, nil
}

type failFunc func(line int, format string, args ...any)

var relabelKeys = []string{"source_labels", "separator", "regex", "modulus", "target_label", "replacement", "action"}

func parseRelabel(n *yaml.Node, fail failFunc) []*relabel.Config {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		fail(n.Line, "relabel must be a list of rules (Prometheus metric_relabel_configs)")
		return nil
	}
	var out []*relabel.Config
	for i, item := range n.Content {
		if item.Kind != yaml.MappingNode {
			fail(item.Line, "relabel rule %d must be a mapping", i+1)
			continue
		}
		if !checkKeys(item, relabelKeys, fmt.Sprintf("relabel rule %d", i+1), fail) {
			continue
		}
		var c relabel.Config
		if err := item.Decode(&c); err != nil {
			line, msg := decodeErr(item, err)
			fail(line, "relabel rule %d: %s", i+1, msg)
			continue
		}
		if err := c.Validate(model.UTF8Validation); err != nil {
			fail(item.Line, "relabel rule %d: %v", i+1, err)
			continue
		}
		out = append(out, &c)
	}
	return out
}

var (
	railKeys       = []string{"max_label_count", "keep_labels", "max_label_value_length", "long_value_action", "metrics"}
	metricRailKeys = []string{"max_label_count", "keep_labels", "max_label_value_length", "long_value_action"}
	budgetKeys     = []string{"max_series", "max_series_per_metric", "metrics"}
)

func parseGuardRails(n *yaml.Node, fail failFunc) *GuardRails {
	g := &GuardRails{}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return g
	}
	if n.Kind != yaml.MappingNode {
		fail(n.Line, "guard_rails must be a mapping")
		return nil
	}
	if !checkKeys(n, railKeys, "guard_rails", fail) {
		return nil
	}
	if err := n.Decode(g); err != nil {
		line, msg := decodeErr(n, err)
		fail(line, "guard_rails: %s", msg)
		return nil
	}
	checkRail(fail, n, "guard_rails", &g.MaxLabelCount, &g.MaxLabelValueLength, &g.LongValueAction, g.KeepLabels)
	if g.LongValueAction == "" {
		g.LongValueAction = LongValueTruncate
	}
	if m := valueOf(n, "metrics"); m != nil {
		if m.Kind != yaml.MappingNode {
			fail(m.Line, "guard_rails.metrics must map metric names to guard rails")
			return nil
		}
		for i := 0; i+1 < len(m.Content); i += 2 {
			name, v := m.Content[i], m.Content[i+1]
			where := "guard_rails.metrics." + name.Value
			checkMetricName(fail, name)
			if v.Kind != yaml.MappingNode {
				fail(v.Line, "%s must be a mapping", where)
				continue
			}
			checkKeys(v, metricRailKeys, where, fail)
			mg := g.Metrics[name.Value]
			checkRail(fail, v, where, mg.MaxLabelCount, mg.MaxLabelValueLength, mg.LongValueAction, mg.KeepLabels)
		}
	}
	return g
}

func checkRail(fail failFunc, n *yaml.Node, where string, count, length *int, action *string, keep []string) {
	if count != nil && *count < 0 {
		fail(lineOf(n, "max_label_count"), "%s.max_label_count must be 0 (no limit) or positive, got %d", where, *count)
	}
	if length != nil && *length < 0 {
		fail(lineOf(n, "max_label_value_length"), "%s.max_label_value_length must be 0 (no limit) or positive, got %d", where, *length)
	}
	if length != nil && *length > 0 && *length < 4 {
		fail(lineOf(n, "max_label_value_length"), "%s.max_label_value_length must be at least 4 bytes (one UTF-8 character), got %d", where, *length)
	}
	if action != nil && *action != "" && *action != LongValueTruncate && *action != LongValueDrop {
		fail(lineOf(n, "long_value_action"), "%s.long_value_action %q is not truncate or drop", where, *action)
	}
	for _, k := range keep {
		if k == "" || !model.UTF8Validation.IsValidLabelName(k) {
			fail(lineOf(n, "keep_labels"), "%s.keep_labels: %q is not a label name", where, k)
		}
	}
}

func parseBudget(n *yaml.Node, fail failFunc) *Budget {
	b := &Budget{}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return b
	}
	if n.Kind != yaml.MappingNode {
		fail(n.Line, "budget must be a mapping")
		return nil
	}
	if !checkKeys(n, budgetKeys, "budget", fail) {
		return nil
	}
	if err := n.Decode(b); err != nil {
		line, msg := decodeErr(n, err)
		fail(line, "budget: %s", msg)
		return nil
	}
	if b.MaxSeries < 0 {
		fail(lineOf(n, "max_series"), "budget.max_series must be 0 (no limit) or positive, got %d", b.MaxSeries)
	}
	if b.MaxSeriesPerMetric < 0 {
		fail(lineOf(n, "max_series_per_metric"), "budget.max_series_per_metric must be 0 (no limit) or positive, got %d", b.MaxSeriesPerMetric)
	}
	if m := valueOf(n, "metrics"); m != nil && m.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(m.Content); i += 2 {
			name := m.Content[i]
			checkMetricName(fail, name)
			if v := b.Metrics[name.Value]; v < 0 {
				fail(m.Content[i+1].Line, "budget.metrics.%s must be 0 (no limit) or positive, got %d", name.Value, v)
			}
		}
	}
	return b
}

var rollupKeys = []string{"name", "metrics", "resolutions", "by", "without", "allowed_lateness"}

// parseRollups reads the rollups section: a list of rollup specs
// (pkg/rollup). An empty list means no rollups for the tenant.
func parseRollups(n *yaml.Node, fail failFunc) []rollup.Spec {
	out := []rollup.Spec{}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return out
	}
	if n.Kind != yaml.SequenceNode {
		fail(n.Line, "rollups must be a list of rollups (docs/rollups.md)")
		return nil
	}
	names := map[string]bool{}
	for i, item := range n.Content {
		where := fmt.Sprintf("rollups[%d]", i)
		if item.Kind != yaml.MappingNode {
			fail(item.Line, "%s must be a mapping", where)
			continue
		}
		if !checkKeys(item, rollupKeys, where, fail) {
			continue
		}
		var s rollup.Spec
		if err := item.Decode(&s); err != nil {
			line, msg := decodeErr(item, err)
			fail(line, "%s: %s", where, msg)
			continue
		}
		if err := s.Validate(); err != nil {
			fail(item.Line, "%s: %v", where, err)
			continue
		}
		if names[s.Name] {
			fail(lineOf(item, "name"), "%s: the name %q is used twice", where, s.Name)
			continue
		}
		names[s.Name] = true
		out = append(out, s)
	}
	return out
}

func checkMetricName(fail failFunc, n *yaml.Node) {
	if n.Value == "" || !utf8.ValidString(n.Value) {
		fail(n.Line, "%q is not a metric name", n.Value)
	}
}

// checkKeys refuses keys of a mapping outside allowed, naming the closest
// place; it reports whether all keys were known.
func checkKeys(n *yaml.Node, allowed []string, where string, fail failFunc) bool {
	ok := true
	for i := 0; i < len(n.Content); i += 2 {
		k := n.Content[i]
		known := false
		for _, a := range allowed {
			if k.Value == a {
				known = true
				break
			}
		}
		if !known {
			fail(k.Line, "%s: unknown field %q (known: %s)", where, k.Value, strings.Join(allowed, ", "))
			ok = false
		}
	}
	return ok
}

func valueOf(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func lineOf(n *yaml.Node, key string) int {
	if v := valueOf(n, key); v != nil {
		return v.Line
	}
	return n.Line
}

// decodeErr turns a yaml.v3 decoding error of node n into a line and a
// message: yaml.v3 writes "yaml: unmarshal errors:\n  line 7: cannot
// unmarshal ...", and the line belongs in front.
func decodeErr(n *yaml.Node, err error) (int, string) {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	s = strings.TrimPrefix(s, "unmarshal errors:\n  ")
	line := n.Line
	if l := yamlErrLine(err); l > 0 {
		line = l
	} else if _, e := fmt.Sscanf(s, "line %d:", &l); e == nil {
		line = l
	}
	s = strings.TrimPrefix(s, fmt.Sprintf("line %d: ", line))
	return line, strings.ReplaceAll(s, "\n  ", "; ")
}

func yamlErrLine(err error) int {
	var line int
	if _, e := fmt.Sscanf(strings.TrimPrefix(err.Error(), "yaml: "), "line %d:", &line); e == nil {
		return line
	}
	return 0
}

// LoadDir reads every pipeline file of dir and builds a Set. A missing dir
// is not an error: every tenant gets the built-in default (no rules, no
// guard rails, no budget). All problems are reported, each naming file and
// line.
func LoadDir(dir string) (*Set, error) {
	files, readErr := ReadDir(dir)
	defs := map[string]*Definition{}
	errs := []error{readErr}
	for _, f := range files {
		d, err := ParseFile(f.Path, f.Data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		defs[f.Name] = d
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return Build(defs), nil
}

// SourceFile is one file of a pipelines directory.
type SourceFile struct {
	Name string // base name
	Path string // as given, for messages
	Data []byte
}

// ReadDir reads the pipeline files of dir, sorted by name, refusing names
// that are not tenant IDs. A missing dir reads as empty.
func ReadDir(dir string) ([]SourceFile, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading pipelines directory: %w", err)
	}
	var out []SourceFile
	var errs []error
	for _, e := range entries {
		if e.IsDir() || !IsPipelineFile(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if t := TenantOf(e.Name()); t != "" {
			if err := tenant.ValidateID(t); err != nil {
				errs = append(errs, &FileError{File: path, Problem: fmt.Sprintf("the file name must be default.yaml or <tenant>.yaml with a valid tenant ID: %v", err)})
				continue
			}
		}
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading pipeline file: %w", err))
			continue
		}
		out = append(out, SourceFile{Name: e.Name(), Path: path, Data: data})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, errors.Join(errs...)
}

// Build compiles parsed definitions, keyed by file base name, into a Set:
// default.yaml (if any) is every tenant's base, and each section a tenant
// file has replaces the default's.
func Build(defs map[string]*Definition) *Set {
	base := &Definition{}
	baseName := ""
	for name, d := range defs {
		if TenantOf(name) == "" {
			base, baseName = d, name
		}
	}
	s := &Set{gen: generations.Add(1), tenants: map[string]*Pipeline{}}
	s.def = compile(base, nil, baseName, "")
	for name, d := range defs {
		if t := TenantOf(name); t != "" {
			s.tenants[t] = compile(d, base, name, baseName)
		}
	}
	return s
}

func compile(d, base *Definition, name, baseName string) *Pipeline {
	p := &Pipeline{}
	if name != "" {
		p.Sources = append(p.Sources, name)
	}
	inherited := false
	rel, gr, bud := d.Relabel, d.GuardRails, d.Budget
	if base != nil {
		if !d.hasRelabel {
			rel, inherited = base.Relabel, true
		}
		if gr == nil {
			gr, inherited = base.GuardRails, true
		}
		if bud == nil {
			bud, inherited = base.Budget, true
		}
	}
	p.Rollups = d.Rollups
	if base != nil && !d.hasRollups {
		p.Rollups = base.Rollups
		inherited = inherited || base.hasRollups
	}
	if inherited && baseName != "" {
		p.Sources = append(p.Sources, baseName)
	}
	p.relabel = rel
	p.rails = compileRails(gr)
	if bud == nil {
		bud = &Budget{}
	}
	p.Budget = bud
	return p
}
