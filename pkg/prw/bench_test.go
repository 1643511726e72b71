package prw

import (
	"testing"

	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

const benchSeries = 2000 // × 11 labels × 1 sample

// mixedV1 is realisticV1(n) plus the series and metadata of richV1, so that
// histograms, exemplars and the metadata mapping are on the measured path.
func mixedV1(n int) []byte {
	req := realisticV1(n)
	rich := richV1()
	req.Timeseries = append(req.Timeseries, rich.Timeseries...)
	req.Metadata = rich.Metadata
	return mustMarshal(req)
}

// mixedV2 is mixedV1 re-encoded as 2.0 by the Encoder.
func mixedV2(n int) []byte {
	var r Request
	if err := r.Unmarshal(V1, mixedV1(n)); err != nil {
		panic(err)
	}
	var e Encoder
	for i := range r.Series {
		e.Append(&r.Series[i])
	}
	return append([]byte(nil), e.Bytes()...)
}

func TestSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	v1 := mixedV1(benchSeries)
	v2 := mixedV2(benchSeries)
	var r Request
	for _, tc := range []struct {
		v   Version
		buf []byte
	}{{V1, v1}, {V2, v2}} {
		allocs := testing.AllocsPerRun(20, func() {
			if err := r.Unmarshal(tc.v, tc.buf); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("Unmarshal(%s): %v allocs per request, want 0", tc.v, allocs)
		}
	}

	if err := r.Unmarshal(V1, v1); err != nil {
		t.Fatal(err)
	}
	var e Encoder
	allocs := testing.AllocsPerRun(20, func() {
		e.Reset()
		for i := range r.Series {
			e.Append(&r.Series[i])
		}
		_ = e.Bytes()
	})
	if allocs != 0 {
		t.Errorf("Encoder: %v allocs per request, want 0", allocs)
	}
}

func reportSamples(b *testing.B, perOp int) {
	b.ReportMetric(float64(perOp)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}

func BenchmarkDecodeV1(b *testing.B) {
	buf := mustMarshal(realisticV1(benchSeries))
	b.Run("prw", func(b *testing.B) {
		var r Request
		b.SetBytes(int64(len(buf)))
		b.ReportAllocs()
		for b.Loop() {
			if err := r.Unmarshal(V1, buf); err != nil {
				b.Fatal(err)
			}
		}
		reportSamples(b, benchSeries)
	})
	b.Run("prompb", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		b.ReportAllocs()
		for b.Loop() {
			var req prompb.WriteRequest
			if err := req.Unmarshal(buf); err != nil {
				b.Fatal(err)
			}
		}
		reportSamples(b, benchSeries)
	})
}

func BenchmarkDecodeV2(b *testing.B) {
	buf := mustMarshal(v1ToV2(realisticV1(benchSeries)))
	b.Run("prw", func(b *testing.B) {
		var r Request
		b.SetBytes(int64(len(buf)))
		b.ReportAllocs()
		for b.Loop() {
			if err := r.Unmarshal(V2, buf); err != nil {
				b.Fatal(err)
			}
		}
		reportSamples(b, benchSeries)
	})
	b.Run("writev2", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		b.ReportAllocs()
		for b.Loop() {
			var req writev2.Request
			if err := req.Unmarshal(buf); err != nil {
				b.Fatal(err)
			}
		}
		reportSamples(b, benchSeries)
	})
}

func BenchmarkEncodeV2(b *testing.B) {
	v1 := realisticV1(benchSeries)
	var r Request
	if err := r.Unmarshal(V1, mustMarshal(v1)); err != nil {
		b.Fatal(err)
	}
	b.Run("prw", func(b *testing.B) {
		var e Encoder
		b.ReportAllocs()
		for b.Loop() {
			e.Reset()
			for i := range r.Series {
				e.Append(&r.Series[i])
			}
			b.SetBytes(int64(len(e.Bytes())))
		}
		reportSamples(b, benchSeries)
	})
	// For reference: what a Prometheus sender does, symbolizing with
	// writev2.SymbolsTable and marshalling the generated type.
	b.Run("writev2", func(b *testing.B) {
		st := writev2.NewSymbolTable()
		req := writev2.Request{Timeseries: make([]writev2.TimeSeries, len(v1.Timeseries))}
		var buf []byte
		b.ReportAllocs()
		for b.Loop() {
			st.Reset()
			for i, ts := range v1.Timeseries {
				refs := req.Timeseries[i].LabelsRefs[:0]
				for _, l := range ts.Labels {
					refs = append(refs, st.Symbolize(l.Name), st.Symbolize(l.Value))
				}
				req.Timeseries[i].LabelsRefs = refs
				req.Timeseries[i].Samples = append(req.Timeseries[i].Samples[:0], writev2.Sample{Value: ts.Samples[0].Value, Timestamp: ts.Samples[0].Timestamp})
			}
			req.Symbols = st.Symbols()
			var err error
			if buf, err = req.OptimizedMarshal(buf); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(buf)))
		}
		reportSamples(b, benchSeries)
	})
}
