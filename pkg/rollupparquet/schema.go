// Package rollupparquet writes rollup rows as Parquet files into object
// storage: one file per tenant, rollup, resolution, hour and partition,
// Hive-partitioned, named from the data so that a replay overwrites
// instead of duplicating (docs/rollups.md describes the layout and the
// schema).
package rollupparquet

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/parquet-go/parquet-go/format"

	"github.com/weir-metrics/weir/pkg/rollup"
)

// FileRow is one row of a rollup file. The Parquet column names are the
// tags; docs/rollups.md documents each. Columns named like the Hive
// partitions (tenant, resolution, date) are left out on purpose: readers
// take those from the path, and Spark refuses a column that is both.
type FileRow struct {
	Metric string `parquet:"metric,dict"`
	// Labels without __name__.
	Labels     map[string]string `parquet:"labels"`
	SeriesHash uint64            `parquet:"series_hash"`
	Rollup     string            `parquet:"rollup,dict"`
	// ResolutionSeconds is the window size; the path's resolution= is the
	// same size written as 5m, 1h, 1d.
	ResolutionSeconds int64  `parquet:"resolution_seconds"`
	WindowStart       int64  `parquet:"window_start,timestamp(millisecond)"`
	WindowEnd         int64  `parquet:"window_end,timestamp(millisecond)"`
	Kind              string `parquet:"kind,dict"`

	Count          int64    `parquet:"count"`
	Sum            *float64 `parquet:"sum,optional"`
	Min            *float64 `parquet:"min,optional"`
	Max            *float64 `parquet:"max,optional"`
	First          *float64 `parquet:"first,optional"`
	FirstTimestamp *int64   `parquet:"first_timestamp,optional,timestamp(millisecond)"`
	Last           *float64 `parquet:"last,optional"`
	LastTimestamp  *int64   `parquet:"last_timestamp,optional,timestamp(millisecond)"`
	Increase       *float64 `parquet:"increase,optional"`
	Resets         int64    `parquet:"resets"`

	HistogramCount int64  `parquet:"histogram_count"`
	Histogram      []byte `parquet:"histogram,optional"`

	Sketch                 []byte      `parquet:"sketch,optional"`
	SketchRelativeAccuracy *float64    `parquet:"sketch_relative_accuracy,optional"`
	SketchGamma            *float64    `parquet:"sketch_gamma,optional"`
	SketchZeroCount        *float64    `parquet:"sketch_zero_count,optional"`
	SketchBins             []SketchBin `parquet:"sketch_bins,list"`
	SketchNegativeBins     []SketchBin `parquet:"sketch_negative_bins,list"`

	SourcePartition int32 `parquet:"source_partition"`
}

// SketchBin is one non-empty bin of a sketch: values v with
// ⌊log_γ |v|⌋ = index, count of them.
type SketchBin struct {
	Index int32   `parquet:"index"`
	Count float64 `parquet:"count"`
}

// key identifies a row within a file (docs/rollups.md: row key).
type key struct {
	rollup     string
	resolution int64
	start      int64
	hash       uint64
}

func (r *FileRow) key() key {
	return key{r.Rollup, r.ResolutionSeconds, r.WindowStart, r.SeriesHash}
}

// ToFileRow converts a rollup row to its file form, exploding the sketch.
func ToFileRow(r *rollup.Row) (FileRow, error) {
	f := FileRow{
		Metric:            r.Metric,
		Labels:            r.Labels,
		SeriesHash:        r.SeriesHash,
		Rollup:            r.Rollup,
		ResolutionSeconds: r.ResolutionMs / 1000,
		WindowStart:       r.WindowStartMs,
		WindowEnd:         r.WindowEndMs(),
		Kind:              r.Kind,
		Count:             r.Count,
		Increase:          r.Increase,
		Resets:            r.Resets,
		HistogramCount:    r.HistogramCount,
		Histogram:         r.Histogram,
		Sketch:            r.Sketch,
		SourcePartition:   r.Partition,
	}
	if f.Labels == nil {
		f.Labels = map[string]string{}
	}
	if r.Count > 0 {
		f.Sum, f.Min, f.Max = ptr(r.Sum), ptr(r.Min), ptr(r.Max)
		f.First, f.FirstTimestamp = ptr(r.First), ptr(r.FirstTimestampMs)
		f.Last, f.LastTimestamp = ptr(r.Last), ptr(r.LastTimestampMs)
	}
	if len(r.Sketch) > 0 {
		sk, err := rollup.DecodeSketch(r.Sketch)
		if err != nil {
			return f, err
		}
		b, err := rollup.SketchBins(sk)
		if err != nil {
			return f, err
		}
		f.SketchGamma = ptr(b.Gamma)
		f.SketchRelativeAccuracy = ptr(sk.RelativeAccuracy())
		f.SketchZeroCount = ptr(b.ZeroCount)
		for _, x := range b.Positive {
			f.SketchBins = append(f.SketchBins, SketchBin{x.Index, x.Count})
		}
		for _, x := range b.Negative {
			f.SketchNegativeBins = append(f.SketchNegativeBins, SketchBin{x.Index, x.Count})
		}
	}
	return f, nil
}

func ptr[T any](v T) *T { return &v }

// FileKey names one file: the rows of one rollup and resolution whose
// windows start in one hour, from one partition of one tenant.
type FileKey struct {
	Tenant       string
	Rollup       string
	ResolutionMs int64
	Hour         int64 // Unix ms of the hour (UTC) the windows start in
	Partition    int32
}

// KeyOf returns the file a row belongs to.
func KeyOf(r *rollup.Row) FileKey {
	return FileKey{Tenant: r.Tenant, Rollup: r.Rollup, ResolutionMs: r.ResolutionMs, Hour: r.WindowStartMs - r.WindowStartMs%hourMs, Partition: r.Partition}
}

const hourMs = int64(time.Hour / time.Millisecond)

// Prefix is where rollup files live in the bucket.
const Prefix = "rollups"

// ObjectName is the object of a file:
// rollups/tenant=<t>/resolution=<r>/date=<YYYY-MM-DD>/<HH>-<rollup>-p<partition>.parquet.
// It depends on the data only, so a recomputation writes the same names.
func (k FileKey) ObjectName() string {
	h := time.UnixMilli(k.Hour).UTC()
	return path.Join(Prefix,
		"tenant="+k.Tenant,
		"resolution="+ResolutionName(k.ResolutionMs),
		"date="+h.Format(time.DateOnly),
		fmt.Sprintf("%02d-%s-p%04d.parquet", h.Hour(), k.Rollup, k.Partition))
}

// ResolutionName is rollup.ResolutionName, the path's resolution=.
func ResolutionName(ms int64) string { return rollup.ResolutionName(ms) }

// Complete reports whether every window that belongs to the file has
// closed at the given watermark of its partition: the last window that
// starts in the hour closes at its end plus the allowed lateness.
func (k FileKey) Complete(watermark, latenessMs int64) bool {
	lastStart := k.Hour + hourMs - k.ResolutionMs
	if k.ResolutionMs >= hourMs {
		lastStart = k.Hour
	}
	return watermark >= lastStart+k.ResolutionMs+latenessMs
}

// Key-value metadata of rollup files.
const (
	MetaGeneration = "weir.rollup.generation"
	MetaTenant     = "weir.tenant"
	MetaSchema     = "weir.rollup.schema"
)

// SchemaVersion is the version of FileRow's layout, in MetaSchema.
const SchemaVersion = "1"

// WriteOptions shape the Parquet files.
type WriteOptions struct {
	RowGroupRows int
	Generation   int64
	Tenant       string
	CreatedBy    string
}

// Write writes rows as one Parquet file, sorted by metric, series hash,
// resolution and window start so that row group statistics let readers
// skip what a query does not need.
func Write(w io.Writer, rows []FileRow, o WriteOptions) error {
	slices.SortFunc(rows, func(a, b FileRow) int {
		return cmp.Or(cmp.Compare(a.Metric, b.Metric), cmp.Compare(a.SeriesHash, b.SeriesHash),
			cmp.Compare(a.Rollup, b.Rollup), cmp.Compare(a.ResolutionSeconds, b.ResolutionSeconds), cmp.Compare(a.WindowStart, b.WindowStart))
	})
	pw := parquet.NewGenericWriter[FileRow](w,
		parquet.Compression(&zstd.Codec{}),
		parquet.MaxRowsPerRowGroup(int64(max(o.RowGroupRows, 1))),
		parquet.CreatedBy(cmp.Or(o.CreatedBy, "weir"), "", ""),
		parquet.KeyValueMetadata(MetaGeneration, strconv.FormatInt(o.Generation, 10)),
		parquet.KeyValueMetadata(MetaTenant, o.Tenant),
		parquet.KeyValueMetadata(MetaSchema, SchemaVersion),
	)
	if _, err := pw.Write(rows); err != nil {
		return fmt.Errorf("writing Parquet rows: %w", err)
	}
	if err := pw.Close(); err != nil {
		return fmt.Errorf("closing Parquet file: %w", err)
	}
	return nil
}

// Read reads a rollup file written by Write, with its generation. A
// corrupt file is an error: parquet-go panics on some (slice bounds out of
// range, found by FuzzReadFile), and the writer reads the object already
// in the bucket before every merge, so one damaged object must not stop
// the sink.
func Read(b []byte) (rows []FileRow, generation int64, err error) {
	defer func() {
		if r := recover(); r != nil {
			rows, generation, err = nil, 0, fmt.Errorf("reading Parquet file: corrupt (%v)", r)
		}
	}()
	f, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, 0, fmt.Errorf("opening Parquet file: %w", err)
	}
	if err := checkFile(f, int64(len(b))); err != nil {
		return nil, 0, err
	}
	if v, ok := f.Lookup(MetaGeneration); ok {
		generation, _ = strconv.ParseInt(v, 10, 64)
	}
	rows, err = parquet.Read[FileRow](bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, 0, fmt.Errorf("reading Parquet rows: %w", err)
	}
	return rows, generation, nil
}

// maxInflation bounds how much larger than the file its columns may be
// once decompressed. Rollup rows compress well, but not a hundredfold.
const maxInflation = 100

// checkFile refuses a file weir cannot have written before its pages are
// read: parquet-go trusts a file's own sizes and codecs, and on corrupt
// ones allocates without bound (its LZ4 decoder doubles its buffer until
// memory runs out; a page header may claim gigabytes). weir writes zstd
// (or uncompressed) columns only, and their sizes must fit the file.
func checkFile(f *parquet.File, size int64) error {
	for i, rg := range f.Metadata().RowGroups {
		for j, c := range rg.Columns {
			m := c.MetaData
			switch {
			case m.Codec != format.Zstd && m.Codec != format.Uncompressed:
				return fmt.Errorf("reading Parquet file: row group %d column %d is compressed with %s, which weir does not write", i, j, m.Codec)
			case m.TotalCompressedSize < 0 || m.TotalCompressedSize > size:
				return fmt.Errorf("reading Parquet file: row group %d column %d claims %d bytes in a file of %d", i, j, m.TotalCompressedSize, size)
			case m.TotalUncompressedSize < 0 || m.TotalUncompressedSize > maxInflation*max(size, 1<<10):
				return fmt.Errorf("reading Parquet file: row group %d column %d claims %d bytes decompressed from a file of %d", i, j, m.TotalUncompressedSize, size)
			}
		}
	}
	return nil
}
