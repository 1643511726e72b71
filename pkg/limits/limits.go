// Package limits holds the per-tenant admission limits of the edge: their
// values (defaults and per-tenant overrides from a runtime file that can be
// reloaded at any time), the checks of a request's series against them,
// per-tenant ingestion rate token buckets, and how close each tenant is to
// each limit.
//
// Like Mimir's runtime overrides, the per-tenant settings also carry a few
// choices that are not limits but decide how a tenant's data is admitted
// (the InfluxDB line protocol mapping), so that everything about a tenant
// lives in one place.
package limits

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/weir-metrics/weir/pkg/tenant"
)

// Limits are the limits and admission choices of one tenant. A zero
// numeric limit means unlimited.
type Limits struct {
	// IngestionRate is the samples (floats and histograms) per second a
	// tenant may write through one edge, refilling a token bucket of
	// IngestionBurst samples. Beyond it writes get 429.
	IngestionRate float64 `yaml:"ingestion_rate"`
	// IngestionBurst is the size of the token bucket; 0 means one second of
	// IngestionRate.
	IngestionBurst int `yaml:"ingestion_burst"`
	// MaxRequestBytes bounds a request body as sent; larger gets 413.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// MaxDecompressedBytes bounds a body after decompression; it is
	// enforced while inflating, so a compression bomb is stopped at this
	// size. Larger gets 413.
	MaxDecompressedBytes int64 `yaml:"max_decompressed_bytes"`
	// MaxLabelsPerSeries bounds the labels of a series, metric name
	// included.
	MaxLabelsPerSeries int `yaml:"max_labels_per_series"`
	// MaxLabelNameLength bounds a label name, in bytes.
	MaxLabelNameLength int `yaml:"max_label_name_length"`
	// MaxLabelValueLength bounds a label value (metric names included), in
	// bytes.
	MaxLabelValueLength int `yaml:"max_label_value_length"`
	// MaxFutureSkew is how far ahead of the edge's clock a sample's
	// timestamp may be.
	MaxFutureSkew time.Duration `yaml:"max_future_skew"`
	// MaxExemplarsPerSeries bounds the exemplars of one series in one
	// request.
	MaxExemplarsPerSeries int `yaml:"max_exemplars_per_series"`
	// MaxTenantInflightBytes bounds the request memory the tenant's writes
	// hold at once in one edge (bodies, decompressed bodies and what is
	// decoded from them); beyond it writes get 429.
	MaxTenantInflightBytes int64 `yaml:"max_tenant_inflight_bytes"`
	// MaxBackfillAge bounds how old data `weir backfill` may write.
	MaxBackfillAge time.Duration `yaml:"max_backfill_age"`
	// OutOfOrderWindow is how much older than a series' newest sample the
	// tenant's TSDB shards accept a sample (the sink applies it).
	OutOfOrderWindow time.Duration `yaml:"out_of_order_window"`

	// InfluxStringFields is drop (count and drop string field values) or
	// info (keep them as labels of a <measurement>_info series).
	InfluxStringFields string `yaml:"influx_string_fields"`
	// InfluxDatabaseLabel, when set, is a label that carries the db (v1)
	// or bucket (v2) of line-protocol writes.
	InfluxDatabaseLabel string `yaml:"influx_database_label"`
	// InfluxKeepNames keeps measurement, field and tag names as sent
	// instead of sanitizing them to the Prometheus charset.
	InfluxKeepNames bool `yaml:"influx_keep_names"`
}

// Names of the limits, as in the runtime file; they are also the reason
// labels of refusals and the limit label of usage metrics.
const (
	IngestionRate         = "ingestion_rate"
	MaxRequestBytes       = "max_request_bytes"
	MaxDecompressedBytes  = "max_decompressed_bytes"
	MaxLabelsPerSeries    = "max_labels_per_series"
	MaxLabelNameLength    = "max_label_name_length"
	MaxLabelValueLength   = "max_label_value_length"
	MaxFutureSkew         = "max_future_skew"
	MaxExemplarsPerSeries = "max_exemplars_per_series"
	// MaxTenantInflightBytes is the tenant's share of the edge's request
	// memory; MaxInflightBytes (edge.max_inflight_bytes) is not a tenant
	// limit, only the reason of refusals for the edge's whole share.
	MaxTenantInflightBytes = "max_tenant_inflight_bytes"
	MaxInflightBytes       = "max_inflight_bytes"
	MaxBackfillAge         = "max_backfill_age"
	OutOfOrderWindow       = "out_of_order_window"
)

// Validate reports every value that cannot work, naming it.
func (l *Limits) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	if l.IngestionRate < 0 {
		bad(IngestionRate, "must not be negative, got %v", l.IngestionRate)
	}
	if l.IngestionBurst < 0 {
		bad("ingestion_burst", "must not be negative, got %d", l.IngestionBurst)
	}
	if l.MaxRequestBytes < 1024 {
		bad(MaxRequestBytes, "must be at least 1024, got %d", l.MaxRequestBytes)
	}
	if l.MaxDecompressedBytes < l.MaxRequestBytes {
		bad(MaxDecompressedBytes, "must be at least max_request_bytes (%d), got %d", l.MaxRequestBytes, l.MaxDecompressedBytes)
	}
	for _, v := range []struct {
		name string
		v    int
	}{
		{MaxLabelsPerSeries, l.MaxLabelsPerSeries},
		{MaxLabelNameLength, l.MaxLabelNameLength},
		{MaxLabelValueLength, l.MaxLabelValueLength},
		{MaxExemplarsPerSeries, l.MaxExemplarsPerSeries},
	} {
		if v.v < 0 {
			bad(v.name, "must not be negative (0 is unlimited), got %d", v.v)
		}
	}
	if l.MaxTenantInflightBytes < 0 || l.MaxTenantInflightBytes > 0 && l.MaxTenantInflightBytes < l.MaxRequestBytes {
		bad(MaxTenantInflightBytes, "must be 0 (unlimited) or at least max_request_bytes (%d), or the largest body could not even be read; got %d", l.MaxRequestBytes, l.MaxTenantInflightBytes)
	}
	if math.IsNaN(l.IngestionRate) || math.IsInf(l.IngestionRate, 0) {
		bad(IngestionRate, "must be a finite number, got %v", l.IngestionRate)
	}
	if l.MaxFutureSkew < 0 {
		bad(MaxFutureSkew, "must not be negative (0 is unlimited), got %s", l.MaxFutureSkew)
	}
	if l.MaxBackfillAge < 0 {
		bad(MaxBackfillAge, "must not be negative (0 is unlimited), got %s", l.MaxBackfillAge)
	}
	if l.OutOfOrderWindow < 0 {
		bad(OutOfOrderWindow, "must not be negative, got %s", l.OutOfOrderWindow)
	}
	switch l.InfluxStringFields {
	case "drop", "info":
	default:
		bad("influx_string_fields", "%q is not one of drop, info", l.InfluxStringFields)
	}
	if n := l.InfluxDatabaseLabel; n != "" && (!isLabelName(n) || strings.HasPrefix(n, "__")) {
		bad("influx_database_label", "%q is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)", n)
	}
	return errors.Join(errs...)
}

func isLabelName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return s != ""
}

// Burst is the token bucket size in force: IngestionBurst, or one second of
// IngestionRate when that is 0.
func (l *Limits) Burst() float64 {
	if l.IngestionBurst > 0 {
		return float64(l.IngestionBurst)
	}
	return l.IngestionRate
}

// Overrides are the limits in force: the defaults, replaced field by field
// by the runtime file's defaults and then by its entry for a tenant. Safe
// for concurrent use; Load swaps everything at once.
type Overrides struct {
	static Limits
	cur    atomic.Pointer[table]
}

type table struct {
	defaults *Limits
	tenants  map[string]*Limits
}

// NewOverrides returns overrides that give every tenant defaults until a
// runtime file is loaded. defaults must be valid.
func NewOverrides(defaults Limits) *Overrides {
	o := &Overrides{static: defaults}
	d := defaults
	o.cur.Store(&table{defaults: &d})
	return o
}

// For returns the limits of tenant. The result is shared: do not modify it.
func (o *Overrides) For(tenant string) *Limits {
	t := o.cur.Load()
	if l, ok := t.tenants[tenant]; ok {
		return l
	}
	return t.defaults
}

// Tenants lists the tenants the runtime file names, sorted.
func (o *Overrides) Tenants() []string {
	return slices.Sorted(maps.Keys(o.cur.Load().tenants))
}

// runtimeFile is the runtime file's layout:
//
//	defaults:            # optional, replaces the configured defaults
//	  ingestion_rate: 200000
//	tenants:
//	  team-a:
//	    ingestion_rate: 500000
//	    influx_string_fields: info
type runtimeFile struct {
	Defaults yaml.Node            `yaml:"defaults"`
	Tenants  map[string]yaml.Node `yaml:"tenants"`
}

// Load parses a runtime file and puts it in force. A file that does not
// parse or holds an invalid value is refused as a whole, naming the tenant
// and the setting, and the limits in force stay as they were.
func (o *Overrides) Load(data []byte) error {
	t, err := o.parse(data)
	if err != nil {
		return err
	}
	o.cur.Store(t)
	return nil
}

func (o *Overrides) parse(data []byte) (*table, error) {
	var f runtimeFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("runtime file: %w", err)
	}
	defaults := o.static
	if err := decodeOver(&f.Defaults, &defaults); err != nil {
		return nil, fmt.Errorf("runtime file: defaults: %w", err)
	}
	if err := defaults.Validate(); err != nil {
		return nil, fmt.Errorf("runtime file: defaults: %w", err)
	}
	t := &table{defaults: &defaults, tenants: make(map[string]*Limits, len(f.Tenants))}
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(f.Tenants)) {
		node := f.Tenants[id]
		if err := tenant.ValidateID(id); err != nil {
			errs = append(errs, fmt.Errorf("runtime file: tenants: %w", err))
			continue
		}
		l := defaults
		if err := decodeOver(&node, &l); err != nil {
			errs = append(errs, fmt.Errorf("runtime file: tenant %s: %w", id, err))
			continue
		}
		if err := l.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("runtime file: tenant %s: %w", id, err))
			continue
		}
		t.tenants[id] = &l
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// decodeOver decodes node onto l, so that the settings node leaves out
// keep l's values. Unknown settings are errors: a misspelt limit must not
// silently leave the default in force.
func decodeOver(node *yaml.Node, l *Limits) error {
	if node.Kind == 0 {
		return nil
	}
	if node.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a mapping of settings", node.Line)
	}
	for i := 0; i < len(node.Content); i += 2 {
		if k := node.Content[i].Value; !knownSettings[k] {
			return fmt.Errorf("line %d: unknown setting %q (docs/configuration.md lists the runtime settings)", node.Content[i].Line, k)
		}
	}
	return node.Decode(l)
}

// knownSettings are the keys of Limits in the runtime file.
var knownSettings = func() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeFor[Limits]()
	for i := 0; i < t.NumField(); i++ {
		m[t.Field(i).Tag.Get("yaml")] = true
	}
	return m
}()
