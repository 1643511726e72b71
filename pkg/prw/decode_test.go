package prw

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"
)

// checkV1 decodes buf with prompb and with Request.Unmarshal and requires
// the same result.
func checkV1(t *testing.T, buf []byte) *Request {
	t.Helper()
	var lib prompb.WriteRequest
	if err := lib.Unmarshal(buf); err != nil {
		t.Fatalf("prompb: %v", err)
	}
	want, _, err := fromV1(&lib)
	if err != nil {
		t.Fatal(err)
	}
	var r Request
	if err := r.Unmarshal(V1, buf); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	got, err := fromOurs(&r)
	if err != nil {
		t.Fatal(err)
	}
	diffSeries(t, "v1", got, want)
	return &r
}

func checkV2(t *testing.T, buf []byte) *Request {
	t.Helper()
	var lib writev2.Request
	if err := lib.Unmarshal(buf); err != nil {
		t.Fatalf("writev2: %v", err)
	}
	want, ok := fromV2(&lib)
	if !ok {
		t.Fatal("test request has bad refs")
	}
	var r Request
	if err := r.Unmarshal(V2, buf); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	got, err := fromOurs(&r)
	if err != nil {
		t.Fatal(err)
	}
	diffSeries(t, "v2", got, want)
	return &r
}

func TestUnmarshalV1MatchesPrompb(t *testing.T) {
	t.Run("realistic", func(t *testing.T) { checkV1(t, mustMarshal(realisticV1(300))) })
	t.Run("empty", func(t *testing.T) {
		if r := checkV1(t, nil); len(r.Series) != 0 {
			t.Fatal("series from empty input")
		}
	})
	t.Run("rich", func(t *testing.T) {
		r := checkV1(t, mustMarshal(richV1()))
		// The metadata mapping, spelled out.
		want := []Metadata{
			{Type: MetricTypeCounter, Help: "Requests."},
			{Type: MetricTypeHistogram, Help: "RPC latency.", Unit: "seconds"},
			{Type: MetricTypeGauge, Help: "Target up."},
			{Type: MetricTypeHistogram, Help: "Classic."},
			{},
		}
		for i, md := range want {
			if r.Series[i].Metadata != md {
				t.Errorf("series %d: metadata %+v, want %+v", i, r.Series[i].Metadata, md)
			}
		}
		if s, h, x := r.Counts(); s != 7 || h != 3 || x != 3 {
			t.Errorf("Counts() = %d, %d, %d", s, h, x)
		}
		if ts := r.Series[1].Histograms; ts[0].Timestamp != 1_726_000_000_000 || ts[2].Timestamp != 1_726_000_030_000 {
			t.Errorf("histogram timestamps %d %d", ts[0].Timestamp, ts[2].Timestamp)
		}
	})
	t.Run("unknown fields", func(t *testing.T) {
		req := richV1()
		req.XXX_unrecognized = unknownFields(2, 99)
		req.Timeseries[0].XXX_unrecognized = unknownFields(5, 1000)
		req.Timeseries[0].Labels[1].XXX_unrecognized = unknownFields(3)
		req.Timeseries[0].Samples[0].XXX_unrecognized = unknownFields(3)
		req.Timeseries[0].Exemplars[0].XXX_unrecognized = unknownFields(4)
		req.Timeseries[1].Histograms[0].XXX_unrecognized = unknownFields(18, 1<<20)
		req.Timeseries[1].Histograms[0].PositiveSpans[0].XXX_unrecognized = unknownFields(3)
		req.Metadata[0].XXX_unrecognized = unknownFields(3)
		checkV1(t, mustMarshal(req))
	})
	t.Run("non-packed histogram fields", func(t *testing.T) {
		r := checkV1(t, nonPackedV1())
		if n := len(r.Series[0].Histograms); n != 3 {
			t.Fatalf("%d histograms", n)
		}
	})
	t.Run("fields in any order, repeated scalars", func(t *testing.T) {
		// Label with value before name; sample with timestamp twice.
		var lbl, smp, ts, req []byte
		lbl = protowire.AppendTag(lbl, 2, protowire.BytesType)
		lbl = protowire.AppendString(lbl, "v")
		lbl = protowire.AppendTag(lbl, 1, protowire.BytesType)
		lbl = protowire.AppendString(lbl, "__name__")
		smp = protowire.AppendTag(smp, 2, protowire.VarintType)
		smp = protowire.AppendVarint(smp, 5)
		smp = protowire.AppendTag(smp, 1, protowire.Fixed64Type)
		smp = protowire.AppendFixed64(smp, math.Float64bits(2.5))
		smp = protowire.AppendTag(smp, 2, protowire.VarintType)
		smp = protowire.AppendVarint(smp, 6)
		ts = protowire.AppendTag(ts, 2, protowire.BytesType)
		ts = protowire.AppendBytes(ts, smp)
		ts = protowire.AppendTag(ts, 1, protowire.BytesType)
		ts = protowire.AppendBytes(ts, lbl)
		req = protowire.AppendTag(req, 1, protowire.BytesType)
		req = protowire.AppendBytes(req, ts)
		r := checkV1(t, req)
		if got := r.Series[0].Samples[0]; got.Timestamp != 6 || got.Value != 2.5 {
			t.Fatalf("sample %+v", got)
		}
	})
	t.Run("field numbers truncated to int32 like gogo", func(t *testing.T) {
		series := mustMarshal(&prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "x"}}})
		var req []byte
		// Field 2^32+1 reads as field 1 (timeseries) ...
		req = protowire.AppendVarint(req, (1<<32+1)<<3|uint64(protowire.BytesType))
		req = protowire.AppendBytes(req, series)
		// ... and 2^32+50 as the unknown field 50.
		req = protowire.AppendVarint(req, (1<<32+50)<<3|uint64(protowire.VarintType))
		req = protowire.AppendVarint(req, 1)
		if r := checkV1(t, req); len(r.Series) != 1 {
			t.Fatalf("%d series", len(r.Series))
		}
	})
	t.Run("non-minimal varints", func(t *testing.T) {
		// Tag 0x0a written as two bytes, length 3 written as three bytes.
		lbl := []byte{0x8a, 0x00, 0x83, 0x80, 0x00, 'a', 'b', 'c'}
		ts := append([]byte{0x0a, byte(len(lbl))}, lbl...)
		checkV1(t, append([]byte{0x0a, byte(len(ts))}, ts...))
	})
}

func TestUnmarshalV2MatchesWritev2(t *testing.T) {
	t.Run("realistic", func(t *testing.T) { checkV2(t, mustMarshal(v1ToV2(realisticV1(300)))) })
	t.Run("rich", func(t *testing.T) {
		r := checkV2(t, mustMarshal(richV2()))
		if md := r.Series[1].Metadata; md != (Metadata{Type: MetricTypeHistogram, Help: "RPC latency.", Unit: "seconds"}) {
			t.Errorf("metadata %+v", md)
		}
		if md := r.Series[2].Metadata; md.Type != MetricTypeUnknown {
			t.Errorf("unknown enum decoded as %d", md.Type)
		}
		if st := r.Series[0].Samples[0].StartTimestamp; st != 1_726_000_000_000-60000 {
			t.Errorf("start timestamp %d", st)
		}
		if h := r.Series[1].Histograms[0]; h.StartTimestamp != 1_726_000_000_000-3600000 || h.Timestamp != 1_726_000_000_000 {
			t.Errorf("histogram timestamps %+v", h)
		}
	})
	t.Run("legacy created timestamp", func(t *testing.T) {
		req := richV2()
		// The pre-rc.4 layout: TimeSeries.created_timestamp = 6.
		req.Timeseries[0].XXX_unrecognized = protowire.AppendVarint(protowire.AppendTag(nil, 6, protowire.VarintType), 1000)
		req.Timeseries[1].XXX_unrecognized = protowire.AppendVarint(protowire.AppendTag(nil, 6, protowire.VarintType), 2000)
		r := checkV2(t, mustMarshal(req))
		for i, want := range []int64{1_726_000_000_000 - 60000, 1000, 1000} {
			if got := r.Series[0].Samples[i].StartTimestamp; got != want {
				t.Errorf("sample %d: start timestamp %d, want %d", i, got, want)
			}
		}
		for i, want := range []int64{1_726_000_000_000 - 3600000, 2000, 2000} {
			if got := r.Series[1].Histograms[i].StartTimestamp; got != want {
				t.Errorf("histogram %d: start timestamp %d, want %d", i, got, want)
			}
		}
	})
	t.Run("legacy field 6 of another wire type is unknown", func(t *testing.T) {
		req := richV2()
		req.Timeseries[0].XXX_unrecognized = protowire.AppendString(protowire.AppendTag(nil, 6, protowire.BytesType), "x")
		checkV2(t, mustMarshal(req))
	})
	t.Run("unknown fields", func(t *testing.T) {
		req := richV2()
		req.XXX_unrecognized = unknownFields(1, 2, 3, 6, 77)
		req.Timeseries[0].XXX_unrecognized = unknownFields(7, 100)
		req.Timeseries[0].Samples[0].XXX_unrecognized = unknownFields(4)
		req.Timeseries[0].Exemplars[0].XXX_unrecognized = unknownFields(4)
		req.Timeseries[0].Metadata.XXX_unrecognized = unknownFields(2, 5)
		req.Timeseries[1].Histograms[1].XXX_unrecognized = unknownFields(18)
		req.Timeseries[1].Histograms[1].NegativeSpans[0].XXX_unrecognized = unknownFields(3)
		checkV2(t, mustMarshal(req))
	})
	t.Run("non-packed refs and histogram fields", func(t *testing.T) {
		r := checkV2(t, nonPackedV2())
		got := r.Series[0]
		if len(got.Labels) != 2 || got.Labels[1] != (Label{"job", "j"}) || got.Metadata != (Metadata{Type: MetricTypeGauge, Help: "help"}) {
			t.Fatalf("series %+v", got)
		}
		if len(got.Exemplars) != 1 || len(got.Exemplars[0].Labels) != 1 || got.Exemplars[0].Labels[0] != (Label{"trace_id", "t1"}) {
			t.Fatalf("exemplars %+v", got.Exemplars)
		}
	})
	t.Run("first symbol not empty", func(t *testing.T) {
		// The spec requires symbols[0] == "", Prometheus' receiver does not
		// check it, neither does this package; ref 0 just means the symbol.
		req := &writev2.Request{
			Symbols:    []string{"__name__", "up"},
			Timeseries: []writev2.TimeSeries{{LabelsRefs: []uint32{0, 1}, Samples: []writev2.Sample{{Value: 1}}}},
		}
		r := checkV2(t, mustMarshal(req))
		if md := r.Series[0].Metadata; md.Help != "__name__" || md.Unit != "__name__" {
			t.Fatalf("metadata %+v", md)
		}
	})
	t.Run("no symbols, no series", func(t *testing.T) {
		checkV2(t, mustMarshal(&writev2.Request{Symbols: []string{"", "unused"}}))
	})
}

// nonPackedV1 is a 1.0 request whose histograms use the non-packed encoding
// of their repeated scalar fields.
func nonPackedV1() []byte {
	h := prompb.FromIntHistogram(7, testIntHistogram())
	fh := prompb.FromFloatHistogram(8, testFloatHistogram())
	ch := prompb.FromIntHistogram(9, testCustomHistogram())
	var ts []byte
	ts = protowire.AppendTag(ts, 1, protowire.BytesType)
	ts = protowire.AppendBytes(ts, mustMarshal(&prompb.Label{Name: "__name__", Value: "h"}))
	for _, raw := range [][]byte{unpack(mustMarshal(&h)), unpack(mustMarshal(&fh)), unpack(mustMarshal(&ch))} {
		ts = protowire.AppendTag(ts, 4, protowire.BytesType)
		ts = protowire.AppendBytes(ts, raw)
	}
	return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), ts)
}

// nonPackedV2 is a 2.0 request with non-packed label refs interleaved with
// other fields, non-packed histogram fields, metadata split in two, and the
// symbols after the series.
func nonPackedV2() []byte {
	syms := []string{"", "__name__", "m", "job", "j", "trace_id", "t1", "help"}
	var ts []byte
	// labels_refs as single varints, interleaved with a sample.
	ts = protowire.AppendTag(ts, 1, protowire.VarintType)
	ts = protowire.AppendVarint(ts, 1)
	ts = protowire.AppendTag(ts, 2, protowire.BytesType)
	ts = protowire.AppendBytes(ts, mustMarshal(&writev2.Sample{Value: 1, Timestamp: 2, StartTimestamp: 1}))
	for _, ref := range []uint64{2, 3} {
		ts = protowire.AppendTag(ts, 1, protowire.VarintType)
		ts = protowire.AppendVarint(ts, ref)
	}
	// The last ref packed on its own.
	ts = protowire.AppendTag(ts, 1, protowire.BytesType)
	ts = protowire.AppendBytes(ts, []byte{4})
	var ex []byte
	for _, ref := range []uint64{5, 6} {
		ex = protowire.AppendTag(ex, 1, protowire.VarintType)
		ex = protowire.AppendVarint(ex, ref)
	}
	ex = protowire.AppendTag(ex, 2, protowire.Fixed64Type)
	ex = protowire.AppendFixed64(ex, math.Float64bits(0.5))
	ts = protowire.AppendTag(ts, 4, protowire.BytesType)
	ts = protowire.AppendBytes(ts, ex)
	h := writev2.FromIntHistogram(3, 4, testIntHistogram())
	fh := writev2.FromFloatHistogram(0, 5, testFloatHistogram())
	for _, raw := range [][]byte{unpack(mustMarshal(&h)), unpack(mustMarshal(&fh))} {
		ts = protowire.AppendTag(ts, 3, protowire.BytesType)
		ts = protowire.AppendBytes(ts, raw)
	}
	// Metadata split over two occurrences: they merge.
	ts = protowire.AppendTag(ts, 5, protowire.BytesType)
	ts = protowire.AppendBytes(ts, mustMarshal(&writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE}))
	ts = protowire.AppendTag(ts, 5, protowire.BytesType)
	ts = protowire.AppendBytes(ts, mustMarshal(&writev2.Metadata{HelpRef: 7}))

	// Series first, symbols after them.
	var req []byte
	req = protowire.AppendTag(req, 5, protowire.BytesType)
	req = protowire.AppendBytes(req, ts)
	for _, s := range syms {
		req = protowire.AppendTag(req, 4, protowire.BytesType)
		req = protowire.AppendString(req, s)
	}
	return req
}

// unknownFields returns one field of each wire type (group included) per
// field number, as unknown-field bytes for XXX_unrecognized.
func unknownFields(nums ...protowire.Number) []byte {
	var b []byte
	for _, n := range nums {
		b = protowire.AppendTag(b, n, protowire.VarintType)
		b = protowire.AppendVarint(b, 1<<40)
		b = protowire.AppendTag(b, n, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, 42)
		b = protowire.AppendTag(b, n, protowire.BytesType)
		b = protowire.AppendString(b, "unknown")
		b = protowire.AppendTag(b, n, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, 7)
		// A group holding a varint and a nested group.
		b = protowire.AppendTag(b, n, protowire.StartGroupType)
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, 3)
		b = protowire.AppendTag(b, 2, protowire.StartGroupType)
		b = protowire.AppendTag(b, 2, protowire.EndGroupType)
		b = protowire.AppendTag(b, n, protowire.EndGroupType)
	}
	return b
}

// unpack re-encodes every packed repeated field (wire type 2 holding
// varints or fixed64s) of a Histogram message as individual elements.
func unpack(h []byte) []byte {
	var out []byte
	for len(h) > 0 {
		num, typ, n := protowire.ConsumeTag(h)
		h = h[n:]
		vn := protowire.ConsumeFieldValue(num, typ, h)
		val := h[:vn]
		h = h[vn:]
		switch {
		case typ == protowire.BytesType && (num == 9 || num == 12):
			p, _ := protowire.ConsumeBytes(val)
			for len(p) > 0 {
				v, n := protowire.ConsumeVarint(p)
				p = p[n:]
				out = protowire.AppendTag(out, num, protowire.VarintType)
				out = protowire.AppendVarint(out, v)
			}
		case typ == protowire.BytesType && (num == 10 || num == 13 || num == 16):
			p, _ := protowire.ConsumeBytes(val)
			for ; len(p) >= 8; p = p[8:] {
				out = protowire.AppendTag(out, num, protowire.Fixed64Type)
				out = append(out, p[:8]...)
			}
		default:
			out = protowire.AppendTag(out, num, typ)
			out = append(out, val...)
		}
	}
	return out
}

func TestUnmarshalErrors(t *testing.T) {
	lenField := func(num protowire.Number, b []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
	}
	cat := func(bs ...[]byte) []byte {
		var out []byte
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	goodLabel := lenField(1, mustMarshal(&prompb.Label{Name: "__name__", Value: "x"}))
	goodSeries := lenField(1, goodLabel)
	v2Syms := cat(lenField(4, nil), lenField(4, []byte("__name__")), lenField(4, []byte("x")))
	v2Series := func(ts []byte) []byte { return cat(v2Syms, lenField(5, ts)) }
	refs := func(r ...byte) []byte { return lenField(1, r) }

	hist17 := cat(mustMarshal(&prompb.Histogram{Timestamp: 1}), protowire.AppendVarint(protowire.AppendTag(nil, 17, protowire.VarintType), 5))

	tests := []struct {
		name string
		v    Version
		in   []byte
		want string
		is   error
	}{
		{"v1 truncated label value", V1, cat(goodSeries, lenField(1, cat(goodLabel, lenField(1, []byte{0x0a, 1, 'a', 0x12, 5, 'b'})))),
			"timeseries 1: label 1: value: length-delimited field exceeds its message", errTruncatedBytes},
		{"v1 truncated varint", V1, lenField(1, lenField(2, []byte{0x10, 0x80})),
			"timeseries 0: sample 0: timestamp: truncated varint", errTruncatedVarint},
		{"v1 truncated fixed64", V1, lenField(1, lenField(2, []byte{0x09, 1, 2, 3})),
			"timeseries 0: sample 0: value: truncated fixed-width field", errTruncatedFixed},
		{"v1 series longer than input", V1, []byte{0x0a, 0x05, 0x0a},
			"timeseries 0: length-delimited field exceeds its message", errTruncatedBytes},
		{"v1 wrong wire type", V1, lenField(1, []byte{0x10, 0x01}),
			"timeseries 0: field samples (2): wrong wire type 0", nil},
		{"v1 wrong wire type top level", V1, []byte{0x08, 0x01},
			"field timeseries (1): wrong wire type 0", nil},
		{"v1 varint overflow", V1, lenField(1, lenField(2, []byte{0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})),
			"timeseries 0: sample 0: timestamp: varint longer than 10 bytes", errVarintOverflow},
		{"field number 0", V1, []byte{0x02, 0x00}, "illegal field number 0", nil},
		{"end group without start", V1, lenField(1, []byte{0x2c}), "timeseries 0: end-group tag without a group", errEndGroup},
		{"unclosed group", V1, lenField(1, []byte{0x2b, 0x08, 0x01}), "timeseries 0: group not closed before end of message", errUnclosedGroup},
		{"illegal wire type", V1, []byte{0x7e}, "illegal wire type 6", nil},
		{"v1 histogram field 17", V1, lenField(1, cat(goodLabel, lenField(4, hist17))),
			"timeseries 0: histogram 0: field 17 is not defined", errV1HistogramField17},
		{"v1 histogram span wrong type", V1, lenField(1, lenField(4, lenField(8, []byte{0x0a, 0x00}))),
			"timeseries 0: histogram 0: negative_spans: field offset (1): wrong wire type 2", nil},
		{"v1 packed deltas overrun", V1, lenField(1, lenField(4, cat(lenField(9, []byte{0x80}), []byte{0x78, 0x01}))),
			"timeseries 0: histogram 0: negative_deltas: packed repeated field", errPackedLength},
		{"v1 packed counts length", V1, lenField(1, lenField(4, lenField(13, make([]byte, 12)))),
			"timeseries 0: histogram 0: positive_counts: packed repeated field", errPackedLength},
		{"v1 metadata truncated", V1, lenField(3, []byte{0x22, 0x03, 'a'}),
			"metadata 0: help: length-delimited field exceeds its message", errTruncatedBytes},

		{"v2 label value ref out of range", V2, v2Series(refs(1, 2, 1, 9)),
			"timeseries 0: label 1: value ref 9 outside of symbols table (size 3)", nil},
		{"v2 label name ref out of range", V2, v2Series(refs(200, 1)),
			"timeseries 0: label 0: name ref 200 outside of symbols table (size 3)", nil},
		{"v2 odd refs", V2, v2Series(refs(1, 2, 1)),
			"timeseries 0: labels_refs: odd number of refs (3)", nil},
		{"v2 help ref out of range", V2, v2Series(cat(refs(1, 2), lenField(5, []byte{0x18, 0x03}))),
			"timeseries 0: metadata help_ref 3 outside of symbols table (size 3)", nil},
		{"v2 unit ref out of range", V2, v2Series(cat(refs(1, 2), lenField(5, []byte{0x20, 0x07}))),
			"timeseries 0: metadata unit_ref 7 outside of symbols table (size 3)", nil},
		{"v2 refs without symbols", V2, lenField(5, nil),
			"timeseries 0: metadata unit_ref 0 outside of symbols table (size 0)", nil},
		{"v2 exemplar ref out of range", V2, v2Series(cat(refs(1, 2), lenField(4, refs(1, 5)))),
			"timeseries 0: exemplar 0: label 0: value ref 5 outside of symbols table (size 3)", nil},
		{"v2 exemplar odd refs", V2, v2Series(cat(refs(1, 2), lenField(4, refs(1)))),
			"timeseries 0: exemplar 0: labels_refs: odd number of refs (1)", nil},
		{"v2 packed refs overrun", V2, v2Series(cat(lenField(1, []byte{1, 0x82}), []byte{0x00})),
			"timeseries 0: labels_refs: packed repeated field", errPackedLength},
		{"v2 truncated symbol", V2, cat(v2Syms, []byte{0x22, 0x09, 'a'}),
			"symbols 3: length-delimited field exceeds its message", errTruncatedBytes},
		{"v2 wrong wire type symbols", V2, []byte{0x20, 0x01}, "field symbols (4): wrong wire type 0", nil},
		{"v2 histogram bad start timestamp type", V2, v2Series(cat(refs(1, 2), lenField(3, lenField(17, nil)))),
			"timeseries 0: histogram 0: field start_timestamp (17): wrong wire type 2", nil},
		{"v2 sample start timestamp truncated", V2, v2Series(cat(refs(1, 2), lenField(2, []byte{0x18}))),
			"timeseries 0: sample 0: start_timestamp: truncated varint", errTruncatedVarint},
		{"unknown version", Version(3), nil, "unknown remote-write version 3", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Request{}
			err := r.Unmarshal(tc.v, tc.in)
			if err == nil {
				t.Fatalf("no error")
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %q, want prefix %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("error %q is not %q", err, tc.is)
			}
			if len(r.Series) != 0 {
				t.Fatalf("series left after error")
			}
		})
	}
}

// Every prefix of a valid request must decode or fail exactly when the
// generated code does, and never panic.
func TestUnmarshalPrefixes(t *testing.T) {
	v1 := mustMarshal(richV1())
	v2 := mustMarshal(richV2())
	var r Request
	for n := 0; n <= len(v1); n++ {
		var lib prompb.WriteRequest
		libErr := lib.Unmarshal(v1[:n])
		err := r.Unmarshal(V1, v1[:n])
		if (libErr == nil) != (err == nil) {
			t.Fatalf("v1 prefix %d: prompb error %v, ours %v", n, libErr, err)
		}
	}
	for n := 0; n <= len(v2); n++ {
		var lib writev2.Request
		libErr := lib.Unmarshal(v2[:n])
		err := r.Unmarshal(V2, v2[:n])
		if libErr != nil && err == nil {
			t.Fatalf("v2 prefix %d: writev2 error %v, ours none", n, libErr)
		}
		if libErr == nil && err != nil {
			// Cutting the symbol table leaves refs dangling.
			if _, ok := fromV2(&lib); ok || !isRefError(err) {
				t.Fatalf("v2 prefix %d: writev2 ok, ours %v", n, err)
			}
		}
	}
}

// Decoding must reuse the Request's storage, and series must not share
// backing arrays in a way that lets an append to one clobber another.
func TestRequestReuse(t *testing.T) {
	var r Request
	big := mustMarshal(realisticV1(100))
	small := mustMarshal(richV1())
	for _, buf := range [][]byte{big, small, big} {
		if err := r.Unmarshal(V1, buf); err != nil {
			t.Fatal(err)
		}
	}
	want := r.Series[1].Labels[0]
	r.Series[0].Labels = append(r.Series[0].Labels, Label{"x", "y"})
	if r.Series[1].Labels[0] != want {
		t.Fatal("appending to one series' labels overwrote the next series")
	}
	r.Reset()
	if len(r.Series) != 0 || cap(r.labels) == 0 {
		t.Fatal("Reset did not keep storage")
	}
}
