package backfill

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/weir-metrics/weir/pkg/influx"
	"github.com/weir-metrics/weir/pkg/prw"
)

// influxReader maps InfluxDB line protocol, batchLines lines at a time,
// with the same mapping as the edge's /api/v2/write.
type influxReader struct {
	r          *bufio.Reader
	batchLines int
	opts       influx.Options
	batch      influx.Batch
	chunk      []byte
	line       int64
	done       bool
}

// NewInfluxReader reads line protocol with the given timestamp precision.
// Every line must carry a timestamp.
func NewInfluxReader(r io.Reader, precision influx.Precision, batchLines int) Reader {
	return &influxReader{
		r:          bufio.NewReaderSize(r, 1<<20),
		batchLines: max(1, batchLines),
		// A line without a timestamp would get Now; the zero time makes
		// it recognisable, and it is refused below.
		opts: influx.Options{Precision: precision, Now: time.Unix(0, 0)},
	}
}

func (r *influxReader) Next() ([]prw.TimeSeries, error) {
	if r.done {
		return nil, io.EOF
	}
	r.chunk = r.chunk[:0]
	first := r.line
	for n := 0; n < r.batchLines; {
		line, err := r.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("line %d is longer than 1 MiB", r.line+1)
		}
		r.chunk = append(r.chunk, line...)
		if len(bytes.TrimSpace(line)) > 0 {
			r.line++
			n++
		}
		if errors.Is(err, io.EOF) {
			r.done = true
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if err := r.batch.Parse(r.chunk, &r.opts); err != nil {
		var pe *influx.ParseError
		if errors.As(err, &pe) {
			pe.Line += first
		}
		return nil, err
	}
	for _, ts := range r.batch.Series {
		for _, s := range ts.Samples {
			if s.Timestamp == 0 {
				return nil, fmt.Errorf("a line of %s (lines %d–%d) has no timestamp; backfilled lines need one", prw.Selector(ts.Labels), first+1, r.line)
			}
		}
	}
	if len(r.batch.Series) == 0 && r.done {
		return nil, io.EOF
	}
	return r.batch.Series, nil
}
