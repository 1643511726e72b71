package prw

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// The helpers in this file convert both this package's Request and the
// generated prompb/writev2 types into one comparable form, so tests can
// check field by field that they decode the same thing.

type cSeries struct {
	Labels    []Label
	Samples   []cSample
	Hists     []cHist
	Exemplars []cExemplar
	Meta      Metadata
}

// Floats are compared bitwise so that NaN and -0 are checked too.
type cSample struct {
	V     uint64
	T, ST int64
}

// cHist holds a histogram as the canonical writev2 encoding of its fields
// (start_timestamp cleared; that is compared as ST) so that messages with
// the same content compare equal whatever their original encoding.
type cHist struct {
	Canon string
	T, ST int64
}

type cExemplar struct {
	Labels []Label
	V      uint64
	T      int64
}

func canonHistogram(raw []byte) (string, error) {
	var h writev2.Histogram
	if err := h.Unmarshal(raw); err != nil {
		return "", err
	}
	h.StartTimestamp = 0
	b, err := h.Marshal()
	return string(b), err
}

func labelsOrNil(ls []Label) []Label {
	if len(ls) == 0 {
		return nil
	}
	return append([]Label(nil), ls...)
}

// fromOurs converts a decoded Request. It fails if a Histogram.Raw does not
// decode with writev2, which would mean the decoder let through a message
// that gogo rejects.
func fromOurs(r *Request) ([]cSeries, error) {
	var out []cSeries
	for i := range r.Series {
		ts := &r.Series[i]
		c := cSeries{Labels: labelsOrNil(ts.Labels), Meta: ts.Metadata}
		for _, s := range ts.Samples {
			c.Samples = append(c.Samples, cSample{math.Float64bits(s.Value), s.Timestamp, s.StartTimestamp})
		}
		for j, h := range ts.Histograms {
			canon, err := canonHistogram(h.Raw)
			if err != nil {
				return nil, fmt.Errorf("series %d histogram %d: Raw does not decode: %w", i, j, err)
			}
			c.Hists = append(c.Hists, cHist{canon, h.Timestamp, h.StartTimestamp})
		}
		for _, x := range ts.Exemplars {
			c.Exemplars = append(c.Exemplars, cExemplar{labelsOrNil(x.Labels), math.Float64bits(x.Value), x.Timestamp})
		}
		out = append(out, c)
	}
	return out, nil
}

func libMetricType(t int32) MetricType {
	if t >= 0 && t <= int32(MetricTypeStateset) {
		return MetricType(t)
	}
	return MetricTypeUnknown
}

// fromV1 converts a prompb.WriteRequest, attaching its metadata list to
// series by the rule documented on Request.Unmarshal (written out again
// here, independently). field17 reports whether any histogram carries the
// unknown field 17, which this package rejects.
func fromV1(req *prompb.WriteRequest) (out []cSeries, field17 bool, err error) {
	meta := map[string]Metadata{}
	for _, m := range req.Metadata {
		meta[m.MetricFamilyName] = Metadata{Type: libMetricType(int32(m.Type)), Help: m.Help, Unit: m.Unit}
	}
	for _, ts := range req.Timeseries {
		var c cSeries
		name, hasName := "", false
		for _, l := range ts.Labels {
			c.Labels = append(c.Labels, Label{l.Name, l.Value})
			if l.Name == "__name__" && !hasName {
				name, hasName = l.Value, true
			}
		}
		if md, ok := meta[name]; ok && name != "" {
			c.Meta = md
		} else if name != "" {
			for _, suf := range []string{"_total", "_bucket", "_count", "_sum", "_created", "_info"} {
				if base, ok := strings.CutSuffix(name, suf); ok && base != "" {
					c.Meta = meta[base]
					break
				}
			}
		}
		for _, s := range ts.Samples {
			c.Samples = append(c.Samples, cSample{math.Float64bits(s.Value), s.Timestamp, 0})
		}
		for _, h := range ts.Histograms {
			if unknownHas(h.XXX_unrecognized, 17) {
				field17 = true
			}
			b, err := h.Marshal()
			if err != nil {
				return nil, false, err
			}
			canon, err := canonHistogram(b)
			if err != nil {
				if field17 {
					// Field 17 may be unknown in 1.0 but of the wrong wire
					// type in 2.0; the caller skips the comparison anyway.
					canon = ""
				} else {
					return nil, false, err
				}
			}
			c.Hists = append(c.Hists, cHist{canon, h.Timestamp, 0})
		}
		for _, x := range ts.Exemplars {
			var ls []Label
			for _, l := range x.Labels {
				ls = append(ls, Label{l.Name, l.Value})
			}
			c.Exemplars = append(c.Exemplars, cExemplar{ls, math.Float64bits(x.Value), x.Timestamp})
		}
		out = append(out, c)
	}
	return out, field17, nil
}

// fromV2 converts a writev2.Request. Labels are resolved in wire order
// (ToLabels would sort them). refsOK reports whether every ref is in range
// and label refs come in pairs, i.e. whether Prometheus' ToLabels,
// ToMetadata and ToExemplar would all succeed. The legacy TimeSeries field 6,
// which gogo keeps as an unknown field, is applied like this package does.
func fromV2(req *writev2.Request) (out []cSeries, refsOK bool) {
	refsOK = true
	syms := req.Symbols
	resolve := func(refs []uint32) []Label {
		if len(refs)%2 != 0 {
			refsOK = false
			return nil
		}
		var ls []Label
		for i := 0; i < len(refs); i += 2 {
			if int(refs[i]) >= len(syms) || int(refs[i+1]) >= len(syms) {
				refsOK = false
				return nil
			}
			ls = append(ls, Label{syms[refs[i]], syms[refs[i+1]]})
		}
		return ls
	}
	sym := func(ref uint32) string {
		if int(ref) >= len(syms) {
			refsOK = false
			return ""
		}
		return syms[ref]
	}
	for _, ts := range req.Timeseries {
		var c cSeries
		c.Labels = resolve(ts.LabelsRefs)
		c.Meta = Metadata{Type: libMetricType(int32(ts.Metadata.Type)), Help: sym(ts.Metadata.HelpRef), Unit: sym(ts.Metadata.UnitRef)}
		ct, _ := unknownVarint(ts.XXX_unrecognized, 6)
		for _, s := range ts.Samples {
			st := s.StartTimestamp
			if st == 0 {
				st = ct
			}
			c.Samples = append(c.Samples, cSample{math.Float64bits(s.Value), s.Timestamp, st})
		}
		for _, h := range ts.Histograms {
			st := h.StartTimestamp
			if st == 0 {
				st = ct
			}
			h.StartTimestamp = 0
			b, err := h.Marshal()
			if err != nil {
				panic(err)
			}
			canon, err := canonHistogram(b)
			if err != nil {
				panic(err)
			}
			c.Hists = append(c.Hists, cHist{canon, h.Timestamp, st})
		}
		for _, x := range ts.Exemplars {
			c.Exemplars = append(c.Exemplars, cExemplar{resolve(x.LabelsRefs), math.Float64bits(x.Value), x.Timestamp})
		}
		out = append(out, c)
	}
	return out, refsOK
}

// unknownHas reports whether unknown fields contain field num.
func unknownHas(b []byte, num int32) bool {
	found := false
	walkUnknownDepth(b, func(n int32, _ int, _ uint64, d int) {
		if d == 0 && n == num {
			found = true
		}
	})
	return found
}

// unknownVarint returns the last top-level varint field num in unknown
// fields.
func unknownVarint(b []byte, num int32) (v int64, ok bool) {
	walkUnknownDepth(b, func(n int32, wt int, x uint64, d int) {
		if d == 0 && n == num && wt == 0 {
			v, ok = int64(x), true
		}
	})
	return v, ok
}

// walkUnknownDepth walks gogo's XXX_unrecognized bytes (complete fields as
// gogo's skipTypes delimited them) and calls fn for every tag with its field
// number as gogo computes it (int32(tag>>3)), wire type, value for varints,
// and the group depth it is at (a group's start and end tags at the depth
// outside it). It is written independently of wire.go.
func walkUnknownDepth(b []byte, fn func(num int32, wt int, v uint64, depth int)) {
	readVarint := func() uint64 {
		var v uint64
		for shift := 0; len(b) > 0; shift += 7 {
			c := b[0]
			b = b[1:]
			if shift < 64 {
				v |= uint64(c&0x7f) << shift
			}
			if c < 0x80 {
				break
			}
		}
		return v
	}
	depth := 0
	for len(b) > 0 {
		tag := readVarint()
		num, wt := int32(tag>>3), int(tag&7)
		var v uint64
		d := depth
		switch wt {
		case 0:
			v = readVarint()
		case 1:
			b = b[min(8, len(b)):]
		case 2:
			n := readVarint()
			b = b[min(n, uint64(len(b))):]
		case 3:
			depth++
		case 4:
			depth--
			d = depth
		case 5:
			b = b[min(4, len(b)):]
		}
		fn(num, wt, v, d)
	}
}

func diffSeries(t testing.TB, what string, got, want []cSeries) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	if len(got) != len(want) {
		t.Fatalf("%s: got %d series, want %d\ngot:  %+v\nwant: %+v", what, len(got), len(want), got, want)
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("%s: series %d differs\ngot:  %+v\nwant: %+v", what, i, got[i], want[i])
		}
	}
}

func isRefError(err error) bool {
	var re *refError
	return errors.As(err, &re)
}
