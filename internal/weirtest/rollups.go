package weirtest

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// RollupRow is one row of a rollup Parquet file as Apache Arrow's Parquet
// reader sees it: an independent reader, not the library that wrote the
// file. Optional columns that are null are nil.
type RollupRow struct {
	Object string // path below the bucket
	// From the Hive-style path.
	Tenant, Resolution, Date string

	Metric                 string
	Labels                 map[string]string
	SeriesHash             uint64
	Rollup                 string
	ResolutionSeconds      int64
	WindowStart, WindowEnd int64 // Unix ms
	Kind                   string
	Count                  int64
	Sum, Min, Max          *float64
	First, Last            *float64
	FirstTS, LastTS        *int64
	Increase               *float64
	Resets                 int64
	HistogramCount         int64
	Histogram              []byte
	Sketch                 []byte
	SketchRelativeAccuracy *float64
	SketchGamma            *float64
	SketchZeroCount        *float64
	SketchBins             []RollupBin
	SketchNegativeBins     []RollupBin
	SourcePartition        int32
}

// RollupBin is one sketch bin.
type RollupBin struct {
	Index int32
	Count float64
}

// Key identifies a row across files: what a recomputation must produce
// exactly once.
func (r RollupRow) Key() string {
	return fmt.Sprintf("%s/%s/%s/%d/%d/%d", r.Tenant, r.Rollup, r.Resolution, r.WindowStart, r.SeriesHash, r.SourcePartition)
}

// ReadRollupFiles reads every rollups/**/*.parquet file below bucketDir.
func ReadRollupFiles(bucketDir string) ([]RollupRow, error) {
	var out []RollupRow
	root := filepath.Join(bucketDir, "rollups")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root && errorsIsNotExist(err) {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".parquet") {
			return nil
		}
		rows, err := readRollupFile(path)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		rel, _ := filepath.Rel(bucketDir, path)
		hive := map[string]string{}
		for _, part := range strings.Split(filepath.ToSlash(rel), "/") {
			if k, v, ok := strings.Cut(part, "="); ok {
				hive[k] = v
			}
		}
		for i := range rows {
			rows[i].Object = filepath.ToSlash(rel)
			rows[i].Tenant, rows[i].Resolution, rows[i].Date = hive["tenant"], hive["resolution"], hive["date"]
		}
		out = append(out, rows...)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out, err
}

func errorsIsNotExist(err error) bool { return strings.Contains(err.Error(), "no such file") }

func readRollupFile(path string) ([]RollupRow, error) {
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		return nil, err
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 1 << 14}, memory.DefaultAllocator)
	if err != nil {
		return nil, err
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		return nil, err
	}
	defer tbl.Release()
	tr := array.NewTableReader(tbl, 1<<14)
	defer tr.Release()
	var out []RollupRow
	for tr.Next() {
		rec := tr.RecordBatch()
		col := func(name string) arrow.Array {
			idx := rec.Schema().FieldIndices(name)
			if len(idx) == 0 {
				return nil
			}
			return rec.Column(idx[0])
		}
		for i := 0; i < int(rec.NumRows()); i++ {
			r := RollupRow{
				Metric:                 str(col("metric"), i),
				Labels:                 stringMap(col("labels"), i),
				SeriesHash:             col("series_hash").(*array.Uint64).Value(i),
				Rollup:                 str(col("rollup"), i),
				ResolutionSeconds:      col("resolution_seconds").(*array.Int64).Value(i),
				WindowStart:            int64(col("window_start").(*array.Timestamp).Value(i)),
				WindowEnd:              int64(col("window_end").(*array.Timestamp).Value(i)),
				Kind:                   str(col("kind"), i),
				Count:                  col("count").(*array.Int64).Value(i),
				Sum:                    optFloat(col("sum"), i),
				Min:                    optFloat(col("min"), i),
				Max:                    optFloat(col("max"), i),
				First:                  optFloat(col("first"), i),
				Last:                   optFloat(col("last"), i),
				FirstTS:                optTS(col("first_timestamp"), i),
				LastTS:                 optTS(col("last_timestamp"), i),
				Increase:               optFloat(col("increase"), i),
				Resets:                 col("resets").(*array.Int64).Value(i),
				HistogramCount:         col("histogram_count").(*array.Int64).Value(i),
				Histogram:              optBytes(col("histogram"), i),
				Sketch:                 optBytes(col("sketch"), i),
				SketchRelativeAccuracy: optFloat(col("sketch_relative_accuracy"), i),
				SketchGamma:            optFloat(col("sketch_gamma"), i),
				SketchZeroCount:        optFloat(col("sketch_zero_count"), i),
				SketchBins:             bins(col("sketch_bins"), i),
				SketchNegativeBins:     bins(col("sketch_negative_bins"), i),
				SourcePartition:        col("source_partition").(*array.Int32).Value(i),
			}
			out = append(out, r)
		}
	}
	return out, tr.Err()
}

func str(a arrow.Array, i int) string {
	switch a := a.(type) {
	case *array.String:
		return a.Value(i)
	case *array.Binary:
		return string(a.Value(i))
	case *array.Dictionary:
		return str(a.Dictionary(), a.GetValueIndex(i))
	}
	panic(fmt.Sprintf("string column of type %T", a))
}

func optFloat(a arrow.Array, i int) *float64 {
	if a.IsNull(i) {
		return nil
	}
	v := a.(*array.Float64).Value(i)
	return &v
}

func optTS(a arrow.Array, i int) *int64 {
	if a.IsNull(i) {
		return nil
	}
	v := int64(a.(*array.Timestamp).Value(i))
	return &v
}

func optBytes(a arrow.Array, i int) []byte {
	if a.IsNull(i) {
		return nil
	}
	return append([]byte(nil), a.(*array.Binary).Value(i)...)
}

func stringMap(a arrow.Array, i int) map[string]string {
	m := a.(*array.Map)
	out := map[string]string{}
	start, end := m.ValueOffsets(i)
	for j := start; j < end; j++ {
		out[str(m.Keys(), int(j))] = str(m.Items(), int(j))
	}
	return out
}

func bins(a arrow.Array, i int) []RollupBin {
	l := a.(*array.List)
	if l.IsNull(i) {
		return nil
	}
	st := l.ListValues().(*array.Struct)
	idx := st.Field(0).(*array.Int32)
	cnt := st.Field(1).(*array.Float64)
	start, end := l.ValueOffsets(i)
	var out []RollupBin
	for j := start; j < end; j++ {
		out = append(out, RollupBin{Index: idx.Value(int(j)), Count: cnt.Value(int(j))})
	}
	return out
}
