package prw

import (
	"bytes"
	"fmt"
	"math"
	"testing"

	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"
)

// encodeAll encodes every series of r, checking Size and the size bound on
// the way, and returns a copy of the request bytes.
func encodeAll(t testing.TB, e *Encoder, r *Request) []byte {
	t.Helper()
	e.Reset()
	for i := range r.Series {
		before := e.Size()
		bound := SeriesSizeUpperBound(&r.Series[i])
		e.Append(&r.Series[i])
		if grew := e.Size() - before; grew > bound {
			t.Fatalf("series %d added %d bytes, SeriesSizeUpperBound said at most %d", i, grew, bound)
		}
	}
	if e.Len() != len(r.Series) {
		t.Fatalf("Len() = %d, want %d", e.Len(), len(r.Series))
	}
	b := e.Bytes()
	if len(b) != e.Size() {
		t.Fatalf("Size() = %d, len(Bytes()) = %d", e.Size(), len(b))
	}
	return bytes.Clone(b)
}

// checkRoundTrip encodes r and decodes the result with writev2 and with
// Unmarshal(V2); both must give back what r holds.
func checkRoundTrip(t testing.TB, r *Request) []byte {
	t.Helper()
	want, err := fromOurs(r)
	if err != nil {
		t.Fatal(err)
	}
	var e Encoder
	enc := encodeAll(t, &e, r)

	var lib writev2.Request
	if err := lib.Unmarshal(enc); err != nil {
		t.Fatalf("writev2 cannot decode the encoding: %v", err)
	}
	if len(lib.Symbols) == 0 || lib.Symbols[0] != "" {
		t.Fatalf("symbols do not start with \"\": %q", lib.Symbols)
	}
	seen := map[string]bool{}
	for _, s := range lib.Symbols {
		if seen[s] {
			t.Fatalf("duplicate symbol %q", s)
		}
		seen[s] = true
	}
	got, ok := fromV2(&lib)
	if !ok {
		t.Fatal("encoding has bad refs")
	}
	diffSeries(t, "writev2 decode of encoding", got, want)

	var r2 Request
	if err := r2.Unmarshal(V2, enc); err != nil {
		t.Fatalf("Unmarshal(V2) of encoding: %v", err)
	}
	got, err = fromOurs(&r2)
	if err != nil {
		t.Fatal(err)
	}
	diffSeries(t, "Unmarshal of encoding", got, want)
	return enc
}

func TestEncoderRoundTrip(t *testing.T) {
	legacy := richV2()
	legacy.Timeseries[1].XXX_unrecognized = protowire.AppendVarint(protowire.AppendTag(nil, 6, protowire.VarintType), 1234)
	inputs := []struct {
		name string
		v    Version
		buf  []byte
	}{
		{"v1 realistic", V1, mustMarshal(realisticV1(500))},
		{"v1 rich", V1, mustMarshal(richV1())},
		{"v2 realistic", V2, mustMarshal(v1ToV2(realisticV1(500)))},
		{"v2 rich", V2, mustMarshal(richV2())},
		{"v2 legacy created timestamp", V2, mustMarshal(legacy)},
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			var r Request
			if err := r.Unmarshal(in.v, in.buf); err != nil {
				t.Fatal(err)
			}
			checkRoundTrip(t, &r)
		})
	}
}

func TestEncoderEdgeCases(t *testing.T) {
	t.Run("zero value and Reset", func(t *testing.T) {
		var e Encoder
		if e.Size() != 2 || !bytes.Equal(e.Bytes(), []byte{0x22, 0x00}) {
			t.Fatalf("empty request %x", e.Bytes())
		}
		var r Request
		if err := r.Unmarshal(V1, mustMarshal(richV1())); err != nil {
			t.Fatal(err)
		}
		first := encodeAll(t, &e, &r)
		second := encodeAll(t, &e, &r)
		if !bytes.Equal(first, second) {
			t.Fatal("encoding after Reset differs")
		}
	})
	t.Run("extreme values", func(t *testing.T) {
		r := &Request{Series: []TimeSeries{
			{
				Labels:  ls("__name__", "x", "", "", "long", string(make([]byte, 300))),
				Samples: []Sample{{Value: math.NaN(), Timestamp: math.MinInt64, StartTimestamp: -1}, {Value: math.Copysign(0, -1)}, {}},
				Exemplars: []Exemplar{
					{Labels: ls("trace_id", "t"), Value: math.Inf(-1), Timestamp: math.MaxInt64},
					{},
				},
				Histograms: []Histogram{{Timestamp: 0, StartTimestamp: math.MinInt64, Raw: nil}},
				Metadata:   Metadata{Type: MetricTypeStateset, Help: "h", Unit: "u"},
			},
			{Metadata: Metadata{Type: MetricTypeInfo}},
			{},
		}}
		checkRoundTrip(t, r)

		var e Encoder
		e.Append(&TimeSeries{Metadata: Metadata{Type: 200}})
		var r2 Request
		if err := r2.Unmarshal(V2, e.Bytes()); err != nil || r2.Series[0].Metadata.Type != MetricTypeUnknown {
			t.Fatalf("type 200 decoded as %+v, %v", r2.Series, err)
		}
	})
	t.Run("histogram start timestamp", func(t *testing.T) {
		withST := writev2.FromIntHistogram(5, 10, testIntHistogram())
		raw := mustMarshal(&withST)
		decodeST := func(e *Encoder) int64 {
			var lib writev2.Request
			if err := lib.Unmarshal(e.Bytes()); err != nil {
				t.Fatal(err)
			}
			return lib.Timeseries[0].Histograms[0].StartTimestamp
		}
		var e Encoder
		for _, tc := range []struct {
			name string
			h    Histogram
			want int64
		}{
			{"hand-built, zero keeps Raw's", Histogram{Raw: raw}, 5},
			{"hand-built, non-zero overrides", Histogram{Raw: raw, StartTimestamp: 7}, 7},
			{"decoded, unchanged", Histogram{Raw: raw, StartTimestamp: 5, rawStart: 5}, 5},
			{"decoded, cleared", Histogram{Raw: raw, StartTimestamp: 0, rawStart: 5}, 0},
		} {
			e.Reset()
			e.Append(&TimeSeries{Labels: ls("__name__", "h"), Histograms: []Histogram{tc.h}})
			if got := decodeST(&e); got != tc.want {
				t.Errorf("%s: start timestamp %d, want %d", tc.name, got, tc.want)
			}
		}
	})
}

// TestEncoderRollback checks that Rollback undoes an Append completely:
// appending and rolling back other series between the real ones, even
// series with enough new symbols to grow the symbol table, gives the
// same bytes as appending the real ones alone.
func TestEncoderRollback(t *testing.T) {
	var r Request
	if err := r.Unmarshal(V1, mustMarshal(realisticV1(300))); err != nil {
		t.Fatal(err)
	}
	var plain Encoder
	want := encodeAll(t, &plain, &r)

	big := TimeSeries{Samples: []Sample{{Value: 1, Timestamp: 2}}}
	for i := 0; i < 3000; i++ {
		big.Labels = append(big.Labels, Label{Name: fmt.Sprintf("l%05d", i), Value: fmt.Sprintf("v%d", i)})
	}
	var e Encoder
	e.Reset()
	for i := range r.Series {
		m := e.Mark()
		if i%2 == 0 {
			e.Append(&r.Series[(i*7+3)%len(r.Series)])
		} else {
			e.Append(&big)
		}
		e.Rollback(m)
		if e.Len() != i {
			t.Fatalf("Len() = %d after rollback, want %d", e.Len(), i)
		}
		e.Append(&r.Series[i])
	}
	if got := e.Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("encoding with rollbacks differs from the plain one (%d vs %d bytes)", len(got), len(want))
	}
}
