package prw

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// InvalidSeriesError is returned by TimeSeries.Normalize for a series that
// Prometheus' remote-write receiver would reject with 400 Bad Request. Its
// message names the problem and the series, suitable for a 400 response
// body.
type InvalidSeriesError struct {
	// Series is the series' labels as a selector, e.g.
	// `up{instance="a:9100", job="node"}`, at most about 1 KiB. It is
	// rendered when the error is created because the labels usually alias a
	// request buffer that is reused afterwards.
	Series string
	// Reason says what is wrong, e.g. `duplicate label name "job"`.
	Reason string
	// Err is the underlying error, if any (native histogram validation
	// errors from model/histogram, so errors.Is works on them).
	Err error
}

func (e *InvalidSeriesError) Error() string {
	return "invalid series " + e.Series + ": " + e.Reason
}

func (e *InvalidSeriesError) Unwrap() error { return e.Err }

func invalidSeries(ls []Label, err error, format string, args ...any) *InvalidSeriesError {
	return &InvalidSeriesError{Series: Selector(ls), Reason: fmt.Sprintf(format, args...), Err: err}
}

// Normalize sorts ts.Labels by name if they are not sorted (it does not
// allocate when they are), checks the series the way Prometheus'
// remote-write receiver and TSDB do, and drops labels with an empty value,
// which Prometheus treats as absent (its TSDB appender drops them). It
// returns an *InvalidSeriesError for:
//   - no labels;
//   - a missing __name__ label or an empty metric name;
//   - an empty label name;
//   - a label name or value that is not valid UTF-8;
//   - a duplicate label name (checked before empty values are dropped, as
//     the receiver does);
//   - a native histogram that does not decode or fails Validate.
//
// Label names are checked for UTF-8 only (Prometheus' UTF8Validation), not
// for the legacy [a-zA-Z_][a-zA-Z0-9_]* charset. A series with neither
// samples nor histograms is not an error here, although a 2.0 receiver
// rejects it. Validating histograms decodes them and therefore allocates.
func (ts *TimeSeries) Normalize() error {
	ls := ts.Labels
	if len(ls) == 0 {
		return invalidSeries(ls, nil, "no labels")
	}
	empty, ok := checkLabelsFast(ls)
	if !ok {
		// Unsorted, not ASCII, or invalid: the checks in full, whose
		// first failure is the error.
		var err error
		if empty, err = checkLabels(ls); err != nil {
			return err
		}
	}
	if empty > 0 {
		n := 0
		for _, l := range ls {
			if l.Value != "" {
				ls[n] = l
				n++
			}
		}
		clear(ls[n:])
		ts.Labels = ls[:n]
	}
	return ts.CheckHistograms()
}

// CheckHistograms validates the native histograms of ts as Normalize
// does, for callers that know its labels to be normalised already.
func (ts *TimeSeries) CheckHistograms() error {
	for i := range ts.Histograms {
		if err := validateHistogram(&ts.Histograms[i]); err != nil {
			return invalidSeries(ts.Labels, err, "histogram %d: %v", i, err)
		}
	}
	return nil
}

// checkLabelsFast is the common case of checkLabels, in one pass and
// without a UTF-8 decoder: labels already sorted, names unique and
// non-empty, a metric name, all bytes ASCII (so valid UTF-8). It returns
// the number of empty values and whether all of that held; when it did
// not, checkLabels decides (and names the first problem). Normalize runs
// for every series the edge receives, and this halves its cost.
func checkLabelsFast(ls []Label) (empty int, ok bool) {
	var bytesOr uint64
	hasName := false
	for i := range ls {
		l := &ls[i]
		if i > 0 && strings.Compare(ls[i-1].Name, l.Name) >= 0 {
			return 0, false // unsorted or duplicate
		}
		if l.Name == "" {
			return 0, false
		}
		if l.Name == metricNameLabel {
			if l.Value == "" {
				return 0, false
			}
			hasName = true
		} else if l.Value == "" {
			empty++
		}
		bytesOr |= orBytes(l.Name) | orBytes(l.Value)
	}
	return empty, hasName && bytesOr&0x80 == 0
}

// checkLabels sorts ls by name if needed and checks it, returning the
// number of empty values or the first problem.
func checkLabels(ls []Label) (empty int, err error) {
	for i := 1; i < len(ls); i++ {
		if ls[i-1].Name > ls[i].Name {
			slices.SortFunc(ls, compareLabels)
			break
		}
	}
	hasName := false
	for i := range ls {
		l := &ls[i]
		switch {
		case l.Name == "":
			return 0, invalidSeries(ls, nil, "empty label name")
		case !validUTF8(l.Name):
			return 0, invalidSeries(ls, nil, "label name %q is not valid UTF-8", l.Name)
		case !validUTF8(l.Value):
			return 0, invalidSeries(ls, nil, "value of label %q is not valid UTF-8", l.Name)
		case i > 0 && ls[i-1].Name == l.Name:
			return 0, invalidSeries(ls, nil, "duplicate label name %q", l.Name)
		case l.Name == metricNameLabel:
			if l.Value == "" {
				return 0, invalidSeries(ls, nil, "empty metric name")
			}
			hasName = true
		case l.Value == "":
			empty++
		}
	}
	if !hasName {
		return 0, invalidSeries(ls, nil, "missing metric name (__name__ label)")
	}
	return empty, nil
}

// orBytes returns the bitwise OR of s's bytes, folded into the low byte:
// its high bit is set when s is not ASCII. It reads whole words,
// overlapping at the end, rather than byte by byte.
func orBytes(s string) uint64 {
	n := len(s)
	b := unsafe.Slice(unsafe.StringData(s), n)
	var acc uint64
	switch {
	case n >= 8:
		i := 0
		for ; i+8 <= n; i += 8 {
			acc |= binary.LittleEndian.Uint64(b[i:])
		}
		if i < n {
			acc |= binary.LittleEndian.Uint64(b[n-8:])
		}
	case n >= 4:
		acc = uint64(binary.LittleEndian.Uint32(b) | binary.LittleEndian.Uint32(b[n-4:]))
	default:
		for _, c := range b {
			acc |= uint64(c)
		}
	}
	acc |= acc >> 32
	acc |= acc >> 16
	acc |= acc >> 8
	return acc & 0xff
}

func compareLabels(a, b Label) int {
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return cmp.Compare(a.Value, b.Value)
}

func validateHistogram(h *Histogram) error {
	ih, fh, err := h.Decode()
	if err != nil {
		return err
	}
	if fh != nil {
		return fh.Validate()
	}
	return ih.Validate()
}

// maxSelectorLen bounds the selector in an InvalidSeriesError, which ends up
// in HTTP responses and logs.
const maxSelectorLen = 1024

// Selector renders labels as a PromQL selector: name{l="v", ...},
// with the Prometheus 3 quoted form {"name", "l.x"="v"} for names outside
// the legacy charset.
func Selector(ls []Label) string {
	var b strings.Builder
	name, hasName := "", false
	for _, l := range ls {
		if l.Name == metricNameLabel && l.Value != "" && !hasName {
			name, hasName = l.Value, true
		}
	}
	bare := hasName && isLegacyName(name, true)
	if bare {
		b.WriteString(name)
	}
	b.WriteByte('{')
	n := 0
	sep := func() {
		if n > 0 {
			b.WriteString(", ")
		}
		n++
	}
	if hasName && !bare {
		sep()
		b.WriteString(strconv.Quote(name))
	}
	nameDone := false
	for _, l := range ls {
		if b.Len() > maxSelectorLen {
			break
		}
		if hasName && !nameDone && l.Name == metricNameLabel && l.Value == name {
			nameDone = true // rendered above
			continue
		}
		sep()
		if isLegacyName(l.Name, false) {
			b.WriteString(l.Name)
		} else {
			b.WriteString(strconv.Quote(l.Name))
		}
		b.WriteByte('=')
		b.WriteString(strconv.Quote(l.Value))
	}
	b.WriteByte('}')
	s := b.String()
	if bare && n == 0 {
		s = name
	}
	if len(s) > maxSelectorLen {
		// strconv.Quote output is valid UTF-8 except where name is
		// rendered bare; cut at a rune start either way.
		cut := maxSelectorLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "...}"
	}
	return s
}

// isLegacyName reports whether s matches [a-zA-Z_][a-zA-Z0-9_]* (plus ':'
// for metric names), the names that need no quoting in PromQL.
func isLegacyName(s string, metric bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (metric && c == ':') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}

// validUTF8 is utf8.ValidString with a cheaper path for the short ASCII
// strings labels almost always are: it runs for every label of every
// series the edge receives, and checking 8 bytes per step halves its cost
// there (BenchmarkValidUTF8).
func validUTF8(s string) bool {
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:])&0x8080808080808080 != 0 {
			return utf8.ValidString(s[i:])
		}
	}
	for ; i < len(b); i++ {
		if b[i] >= utf8.RuneSelf {
			return utf8.ValidString(s[i:])
		}
	}
	return true
}
