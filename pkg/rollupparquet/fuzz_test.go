package rollupparquet

import (
	"bytes"
	"math"
	"reflect"
	"testing"

	"github.com/weir-metrics/weir/pkg/rollup"
)

// FuzzRowsToFile takes arbitrary rollup records (JSON lines) the way the
// Parquet writer does: every row that decodes either converts to a file
// row or is refused with an error (a corrupt sketch), never a panic, and
// the file rows written to Parquet read back unchanged.
func FuzzRowsToFile(f *testing.F) {
	s, err := rollup.NewSketch(0.01)
	if err != nil {
		f.Fatal(err)
	}
	for _, v := range []float64{-2, 0, 1, 3, 1e6} {
		_ = s.Add(v)
	}
	sk, err := rollup.EncodeSketch(s)
	if err != nil {
		f.Fatal(err)
	}
	inc := 2.5
	vals, err := rollup.EncodeRows([]rollup.Row{
		{Tenant: "t1", Rollup: "default", Partition: 1, Metric: "g", Labels: map[string]string{"job": "a"}, SeriesHash: 7,
			ResolutionMs: 300_000, WindowStartMs: 1_700_000_100_000, Kind: rollup.KindGauge, Count: 5, Sum: 1, Min: -2, Max: 1e6, Sketch: sk},
		{Tenant: "t1", Rollup: "default", Metric: "c_total", Kind: rollup.KindCounter, Count: 2, Sum: math.Inf(1), Increase: &inc},
	}, 1<<20)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(vals[0])
	f.Add([]byte(`{"metric":"x","kind":"gauge","sketch":"AAEC"}` + "\n"))
	f.Fuzz(func(t *testing.T, value []byte) {
		rows, err := rollup.DecodeRows(value, nil)
		if err != nil {
			return
		}
		var frs []FileRow
		for i := range rows {
			fr, err := ToFileRow(&rows[i])
			if err != nil {
				continue
			}
			frs = append(frs, fr)
		}
		var buf bytes.Buffer
		if err := Write(&buf, frs, WriteOptions{RowGroupRows: 2, Generation: 3, Tenant: "t1"}); err != nil {
			t.Fatalf("writing %d file rows: %v", len(frs), err)
		}
		back, gen, err := Read(buf.Bytes())
		if err != nil {
			t.Fatalf("reading a file weir wrote: %v", err)
		}
		if gen != 3 || len(back) != len(frs) {
			t.Fatalf("generation %d, %d rows; want 3, %d", gen, len(back), len(frs))
		}
		for i := range frs {
			if !sameFileRow(frs[i], back[i]) {
				t.Fatalf("row %d changed through Parquet:\n%+v\n%+v", i, frs[i], back[i])
			}
		}
	})
}

// FuzzReadFile feeds arbitrary bytes to the reader the Parquet writer
// runs on the object already in the bucket before merging into it: a
// corrupt object is an error, never a panic that would stop the sink.
func FuzzReadFile(f *testing.F) {
	var buf bytes.Buffer
	if err := Write(&buf, []FileRow{{Metric: "m", Labels: map[string]string{"a": "b"}, Kind: rollup.KindGauge, Count: 1}}, WriteOptions{RowGroupRows: 1}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("PAR1\x00\x00\x00\x00PAR1"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = Read(b)
	})
}

// sameFileRow compares rows field by field, NaN equal to NaN, and empty
// collections equal to missing ones.
func sameFileRow(a, b FileRow) bool {
	fa, fb := floatsOf(&a), floatsOf(&b)
	for i := range fa {
		if (fa[i] == nil) != (fb[i] == nil) || fa[i] != nil && math.Float64bits(*fa[i]) != math.Float64bits(*fb[i]) && !(math.IsNaN(*fa[i]) && math.IsNaN(*fb[i])) {
			return false
		}
	}
	a.Sum, a.Min, a.Max, a.First, a.Last, a.Increase, a.SketchRelativeAccuracy, a.SketchGamma, a.SketchZeroCount = nil, nil, nil, nil, nil, nil, nil, nil, nil
	b.Sum, b.Min, b.Max, b.First, b.Last, b.Increase, b.SketchRelativeAccuracy, b.SketchGamma, b.SketchZeroCount = nil, nil, nil, nil, nil, nil, nil, nil, nil
	for _, r := range []*FileRow{&a, &b} {
		if len(r.Labels) == 0 {
			r.Labels = nil
		}
		if len(r.Histogram) == 0 {
			r.Histogram = nil
		}
		if len(r.Sketch) == 0 {
			r.Sketch = nil
		}
		if len(r.SketchBins) == 0 {
			r.SketchBins = nil
		}
		if len(r.SketchNegativeBins) == 0 {
			r.SketchNegativeBins = nil
		}
		for i := range r.SketchBins {
			if math.IsNaN(r.SketchBins[i].Count) {
				r.SketchBins[i].Count = -1
			}
		}
		for i := range r.SketchNegativeBins {
			if math.IsNaN(r.SketchNegativeBins[i].Count) {
				r.SketchNegativeBins[i].Count = -1
			}
		}
	}
	return reflect.DeepEqual(a, b)
}

func floatsOf(r *FileRow) []*float64 {
	return []*float64{r.Sum, r.Min, r.Max, r.First, r.Last, r.Increase, r.SketchRelativeAccuracy, r.SketchGamma, r.SketchZeroCount}
}
