package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// TestRollupsSection checks the rollups section: parsed into validated
// specs, errors located by file and line, inherited from default.yaml by
// tenant files without the section, and an empty list meaning none.
func TestRollupsSection(t *testing.T) {
	def, err := ParseFile("default.yaml", []byte(`
rollups:
  - name: default
    resolutions: [5m, 1h]
    allowed_lateness: 5m
  - name: http_by_handler
    metrics: http_requests_total
    resolutions: [1h]
    by: [job, handler]
    allowed_lateness: 10m
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(def.Rollups) != 2 || def.Rollups[1].By[1] != "handler" || def.Rollups[0].Resolutions[1] != model.Duration(time.Hour) {
		t.Fatalf("parsed %+v", def.Rollups)
	}
	none, err := ParseFile("team-b.yaml", []byte("rollups: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := ParseFile("team-c.yaml", []byte("budget:\n  max_series: 10\n"))
	if err != nil {
		t.Fatal(err)
	}
	set := Build(map[string]*Definition{"default.yaml": def, "team-b.yaml": none, "team-c.yaml": other})
	if r := set.For("team-b").Rollups; r == nil || len(r) != 0 {
		t.Errorf("team-b: %v, want no rollups", r)
	}
	if r := set.For("team-c").Rollups; len(r) != 2 {
		t.Errorf("team-c inherits %d rollups, want the default's 2", len(r))
	}
	if srcs := set.For("team-c").Sources; len(srcs) != 2 {
		t.Errorf("team-c sources %v, want its file and default.yaml", srcs)
	}
	if r := Build(nil).For("x").Rollups; r != nil {
		t.Errorf("without files: %v, want nil (the configured default)", r)
	}

	for yaml, want := range map[string]string{
		"rollups:\n  - name: a\n    resolutions: [7m]\n":                                     "t.yaml:2: rollups[0]",
		"rollups:\n  - name: a\n    resolutions: [5m]\n    allowed_latenes: 1m\n":            "t.yaml:4: rollups[0]: unknown field \"allowed_latenes\"",
		"rollups:\n  - name: a\n    resolutions: [5m]\n  - name: a\n    resolutions: [1h]\n": "used twice",
		"rollups: 5\n": "rollups must be a list",
	} {
		_, err := ParseFile("t.yaml", []byte(yaml))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", yaml, err, want)
		}
	}
}
