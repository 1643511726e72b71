package rollup

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/record"
)

// Kinds of rows: how a window's samples were aggregated.
const (
	// KindCounter rows carry Increase (and float aggregates of the raw
	// counter values).
	KindCounter = "counter"
	// KindGauge rows carry a quantile sketch.
	KindGauge = "gauge"
	// KindHistogram rows carry the increase of a native counter histogram.
	KindHistogram = "histogram"
	// KindGaugeHistogram rows carry the sum of native gauge histograms.
	KindGaugeHistogram = "gauge_histogram"
)

// Row is the result of one closed window of one series (or of one group
// of series, for an aggregating rollup) of one partition. Rows travel
// through weir.<tenant>.rollup as JSON lines (docs/rollups.md) and end as
// Parquet rows.
type Row struct {
	Tenant    string `json:"tenant"`
	Rollup    string `json:"rollup"`
	Partition int32  `json:"partition"`
	Metric    string `json:"metric"`
	// Labels are the series' (or group's) labels without __name__.
	Labels map[string]string `json:"labels"`
	// SeriesHash is record.SeriesHash of the tenant and the full label set
	// (with __name__), the hash that also chose the partition; for an
	// aggregating rollup, of the group's labels.
	SeriesHash   uint64 `json:"series_hash"`
	ResolutionMs int64  `json:"resolution_ms"`
	// WindowStartMs is the start of [start, start+resolution), aligned to
	// the epoch.
	WindowStartMs int64 `json:"window_start_ms"`
	// AllowedLatenessMs is the rollup's lateness, which tells the Parquet
	// writer when a file's hour is complete.
	AllowedLatenessMs int64  `json:"allowed_lateness_ms"`
	Kind              string `json:"kind"`

	// Float samples taken, and their aggregates (meaningless when Count
	// is 0). First and Last are the samples with the smallest and largest
	// timestamp.
	Count            int64   `json:"count"`
	Sum              float64 `json:"sum"`
	Min              float64 `json:"min"`
	Max              float64 `json:"max"`
	First            float64 `json:"first"`
	FirstTimestampMs int64   `json:"first_timestamp_ms"`
	Last             float64 `json:"last"`
	LastTimestampMs  int64   `json:"last_timestamp_ms"`
	// Increase of a counter over the window: the sum of the steps between
	// consecutive samples, each step counted in the window of its later
	// sample, a drop counted as a reset to zero. Nil for gauges.
	Increase *float64 `json:"increase,omitempty"`
	// Resets is the number of counter resets seen in the window.
	Resets int64 `json:"resets,omitempty"`

	// HistogramCount is the number of native histogram samples taken.
	HistogramCount int64 `json:"histogram_count,omitempty"`
	// Histogram is the merged native histogram: the increase for counter
	// histograms, the sum for gauge histograms, encoded as a
	// io.prometheus.write.v2.Histogram protobuf message.
	Histogram []byte `json:"histogram,omitempty"`
	// Sketch is the DDSketch of a gauge's samples, encoded as the
	// DDSketch protobuf message of github.com/DataDog/sketches-go
	// (ddsketch/pb/ddsketch.proto).
	Sketch []byte `json:"sketch,omitempty"`
}

// MarshalJSON writes the row as its JSON line. The aggregates of finite
// samples can still overflow to ±Inf (a sum of large values), which JSON
// numbers cannot carry; such values are written as the strings "+Inf",
// "-Inf" and "NaN", as Prometheus' HTTP API writes sample values, so the
// row still reaches the Parquet file instead of being lost.
func (r Row) MarshalJSON() ([]byte, error) {
	type plain Row
	var inc *jsonFloat
	if r.Increase != nil {
		inc = (*jsonFloat)(r.Increase)
	}
	return json.Marshal(struct {
		plain
		Sum      jsonFloat  `json:"sum"`
		Min      jsonFloat  `json:"min"`
		Max      jsonFloat  `json:"max"`
		First    jsonFloat  `json:"first"`
		Last     jsonFloat  `json:"last"`
		Increase *jsonFloat `json:"increase,omitempty"`
	}{plain(r), jsonFloat(r.Sum), jsonFloat(r.Min), jsonFloat(r.Max), jsonFloat(r.First), jsonFloat(r.Last), inc})
}

// UnmarshalJSON reads a row written by MarshalJSON.
func (r *Row) UnmarshalJSON(b []byte) error {
	type plain Row
	aux := struct {
		*plain
		Sum      *jsonFloat `json:"sum"`
		Min      *jsonFloat `json:"min"`
		Max      *jsonFloat `json:"max"`
		First    *jsonFloat `json:"first"`
		Last     *jsonFloat `json:"last"`
		Increase *jsonFloat `json:"increase,omitempty"`
	}{plain: (*plain)(r), Sum: (*jsonFloat)(&r.Sum), Min: (*jsonFloat)(&r.Min), Max: (*jsonFloat)(&r.Max),
		First: (*jsonFloat)(&r.First), Last: (*jsonFloat)(&r.Last)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	r.Increase = (*float64)(aux.Increase)
	return nil
}

// jsonFloat is a float64 in JSON: a number when finite, else "+Inf",
// "-Inf" or "NaN".
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	switch v := float64(f); {
	case math.IsNaN(v):
		return []byte(`"NaN"`), nil
	case math.IsInf(v, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Inf"`), nil
	default:
		return json.Marshal(v)
	}
}

func (f *jsonFloat) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		switch s {
		case "+Inf":
			*f = jsonFloat(math.Inf(1))
		case "-Inf":
			*f = jsonFloat(math.Inf(-1))
		case "NaN":
			*f = jsonFloat(math.NaN())
		default:
			return fmt.Errorf("float value %q is none of a number, \"+Inf\", \"-Inf\", \"NaN\"", s)
		}
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = jsonFloat(v)
	return nil
}

// WindowEndMs is the (exclusive) end of the row's window.
func (r *Row) WindowEndMs() int64 { return r.WindowStartMs + r.ResolutionMs }

// ResolutionName writes a window size in its largest whole unit: 5m, 1h,
// 1d, 90s. File paths and metric labels use it.
func ResolutionName(ms int64) string {
	const hourMs = int64(time.Hour / time.Millisecond)
	units := []struct {
		suffix string
		ms     int64
	}{{"d", 24 * hourMs}, {"h", hourMs}, {"m", 60_000}, {"s", 1000}}
	for _, u := range units {
		if ms%u.ms == 0 {
			return strconv.FormatInt(ms/u.ms, 10) + u.suffix
		}
	}
	return strconv.FormatInt(ms, 10) + "ms"
}

// Key identifies a row within its tenant and partition; a recomputation
// produces rows with the same keys.
type Key struct {
	Rollup        string
	ResolutionMs  int64
	WindowStartMs int64
	SeriesHash    uint64
}

// Key returns the row's key.
func (r *Row) Key() Key {
	return Key{Rollup: r.Rollup, ResolutionMs: r.ResolutionMs, WindowStartMs: r.WindowStartMs, SeriesHash: r.SeriesHash}
}

// Record headers of weir.<tenant>.rollup, besides weir-version (RowVersion)
// and weir-tenant.
const (
	// HeaderWatermark is the source partition's watermark (Unix ms) after
	// the windows whose rows the record holds were closed: every window
	// with end + allowed lateness at or below it is closed.
	HeaderWatermark = "weir-rollup-watermark"
	// HeaderGeneration, when present and above 0, marks rows of a
	// recomputation: the Parquet writer replaces a file of an older
	// generation instead of merging into it. Live rows have generation 0.
	HeaderGeneration = "weir-rollup-generation"
)

// RowVersion is the rollup record format this code writes: JSON lines of
// Row.
const RowVersion = 1

// Meta is what a rollup record's headers say.
type Meta struct {
	Tenant     string
	Watermark  int64
	Generation int64
}

// Headers returns the headers of a rollup record.
func Headers(m Meta) []kgo.RecordHeader {
	hs := []kgo.RecordHeader{
		{Key: record.HeaderVersion, Value: []byte(strconv.Itoa(RowVersion))},
		{Key: record.HeaderTenant, Value: []byte(m.Tenant)},
		{Key: HeaderWatermark, Value: strconv.AppendInt(nil, m.Watermark, 10)},
	}
	if m.Generation > 0 {
		hs = append(hs, kgo.RecordHeader{Key: HeaderGeneration, Value: strconv.AppendInt(nil, m.Generation, 10)})
	}
	return hs
}

// ParseHeaders reads a rollup record's headers. A version this code does
// not know is an error: the reader must be upgraded, not guess.
func ParseHeaders(hs []kgo.RecordHeader) (Meta, error) {
	var (
		m        Meta
		version  = -1
		haveMark bool
	)
	for _, h := range hs {
		var err error
		switch h.Key {
		case record.HeaderVersion:
			version, err = strconv.Atoi(string(h.Value))
		case record.HeaderTenant:
			m.Tenant = string(h.Value)
		case HeaderWatermark:
			m.Watermark, err = strconv.ParseInt(string(h.Value), 10, 64)
			haveMark = true
		case HeaderGeneration:
			m.Generation, err = strconv.ParseInt(string(h.Value), 10, 64)
		}
		if err != nil {
			return m, fmt.Errorf("header %s=%q: %w", h.Key, h.Value, err)
		}
	}
	switch {
	case version < 0:
		return m, fmt.Errorf("%w %s", record.ErrMissingHeader, record.HeaderVersion)
	case version != RowVersion:
		return m, fmt.Errorf("%w %d (this weir reads rollup records up to %d)", record.ErrUnknownVersion, version, RowVersion)
	case m.Tenant == "":
		return m, fmt.Errorf("%w %s", record.ErrMissingHeader, record.HeaderTenant)
	case !haveMark:
		return m, fmt.Errorf("%w %s", record.ErrMissingHeader, HeaderWatermark)
	}
	return m, nil
}

// EncodeRows encodes rows as JSON lines, in values of at most maxBytes
// (a single larger row gets a value of its own).
func EncodeRows(rows []Row, maxBytes int) ([][]byte, error) {
	var (
		out [][]byte
		buf bytes.Buffer
	)
	for i := range rows {
		line, err := json.Marshal(&rows[i])
		if err != nil {
			return nil, fmt.Errorf("encoding rollup row %s/%d: %w", rows[i].Metric, rows[i].WindowStartMs, err)
		}
		if buf.Len() > 0 && buf.Len()+len(line)+1 > maxBytes {
			out = append(out, bytes.Clone(buf.Bytes()))
			buf.Reset()
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	if buf.Len() > 0 {
		out = append(out, bytes.Clone(buf.Bytes()))
	}
	return out, nil
}

// DecodeRows decodes a record value written by EncodeRows, appending to
// rows.
func DecodeRows(value []byte, rows []Row) ([]Row, error) {
	for len(value) > 0 {
		line := value
		if i := bytes.IndexByte(value, '\n'); i >= 0 {
			line, value = value[:i], value[i+1:]
		} else {
			value = nil
		}
		if len(line) == 0 {
			continue
		}
		var r Row
		if err := json.Unmarshal(line, &r); err != nil {
			return rows, fmt.Errorf("decoding rollup row: %w", err)
		}
		rows = append(rows, r)
	}
	return rows, nil
}
