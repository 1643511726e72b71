// Package influx turns InfluxDB line protocol into weir's series form
// (pkg/prw TimeSeries), so that line protocol is admitted, partitioned and
// encoded exactly like remote-write.
//
// Parsing is done by github.com/influxdata/line-protocol/v2's Decoder, the
// reference parser of the public line-protocol corpus. The mapping to
// series is Prometheus' usual one for InfluxDB data (docs/line-protocol.md
// has examples):
//
//   - every numeric field becomes one series named <measurement>_<field>,
//     or <measurement> for a field called "value";
//   - tags become labels; the database or bucket becomes a label only when
//     Options.DatabaseLabel names one;
//   - float, integer and unsigned values become float64 (integers beyond
//     2^53 lose precision), booleans 1 and 0;
//   - string fields are dropped and counted, or, with StringsAsInfo, kept as
//     labels of one <measurement>_info series of value 1;
//   - metric and label names are sanitized to the Prometheus charset unless
//     Options.KeepNames is set;
//   - timestamps are converted to milliseconds (rounded down); a line
//     without one gets the receive time.
package influx

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/weir-metrics/weir/pkg/prw"
)

// Precision is the unit of the timestamps in a request body.
type Precision uint8

const (
	Nanosecond Precision = iota
	Microsecond
	Millisecond
	Second
	Minute // InfluxDB 1.x /write only
	Hour   // InfluxDB 1.x /write only
)

var precisionNanos = [...]int64{1, 1e3, 1e6, 1e9, 60e9, 3600e9}

func (p Precision) String() string {
	return [...]string{"ns", "us", "ms", "s", "m", "h"}[p]
}

// ParsePrecision reads the precision query parameter. An empty value is
// nanoseconds, as in InfluxDB. InfluxDB 2 spells the units ns, us, ms and s;
// InfluxDB 1.x n (or ns), u, ms, s, m and h. Both spellings are accepted
// everywhere; minutes and hours only when v1 is set, as InfluxDB 2 refuses
// them.
func ParsePrecision(s string, v1 bool) (Precision, error) {
	switch s {
	case "", "ns", "n":
		return Nanosecond, nil
	case "us", "u", "µ", "µs":
		return Microsecond, nil
	case "ms":
		return Millisecond, nil
	case "s":
		return Second, nil
	case "m":
		if v1 {
			return Minute, nil
		}
	case "h":
		if v1 {
			return Hour, nil
		}
	}
	if v1 {
		return 0, fmt.Errorf("precision %q is not one of n, u, ms, s, m, h", s)
	}
	return 0, fmt.Errorf("precision %q is not one of ns, us, ms, s", s)
}

// StringFields says what happens to string field values.
type StringFields uint8

const (
	// DropStrings drops string fields; Batch.StringFieldsDropped counts
	// them.
	DropStrings StringFields = iota
	// StringsAsInfo keeps a line's string fields as labels of one
	// <measurement>_info series (value 1) next to the line's tags.
	StringsAsInfo
)

// ParseStringFields reads "drop" or "info".
func ParseStringFields(s string) (StringFields, error) {
	switch s {
	case "drop":
		return DropStrings, nil
	case "info":
		return StringsAsInfo, nil
	}
	return 0, fmt.Errorf("%q is not one of drop, info", s)
}

func (s StringFields) String() string {
	if s == StringsAsInfo {
		return "info"
	}
	return "drop"
}

// Options control the mapping of one request.
type Options struct {
	// Precision of the timestamps in the body.
	Precision Precision
	// DatabaseLabel, when not empty, is a label set to Database (the
	// request's db or bucket) on every series.
	DatabaseLabel string
	Database      string
	// StringFields says what to do with string field values.
	StringFields StringFields
	// KeepNames keeps measurement, field and tag names as sent (any UTF-8,
	// which Prometheus 3 accepts) instead of replacing characters outside
	// the Prometheus charset with '_'.
	KeepNames bool
	// Now is the timestamp of lines that carry none: the receive time.
	Now time.Time
}

// ParseError is a line the decoder or the mapping refused. Its message
// names the line and column, as InfluxDB does.
type ParseError struct {
	Line   int64
	Column int
	Err    error
	// Text is the start of the offending line, for the message.
	Text string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("unable to parse line %d, column %d: %v: %q", e.Line, e.Column, e.Err, e.Text)
}

func (e *ParseError) Unwrap() error { return e.Err }

// maxErrorText bounds the excerpt of the bad line in a ParseError.
const maxErrorText = 256

// Batch is the series of one request. Its zero value is ready to use;
// Parse reuses the memory of the previous request, so a warmed-up Batch
// allocates little.
//
// The label strings of Series alias the body given to Parse and the
// Batch's own buffer: both must stay unchanged until the series are
// encoded, and Series is only valid until the next Parse or Reset.
type Batch struct {
	Series []prw.TimeSeries
	// Lines is the number of lines parsed (comments and blank lines not
	// counted).
	Lines int
	// StringFieldsDropped counts string field values dropped under
	// DropStrings.
	StringFieldsDropped int

	invalid error // a line's series that cannot be normalised

	labels  []prw.Label
	samples []prw.Sample
	arena   []byte
	tags    []prw.Label // the current line's tags, sorted
	strs    []prw.Label // the current line's string fields
	nums    []numField  // the current line's numeric fields
	layout  layout

	// The previous line's tag keys by position, as sent and as label
	// names. Reusing the name when a line repeats a key saves checking
	// (and sanitizing) it again, tells emit the line's layout is the
	// previous one's, and makes equal names the same string, which later
	// comparisons (sorting checks, the record encoder's symbol cache)
	// settle by pointer.
	prevKeys   []prevKey
	keysReused int // keys of the current line found in prevKeys

	// The previous line's measurement and field name and the metric name
	// built from them: lines of one batch mostly repeat them.
	lastMeasurement, lastField, lastName string
	lastInfoMeasurement, lastInfoName    string
}

type prevKey struct{ raw, name string }

type numField struct {
	key   string
	value float64
}

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	clear(b.Series) // drop references to old bodies
	b.Series = b.Series[:0]
	b.Lines, b.StringFieldsDropped, b.invalid = 0, 0, nil
	b.labels = b.labels[:0]
	b.samples = b.samples[:0]
	b.arena = b.arena[:0]
	b.lastMeasurement, b.lastField, b.lastName = "", "", ""
	b.lastInfoMeasurement, b.lastInfoName = "", ""
	b.layout.ok = false
	clear(b.prevKeys) // they point into the previous body
	b.prevKeys = b.prevKeys[:0]
}

// Samples is the number of samples in the batch (one per series).
func (b *Batch) Samples() int { return len(b.Series) }

// Parse resets the batch and maps every line of data. The first line the
// decoder refuses stops it with a *ParseError, the first line whose series
// are invalid (two labels of one name) with the *prw.InvalidSeriesError
// that prw.TimeSeries.Normalize gives; the batch is then incomplete and
// must not be written. The series of a batch that parsed are normalised:
// Normalize would change nothing in them.
//
// Lines of the common shape are read by a hand-written scanner (fast.go);
// any other line, and every line with an error, goes through the
// reference decoder, so results and error messages are the decoder's.
func (b *Batch) Parse(data []byte, o *Options) error {
	b.Reset()
	return b.parse(data, o)
}

// parseSlow maps data with the reference decoder only. line is the number
// of lines of the body before data, for error messages.
func (b *Batch) parseSlow(data []byte, line int64, o *Options) error {
	dec := lineprotocol.NewDecoderWithBytes(data)
	for dec.Next() {
		if err := b.parseLine(dec, data, o); err != nil {
			pe := asParseError(err, data)
			pe.Line += line
			return pe
		}
		if b.invalid != nil {
			return b.invalid
		}
		b.Lines++
	}
	return nil
}

// lineError is an error the decoder does not locate (a timestamp out of
// range); at is where in data the problem is.
type lineError struct {
	at  int
	err error
}

func (e *lineError) Error() string { return e.err.Error() }

func asParseError(err error, data []byte) *ParseError {
	var de *lineprotocol.DecodeError
	if errors.As(err, &de) {
		return &ParseError{Line: de.Line, Column: de.Column, Err: de.Err, Text: lineText(data, de.Line)}
	}
	var le *lineError
	if errors.As(err, &le) {
		line := int64(1 + strings.Count(unsafeString(data[:le.at]), "\n"))
		col := le.at - (strings.LastIndexByte(unsafeString(data[:le.at]), '\n') + 1) + 1
		return &ParseError{Line: line, Column: col, Err: le.err, Text: lineText(data, line)}
	}
	return &ParseError{Line: 0, Column: 0, Err: err}
}

// lineText returns the start of line n (1-based) of data.
func lineText(data []byte, n int64) string {
	for i := int64(1); i < n; i++ {
		j := slices.Index(data, '\n')
		if j < 0 {
			return ""
		}
		data = data[j+1:]
	}
	if j := slices.Index(data, '\n'); j >= 0 {
		data = data[:j]
	}
	if len(data) > maxErrorText {
		return string(data[:maxErrorText]) + "…"
	}
	return string(data)
}

func (b *Batch) parseLine(dec *lineprotocol.Decoder, data []byte, o *Options) error {
	m, err := dec.Measurement()
	if err != nil {
		return err
	}
	measurement := b.str(m, data)
	tags := b.tags[:0]
	for {
		k, v, err := dec.NextTag()
		if err != nil {
			return err
		}
		if k == nil {
			break
		}
		tags = append(tags, prw.Label{Name: b.labelName(k, data, o), Value: b.str(v, data)})
	}
	b.tags = tags
	nums, strs := b.nums[:0], b.strs[:0]
	for {
		k, v, err := dec.NextField()
		if err != nil {
			return err
		}
		if k == nil {
			break
		}
		switch v.Kind() {
		case lineprotocol.Float:
			nums = append(nums, numField{b.str(k, data), v.FloatV()})
		case lineprotocol.Int:
			nums = append(nums, numField{b.str(k, data), float64(v.IntV())})
		case lineprotocol.Uint:
			nums = append(nums, numField{b.str(k, data), float64(v.UintV())})
		case lineprotocol.Bool:
			f := 0.0
			if v.BoolV() {
				f = 1
			}
			nums = append(nums, numField{b.str(k, data), f})
		case lineprotocol.String:
			if o.StringFields == StringsAsInfo {
				strs = append(strs, prw.Label{Name: b.labelName(k, data, o), Value: b.str(v.BytesV(), data)})
			} else {
				b.StringFieldsDropped++
			}
		}
	}
	b.nums, b.strs = nums, strs
	tb, err := dec.TimeBytes()
	if err != nil {
		return err
	}
	ts, err := timestamp(tb, o)
	if err != nil {
		at := len(data)
		if len(tb) > 0 {
			at = int(uintptr(unsafe.Pointer(&tb[0])) - uintptr(unsafe.Pointer(&data[0])))
		}
		return &lineError{at: at, err: err}
	}
	b.emit(measurement, ts, o, false)
	b.layout.ok = false // planned for tags fastLine's caches do not know
	return nil
}

// emit turns the line held in b.tags, b.nums and b.strs into series.
// sameLayout says that the tags have the same names in the same order as
// the previous line's, so the sorted order and the places of __name__ and
// the database label found for that line still hold.
//
// The series come out normalised by construction: labels sorted (the
// layout's order), non-empty and valid UTF-8 (the grammar), names unique
// (checked once per layout). A line whose series would not be, sets
// b.invalid to the error prw.TimeSeries.Normalize gives for it.
func (b *Batch) emit(measurement string, ts int64, o *Options, sameLayout bool) {
	tags, nums, strs := b.tags, b.nums, b.strs
	if len(nums) == 0 && len(strs) == 0 {
		return
	}
	if !sameLayout || !b.layout.ok {
		b.planLayout(o)
	}
	for _, f := range nums {
		ls := b.mergeLabels(tags, nil)
		ls[b.layout.nameAt].Value = b.metricName(measurement, f.key, o)
		b.appendSeries(ls, f.value, ts)
		if b.layout.dup {
			b.invalid = b.Series[len(b.Series)-1].Normalize()
			return
		}
	}
	if len(strs) > 0 {
		// String fields add labels anywhere in the order, and may be
		// empty or named like a tag: Normalize sorts, drops and checks.
		ls := b.mergeLabels(tags, strs)
		ls[b.layout.nameAt].Value = b.infoName(measurement, o)
		b.appendSeries(ls, 1, ts)
		info := &b.Series[len(b.Series)-1]
		info.Metadata.Type = prw.MetricTypeInfo
		if err := info.Normalize(); err != nil {
			b.invalid = err
		}
	}
}

// layout is where __name__ and the database label go among a line's
// sorted tags.
type layout struct {
	ok     bool // valid for the next line with the same tag names
	extras [2]prw.Label
	n      int    // extras in use
	at     [2]int // the tag index each extra goes before
	nameAt int    // index of __name__ in the merged labels
	dup    bool   // two labels share a name
}

// planLayout sorts the line's tags (they mostly arrive sorted: Telegraf
// sorts them) and finds where the extra labels go, before the first tag
// with a greater name.
func (b *Batch) planLayout(o *Options) {
	tags := b.tags
	sorted := slices.IsSortedFunc(tags, compareNames)
	if !sorted {
		slices.SortStableFunc(tags, compareNames)
	}
	l := &b.layout
	l.ok = sorted
	l.n = 0
	l.extras[l.n] = prw.Label{Name: metricNameLabel}
	l.n++
	if o.DatabaseLabel != "" && o.Database != "" { // an empty label is no label
		l.extras[l.n] = prw.Label{Name: o.DatabaseLabel, Value: o.Database}
		l.n++
		if l.extras[1].Name < l.extras[0].Name {
			l.extras[0], l.extras[1] = l.extras[1], l.extras[0]
		}
	}
	for e := 0; e < l.n; e++ {
		i := 0
		for i < len(tags) && tags[i].Name <= l.extras[e].Name {
			i++
		}
		l.at[e] = i
		if l.extras[e].Name == metricNameLabel {
			l.nameAt = i + e
		}
	}
	// Sanitizing can map two keys to one name ("a-b", "a_b"), and a tag
	// may be called like an extra label. Sorted, duplicates are
	// neighbours.
	l.dup = false
	for i := 1; i < len(tags); i++ {
		if tags[i].Name == tags[i-1].Name {
			l.dup = true
		}
	}
	for e := 0; e < l.n; e++ {
		if i := l.at[e]; i > 0 && tags[i-1].Name == l.extras[e].Name {
			l.dup = true
		}
	}
}

// mergeLabels appends the line's tags with the extra labels in their
// places, then more, to the label backing array and returns the result.
// Earlier series keep the array they were built in when it grows.
func (b *Batch) mergeLabels(tags, more []prw.Label) []prw.Label {
	l := &b.layout
	n := len(b.labels)
	prev := 0
	for e := 0; e < l.n; e++ {
		b.labels = append(b.labels, tags[prev:l.at[e]]...)
		b.labels = append(b.labels, l.extras[e])
		prev = l.at[e]
	}
	b.labels = append(b.labels, tags[prev:]...)
	b.labels = append(b.labels, more...)
	return b.labels[n:len(b.labels):len(b.labels)]
}

const metricNameLabel = "__name__"

func compareNames(a, b prw.Label) int { return strings.Compare(a.Name, b.Name) }

func (b *Batch) appendSeries(ls []prw.Label, v float64, ts int64) {
	n := len(b.samples)
	b.samples = append(b.samples, prw.Sample{Value: v, Timestamp: ts})
	b.Series = append(b.Series, prw.TimeSeries{Labels: ls, Samples: b.samples[n : n+1 : n+1]})
}

// timestamp converts the timestamp text of a line to milliseconds. A
// timestamp is valid when it fits int64 nanoseconds, the range of InfluxDB
// and of the reference decoder.
func timestamp(tb []byte, o *Options) (int64, error) {
	unit := precisionNanos[o.Precision]
	if tb == nil {
		ns := o.Now.UnixNano()
		return floorDiv(ns-mod(ns, unit), 1e6), nil
	}
	v, ok := parseDigits(tb)
	var err error
	if !ok {
		v, err = strconv.ParseInt(unsafeString(tb), 10, 64)
	}
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, errors.New("invalid timestamp: value out of range")
		}
		return 0, errors.New("invalid timestamp: invalid syntax")
	}
	if unit == 1 {
		return floorDiv(v, 1e6), nil
	}
	ns := v * unit
	if ns/unit != v {
		return 0, errors.New("invalid timestamp: value out of range")
	}
	return floorDiv(ns, 1e6), nil
}

// parseDigits reads an optionally negative decimal of at most 19 digits
// that fits int64, the common case, in a fraction of strconv.ParseInt's
// time; anything else (and so every error) is left to strconv.ParseInt.
func parseDigits(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v uint64 // 19 digits fit
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	if neg {
		return -int64(v), true
	}
	return int64(v), true
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// str returns s as a string without copying when it lies inside data (the
// decoder returns unescaped tokens as slices of its input), else a copy in
// the batch's arena.
func (b *Batch) str(s, data []byte) string {
	if len(s) == 0 {
		return ""
	}
	if inside(s, data) {
		return unsafeString(s)
	}
	return b.copyString(s)
}

func inside(s, data []byte) bool {
	if len(data) == 0 {
		return false
	}
	p, start := uintptr(unsafe.Pointer(&s[0])), uintptr(unsafe.Pointer(&data[0]))
	return p >= start && p < start+uintptr(len(data))
}

// copyString copies s into the arena. The arena never moves what it
// already holds: when full, a new chunk is started and the strings that
// point into the old one keep it alive.
func (b *Batch) copyString(s []byte) string {
	if len(b.arena)+len(s) > cap(b.arena) {
		b.arena = make([]byte, 0, max(64<<10, len(s), 2*cap(b.arena)))
	}
	n := len(b.arena)
	b.arena = append(b.arena, s...)
	return unsafeString(b.arena[n:])
}

func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// labelName maps a tag or string field key to a label name.
func (b *Batch) labelName(k, data []byte, o *Options) string {
	if o.KeepNames || isLabelName(k) {
		return b.str(k, data)
	}
	// The offset is taken after grow: a new chunk starts empty.
	buf := b.grow(len(k) + 1)
	n := len(buf)
	b.arena = appendSanitized(buf, k, false)
	return unsafeString(b.arena[n:])
}

// grow makes room for n more bytes in the arena without moving it.
func (b *Batch) grow(n int) []byte {
	if len(b.arena)+n > cap(b.arena) {
		b.arena = make([]byte, 0, max(64<<10, n, 2*cap(b.arena)))
	}
	return b.arena
}

// metricName is <measurement>_<field>, or <measurement> for the field
// "value", sanitized unless KeepNames.
func (b *Batch) metricName(measurement, field string, o *Options) string {
	if measurement == b.lastMeasurement && field == b.lastField && b.lastName != "" {
		return b.lastName
	}
	var name string
	if field == "value" && (o.KeepNames || isMetricName(measurement)) {
		name = measurement
	} else {
		buf := b.grow(len(measurement) + 1 + len(field) + 1)
		n := len(buf)
		buf = append(buf, measurement...)
		if field != "value" {
			buf = append(buf, '_')
			buf = append(buf, field...)
		}
		if !o.KeepNames && !isMetricName(unsafeString(buf[n:])) {
			raw := buf[n:]
			// Sanitizing never makes a name more than one byte longer
			// than its UTF-8 form; sanitize a copy so raw stays intact.
			tmp := append([]byte(nil), raw...)
			buf = appendSanitized(buf[:n], tmp, true)
		}
		b.arena = buf
		name = unsafeString(buf[n:])
	}
	b.lastMeasurement, b.lastField, b.lastName = measurement, field, name
	return name
}

// infoName names the series that holds a line's string fields.
func (b *Batch) infoName(measurement string, o *Options) string {
	if measurement == b.lastInfoMeasurement && b.lastInfoName != "" {
		return b.lastInfoName
	}
	buf := b.grow(len(measurement) + len("_info") + 1)
	n := len(buf)
	buf = append(buf, measurement...)
	buf = append(buf, "_info"...)
	if !o.KeepNames && !isMetricName(unsafeString(buf[n:])) {
		tmp := append([]byte(nil), buf[n:]...)
		buf = appendSanitized(buf[:n], tmp, true)
	}
	b.arena = buf
	b.lastInfoMeasurement, b.lastInfoName = measurement, unsafeString(buf[n:])
	return b.lastInfoName
}
