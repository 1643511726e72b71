package rollup

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/record"
)

func TestParseSpecs(t *testing.T) {
	specs, err := ParseSpecs([]byte(`
- name: default
  resolutions: [5m, 1h, 1d]
  allowed_lateness: 5m
- name: http_by_handler
  metrics: "http_.*"
  resolutions: [1h]
  by: [job, handler]
  allowed_lateness: 10m
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 || specs[0].Resolutions[2] != specs[0].Resolutions[1]*24 || !specs[1].Aggregated() ||
		!specs[1].matches("http_requests_total") || specs[1].matches("xhttp_requests_total") {
		t.Fatalf("parsed %+v", specs)
	}
	for yaml, want := range map[string]string{
		"- name: Bad\n  resolutions: [5m]":                               "name",
		"- name: a\n  resolutions: [7m]":                                 "divide a day",
		"- name: a\n  resolutions: [1h, 5m]":                             "larger than",
		"- name: a\n  resolutions: [5m, 7m]":                             "divide a day",
		"- name: a\n  resolutions: [10m, 15m]":                           "multiple",
		"- name: a\n  resolutions: []":                                   "at least one",
		"- name: a\n  resolutions: [1500ms]":                             "whole number of seconds",
		"- name: a\n  resolutions: [5m]\n  by: [a]\n  without: [b]":      "not both",
		"- name: a\n  resolutions: [5m]\n  by: [__name__]":               "always kept",
		"- name: a\n  resolutions: [5m]\n  metrics: '('":                 "metrics",
		"- name: a\n  resolutions: [5m]\n- name: a\n  resolutions: [1h]": "twice",
		"- name: a\n  resolutions: [5m]\n  lateness: 1m":                 "lateness",
	} {
		_, err := ParseSpecs([]byte(yaml))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one mentioning %q", yaml, err, want)
		}
	}
}

func TestRowRecordRoundTrip(t *testing.T) {
	inc := 4.5
	rows := []Row{
		{Tenant: "t", Rollup: "default", Metric: "a_total", Labels: map[string]string{"job": "x"}, SeriesHash: 1 << 63, ResolutionMs: 300_000, WindowStartMs: t0, Kind: KindCounter, Count: 2, Sum: 3, Increase: &inc},
		{Tenant: "t", Rollup: "default", Metric: "g", SeriesHash: 2, ResolutionMs: 300_000, WindowStartMs: t0, Kind: KindGauge, Count: 1, Sketch: []byte{1, 2, 3}},
	}
	values, err := EncodeRows(rows, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(values) != 2 {
		t.Fatalf("%d values for two rows larger than the limit, want 2", len(values))
	}
	var back []Row
	for _, v := range values {
		if back, err = DecodeRows(v, back); err != nil {
			t.Fatal(err)
		}
	}
	if len(back) != 2 || *back[0].Increase != 4.5 || back[0].SeriesHash != 1<<63 || string(back[1].Sketch) != "\x01\x02\x03" || back[1].Increase != nil {
		t.Fatalf("round trip: %+v", back)
	}
	hs := Headers(Meta{Tenant: "t", Watermark: t0, Generation: 3})
	m, err := ParseHeaders(hs)
	if err != nil || m.Tenant != "t" || m.Watermark != t0 || m.Generation != 3 {
		t.Fatalf("headers: %+v %v", m, err)
	}
	if _, err := ParseHeaders(append(hs[:1:1], kgo.RecordHeader{Key: record.HeaderTenant, Value: []byte("t")})); err == nil {
		t.Fatal("a record without watermark must be refused")
	}
	hs[0].Value = []byte("2")
	if _, err := ParseHeaders(hs); err == nil || !strings.Contains(err.Error(), "unknown record version") {
		t.Fatalf("version 2: %v", err)
	}
}

func TestCheckpointMetadata(t *testing.T) {
	cp := Checkpoint{Offset: 10, OffsetWatermark: t0, Position: 25, Watermark: t0 + 5000}
	back := ParseCheckpoint(10, cp.Metadata())
	if back != cp {
		t.Fatalf("round trip %+v, want %+v", back, cp)
	}
	// A commit weir did not write (another tool, kgo's default member-ID
	// metadata) starts afresh at the committed offset.
	fresh := ParseCheckpoint(7, "some-member-id")
	if fresh.Offset != 7 || fresh.Position != 7 || fresh.Watermark != unknownMark {
		t.Fatalf("foreign metadata: %+v", fresh)
	}
	if _, err := DefaultSpecs([]time.Duration{7 * time.Minute}, 0); err == nil {
		t.Fatal("7m does not divide a day")
	}
}
