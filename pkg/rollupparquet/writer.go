package rollupparquet

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"

	"github.com/weir-metrics/weir/pkg/rollup"
)

// Options configure a Writer.
type Options struct {
	Bucket objstore.Bucket
	Logger *slog.Logger
	// Metrics are shared by the writers of a process (NewMetrics).
	Metrics *Metrics
	// RowGroupRows bounds a Parquet row group.
	RowGroupRows int
	// MaxFileAge is the longest a file's rows wait before an upload
	// although its hour is incomplete.
	MaxFileAge time.Duration
	// MaxFileRows is the most rows a file buffers before an early upload.
	MaxFileRows int
	// TmpDir holds files while they are written, before the upload.
	TmpDir string
	// CreatedBy goes into the files' created_by field.
	CreatedBy string
}

// Writer buffers rollup rows per file and uploads each file once its hour
// is complete. It knows nothing of Kafka beyond offsets: Add takes the
// rows of one record, Committable says which offsets are safe to commit
// (the first record with a row that is not uploaded yet). Uploading a
// file merges it with the object already there, so rows read again after
// a restart, or arriving after an early upload, never remove rows — and
// rows of a newer generation (a recomputation) replace the object
// instead. Writer is not safe for concurrent use.
type Writer struct {
	opts  Options
	parts map[PartitionID]*partState
}

// PartitionID names a partition of a rollup topic.
type PartitionID struct {
	Topic     string
	Partition int32
}

type partState struct {
	watermark int64
	position  int64 // next offset
	files     map[FileKey]*fileBuf
}

type fileBuf struct {
	rows       map[key]FileRow
	minOffset  int64
	since      time.Time // when the oldest buffered row arrived
	lateness   int64
	generation int64
}

// NewWriter returns a Writer.
func NewWriter(o Options) *Writer {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	return &Writer{opts: o, parts: map[PartitionID]*partState{}}
}

func (w *Writer) part(id PartitionID) *partState {
	ps := w.parts[id]
	if ps == nil {
		ps = &partState{watermark: -1 << 63, position: -1, files: map[FileKey]*fileBuf{}}
		w.parts[id] = ps
	}
	return ps
}

// Add buffers the rows of the record at offset of partition id; meta is
// what the record's headers say.
func (w *Writer) Add(id PartitionID, offset int64, meta rollup.Meta, rows []rollup.Row, now time.Time) error {
	frs := make([]FileRow, len(rows))
	for i := range rows {
		fr, err := ToFileRow(&rows[i])
		if err != nil {
			return fmt.Errorf("row %s at offset %d of %s/%d: %w", rows[i].Metric, offset, id.Topic, id.Partition, err)
		}
		frs[i] = fr
	}
	ps := w.part(id)
	for i := range rows {
		r, fr := &rows[i], frs[i]
		k := KeyOf(r)
		f := ps.files[k]
		if f == nil {
			f = &fileBuf{rows: map[key]FileRow{}, minOffset: offset, since: now}
			ps.files[k] = f
		}
		// The last row with a key wins; a recomputation of live rows is
		// identical anyway.
		if _, ok := f.rows[fr.key()]; !ok {
			w.opts.Metrics.pendingRows.Inc()
		}
		f.rows[fr.key()] = fr
		f.minOffset = min(f.minOffset, offset)
		f.lateness = max(f.lateness, r.AllowedLatenessMs)
		f.generation = max(f.generation, meta.Generation)
	}
	ps.watermark = max(ps.watermark, meta.Watermark)
	ps.position = max(ps.position, offset+1)
	return nil
}

// Skip moves past a record without rows for the writer.
func (w *Writer) Skip(id PartitionID, offset int64) {
	ps := w.part(id)
	ps.position = max(ps.position, offset+1)
}

// due reports why a file should be uploaded now, or "".
func (w *Writer) due(ps *partState, k FileKey, f *fileBuf, now time.Time, all bool) string {
	switch {
	case k.Complete(ps.watermark, f.lateness):
		return "complete"
	case len(f.rows) >= w.opts.MaxFileRows:
		return "size"
	case now.Sub(f.since) >= w.opts.MaxFileAge:
		return "age"
	case all:
		return "forced"
	}
	return ""
}

// Flush uploads every file that is due: its hour complete by its
// partition's watermark, or its rows old or many enough (all uploads
// every buffered file). It stops at the first failed upload and returns
// its error; the file stays buffered for the next attempt.
func (w *Writer) Flush(ctx context.Context, now time.Time, all bool) error {
	type item struct {
		id PartitionID
		k  FileKey
	}
	var items []item
	for id, ps := range w.parts {
		for k, f := range ps.files {
			if w.due(ps, k, f, now, all) != "" {
				items = append(items, item{id, k})
			}
		}
	}
	slices.SortFunc(items, func(a, b item) int {
		return cmp.Or(cmp.Compare(a.k.Hour, b.k.Hour), cmp.Compare(a.id.Topic, b.id.Topic), cmp.Compare(a.id.Partition, b.id.Partition),
			cmp.Compare(a.k.Rollup, b.k.Rollup), cmp.Compare(a.k.ResolutionMs, b.k.ResolutionMs))
	})
	for _, it := range items {
		ps := w.parts[it.id]
		f := ps.files[it.k]
		reason := w.due(ps, it.k, f, now, all)
		if err := w.upload(ctx, it.k, f); err != nil {
			w.opts.Metrics.uploadFailures.Inc()
			return fmt.Errorf("uploading %s: %w", it.k.ObjectName(), err)
		}
		w.opts.Metrics.pendingRows.Sub(float64(len(f.rows)))
		w.opts.Logger.Debug("rollup file uploaded", "object", it.k.ObjectName(), "rows", len(f.rows), "reason", reason)
		delete(ps.files, it.k)
	}
	return nil
}

// upload writes the file: the object's rows (unless ours are of a newer
// generation) merged with the buffered ones, which win, written to a
// local temporary file and uploaded whole, so a reader sees the old
// object or the new one, never a part.
func (w *Writer) upload(ctx context.Context, k FileKey, f *fileBuf) error {
	start := time.Now()
	name := k.ObjectName()
	rows := make(map[key]FileRow, len(f.rows))
	gen := f.generation
	old, err := w.get(ctx, name)
	if err != nil {
		return err
	}
	if old != nil {
		oldRows, oldGen, err := Read(old)
		switch {
		case err != nil:
			// An object we cannot read is replaced rather than kept
			// forever in the way.
			w.opts.Logger.Warn("replacing unreadable rollup file", "object", name, "err", err)
		case oldGen > gen:
			gen = oldGen
			fallthrough
		case oldGen == gen:
			for _, r := range oldRows {
				rows[r.key()] = r
			}
		}
	}
	for k, r := range f.rows {
		rows[k] = r
	}
	list := make([]FileRow, 0, len(rows))
	for _, r := range rows {
		list = append(list, r)
	}
	tmp, err := os.CreateTemp(w.opts.TmpDir, "rollup-*.parquet")
	if err != nil {
		return fmt.Errorf("creating temporary file: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := Write(tmp, list, WriteOptions{RowGroupRows: w.opts.RowGroupRows, Generation: gen, Tenant: k.Tenant, CreatedBy: w.opts.CreatedBy}); err != nil {
		return err
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := w.opts.Bucket.Upload(ctx, name, tmp); err != nil {
		return err
	}
	w.opts.Metrics.filesWritten.WithLabelValues(k.Tenant).Inc()
	w.opts.Metrics.rowsWritten.WithLabelValues(k.Tenant).Add(float64(len(list)))
	w.opts.Metrics.bytesWritten.WithLabelValues(k.Tenant).Add(float64(size))
	w.opts.Metrics.uploadDuration.Observe(time.Since(start).Seconds())
	return nil
}

// get returns the object's content, or nil when there is none.
func (w *Writer) get(ctx context.Context, name string) ([]byte, error) {
	rc, err := w.opts.Bucket.Get(ctx, name)
	if err != nil {
		if w.opts.Bucket.IsObjNotFoundErr(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading the current %s: %w", name, err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, rc); err != nil {
		return nil, fmt.Errorf("reading the current %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// Committable returns, per partition, the offset up to which every row is
// uploaded: the first offset with a row still buffered, or the position.
func (w *Writer) Committable() map[PartitionID]int64 {
	out := map[PartitionID]int64{}
	for id, ps := range w.parts {
		if ps.position < 0 {
			continue
		}
		off := ps.position
		for _, f := range ps.files {
			off = min(off, f.minOffset)
		}
		out[id] = off
	}
	return out
}

// PendingRows is the number of rows buffered and not uploaded.
func (w *Writer) PendingRows() int {
	n := 0
	for _, ps := range w.parts {
		for _, f := range ps.files {
			n += len(f.rows)
		}
	}
	return n
}

// Forget drops the buffers of partitions this writer no longer owns; their
// new owner reads the rows again from the committed offsets.
func (w *Writer) Forget(id PartitionID) {
	ps := w.parts[id]
	if ps == nil {
		return
	}
	for _, f := range ps.files {
		w.opts.Metrics.pendingRows.Sub(float64(len(f.rows)))
	}
	delete(w.parts, id)
}

// Metrics are the Parquet writer's metrics.
type Metrics struct {
	filesWritten   *prometheus.CounterVec
	rowsWritten    *prometheus.CounterVec
	bytesWritten   *prometheus.CounterVec
	uploadFailures prometheus.Counter
	uploadDuration prometheus.Histogram
	pendingRows    prometheus.Gauge
	// RecordsDiscarded counts rollup records that could not be read.
	RecordsDiscarded *prometheus.CounterVec
}

// NewMetrics registers the writer's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		filesWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_parquet_files_written_total",
			Help: "Rollup Parquet files uploaded (a file merged again counts again), by tenant.",
		}, []string{"tenant"}),
		rowsWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_parquet_rows_written_total",
			Help: "Rows in the rollup Parquet files uploaded, by tenant.",
		}, []string{"tenant"}),
		bytesWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_parquet_bytes_written_total",
			Help: "Bytes of rollup Parquet files uploaded, by tenant.",
		}, []string{"tenant"}),
		uploadFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weir_parquet_upload_failures_total",
			Help: "Failed uploads of rollup files; the writer stalls and retries, and Kafka keeps the rows.",
		}),
		uploadDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "weir_parquet_upload_duration_seconds",
			Help:    "Time to merge, write and upload one rollup file.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		pendingRows: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weir_parquet_pending_rows",
			Help: "Rollup rows buffered by the Parquet writer and not uploaded yet.",
		}),
		RecordsDiscarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_parquet_records_discarded_total",
			Help: "Rollup records the Parquet writer could not read and skipped, by reason.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.filesWritten, m.rowsWritten, m.bytesWritten, m.uploadFailures, m.uploadDuration, m.pendingRows, m.RecordsDiscarded)
	return m
}
