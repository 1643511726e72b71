package rollup

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// DefaultName names the default rollup: every admitted series, unaggregated.
const DefaultName = "default"

// Spec is one rollup of a tenant: which series, at which window sizes, and
// whether they are aggregated across series. In YAML, in a pipeline:
//
//	rollups:
//	  - name: http_by_handler        # [a-z0-9_]+, unique per tenant
//	    metrics: "http_requests_total|http_request_duration_seconds_.*"
//	    resolutions: [5m, 1h]
//	    by: [job, handler]           # or without: [instance, pod]
//	    allowed_lateness: 5m
type Spec struct {
	// Name identifies the rollup in rows and file names.
	Name string `yaml:"name"`
	// Metrics, when set, is a regular expression (RE2, anchored) the
	// metric name must match. Empty takes every series.
	Metrics string `yaml:"metrics,omitempty"`
	// Resolutions are the window sizes, smallest first. Each divides a day
	// (or is whole days) and divides the next, so the largest window
	// contains the smaller ones: duplicates are judged in it, the same way
	// for every resolution.
	Resolutions []model.Duration `yaml:"resolutions"`
	// By aggregates the series that agree on these labels (and on the
	// metric name, le and quantile, which are always kept). Empty with
	// Without also empty: one row per series.
	By []string `yaml:"by,omitempty"`
	// Without aggregates the series that agree on every label but these.
	Without []string `yaml:"without,omitempty"`
	// AllowedLateness is how long after a window's end, by the partition
	// watermark (receive time), its samples are still taken.
	AllowedLateness model.Duration `yaml:"allowed_lateness"`

	metrics *regexp.Regexp
}

// Specs returns the rollup specs of a tenant. The rollup stage reads them
// through this function so that their source (configuration defaults,
// pipeline files) stays outside this package.
type Specs func(tenant string) []Spec

// Static returns the same specs for every tenant.
func Static(specs []Spec) Specs { return func(string) []Spec { return specs } }

// DefaultSpecs is the rollup of every admitted series at the given
// resolutions, unaggregated.
func DefaultSpecs(resolutions []time.Duration, lateness time.Duration) ([]Spec, error) {
	s := Spec{Name: DefaultName, AllowedLateness: model.Duration(lateness)}
	for _, r := range resolutions {
		s.Resolutions = append(s.Resolutions, model.Duration(r))
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return []Spec{s}, nil
}

// ParseSpecs reads a YAML list of specs and validates them.
func ParseSpecs(b []byte) ([]Spec, error) {
	var specs []Spec
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&specs); err != nil {
		return nil, fmt.Errorf("rollups: %w", err)
	}
	if err := ValidateSpecs(specs); err != nil {
		return nil, err
	}
	return specs, nil
}

// ValidateSpecs validates every spec (compiling its metrics expression)
// and checks that names are unique.
func ValidateSpecs(specs []Spec) error {
	var errs []error
	seen := map[string]bool{}
	for i := range specs {
		if err := specs[i].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("rollups[%d]: %w", i, err))
			continue
		}
		if seen[specs[i].Name] {
			errs = append(errs, fmt.Errorf("rollups[%d]: name %q is used twice", i, specs[i].Name))
		}
		seen[specs[i].Name] = true
	}
	return errors.Join(errs...)
}

var nameRe = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

// Validate checks the spec and compiles its metrics expression.
func (s *Spec) Validate() error {
	if !nameRe.MatchString(s.Name) {
		return fmt.Errorf("name %q must be 1-64 characters of [a-z0-9_] (it appears in file names)", s.Name)
	}
	if err := ValidateResolutions(s.Resolutions); err != nil {
		return fmt.Errorf("rollup %s: %w", s.Name, err)
	}
	if len(s.By) > 0 && len(s.Without) > 0 {
		return fmt.Errorf("rollup %s: set by or without, not both", s.Name)
	}
	for _, l := range append(slices.Clone(s.By), s.Without...) {
		if !model.LabelName(l).IsValid() || l == model.MetricNameLabel {
			return fmt.Errorf("rollup %s: %q is not a label name that can be aggregated by (__name__ is always kept)", s.Name, l)
		}
	}
	if s.AllowedLateness < 0 {
		return fmt.Errorf("rollup %s: allowed_lateness must not be negative", s.Name)
	}
	s.metrics = nil
	if s.Metrics != "" {
		re, err := regexp.Compile("^(?:" + s.Metrics + ")$")
		if err != nil {
			return fmt.Errorf("rollup %s: metrics: %w", s.Name, err)
		}
		s.metrics = re
	}
	return nil
}

// ValidateResolutions checks window sizes: at least one, whole seconds,
// each dividing a day or being whole days (so epoch-aligned windows align
// to UTC days), increasing, each a multiple of the one before.
func ValidateResolutions(rs []model.Duration) error {
	if len(rs) == 0 {
		return errors.New("resolutions: at least one window size is needed")
	}
	const day = model.Duration(24 * time.Hour)
	for i, r := range rs {
		switch {
		case r < model.Duration(time.Second) || r%model.Duration(time.Second) != 0:
			return fmt.Errorf("resolutions: %s must be a whole number of seconds", r)
		case day%r != 0 && r%day != 0:
			return fmt.Errorf("resolutions: %s must divide a day or be whole days", r)
		case i > 0 && (r <= rs[i-1] || r%rs[i-1] != 0):
			return fmt.Errorf("resolutions: %s must be larger than and a multiple of %s", r, rs[i-1])
		}
	}
	return nil
}

// Aggregated reports whether the spec aggregates across series.
func (s *Spec) Aggregated() bool { return len(s.By) > 0 || len(s.Without) > 0 }

// matches reports whether the spec takes series of the metric name.
func (s *Spec) matches(metric string) bool { return s.metrics == nil || s.metrics.MatchString(metric) }
