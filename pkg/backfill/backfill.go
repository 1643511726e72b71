// Package backfill reads historical data from files into weir's series
// form, in batches, so it can enter Kafka like live data: OpenMetrics (or
// Prometheus text) with timestamps, and remote-write request files.
package backfill

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/golang/snappy"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	"github.com/weir-metrics/weir/pkg/prw"
)

// Reader yields batches of series. Next returns io.EOF after the last
// batch. A batch and its strings stay valid until the next call.
type Reader interface {
	Next() ([]prw.TimeSeries, error)
}

// openMetricsReader parses an OpenMetrics or Prometheus text exposition in
// memory (as promtool's backfill does), batchSamples samples at a time.
type openMetricsReader struct {
	p            textparse.Parser
	batchSamples int
	lset         labels.Labels
	meta         map[string]prw.Metadata
	series       []prw.TimeSeries
	index        map[string]int
	line         int
	done         bool
}

// NewOpenMetricsReader reads data, an OpenMetrics exposition ending in
// "# EOF" or, without it, the Prometheus text format. Every sample must
// carry a timestamp: backfilled data without one has no time to go to.
func NewOpenMetricsReader(data []byte, batchSamples int) Reader {
	var p textparse.Parser
	if strings.Contains(string(tail(data, 64)), "# EOF") {
		p = textparse.NewOpenMetricsParser(data, labels.NewSymbolTable(), textparse.WithOMParserSTSeriesSkipped())
	} else {
		p = textparse.NewPromParser(data, labels.NewSymbolTable(), false)
	}
	return &openMetricsReader{p: p, batchSamples: max(1, batchSamples), meta: map[string]prw.Metadata{}, index: map[string]int{}}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func (r *openMetricsReader) Next() ([]prw.TimeSeries, error) {
	if r.done {
		return nil, io.EOF
	}
	r.series = r.series[:0]
	clear(r.index)
	samples := 0
	for samples < r.batchSamples {
		et, err := r.p.Next()
		if errors.Is(err, io.EOF) {
			r.done = true
			break
		}
		if err != nil {
			return nil, fmt.Errorf("parsing exposition: %w", err)
		}
		switch et {
		case textparse.EntryType:
			name, typ := r.p.Type()
			m := r.meta[string(name)]
			m.Type = metricType(typ)
			r.meta[string(name)] = m
		case textparse.EntryHelp:
			name, help := r.p.Help()
			m := r.meta[string(name)]
			m.Help = string(help)
			r.meta[string(name)] = m
		case textparse.EntryUnit:
			name, unit := r.p.Unit()
			m := r.meta[string(name)]
			m.Unit = string(unit)
			r.meta[string(name)] = m
		case textparse.EntrySeries:
			_, ts, v := r.p.Series()
			r.p.Labels(&r.lset)
			if ts == nil {
				return nil, fmt.Errorf("sample %s has no timestamp; backfilled samples need one", r.lset.String())
			}
			key := r.lset.String()
			i, ok := r.index[key]
			if !ok {
				i = len(r.series)
				r.index[key] = i
				ts := prw.TimeSeries{Metadata: r.familyMeta(r.lset.Get(labels.MetricName))}
				// The parser reuses the labels' memory on the next
				// series: copy the strings.
				r.lset.Range(func(l labels.Label) {
					ts.Labels = append(ts.Labels, prw.Label{Name: strings.Clone(l.Name), Value: strings.Clone(l.Value)})
				})
				r.series = append(r.series, ts)
			}
			r.series[i].Samples = append(r.series[i].Samples, prw.Sample{Value: v, Timestamp: *ts})
			samples++
		}
	}
	if len(r.series) == 0 && r.done {
		return nil, io.EOF
	}
	return r.series, nil
}

// familyMeta finds the metadata of a series' family, whose name may lack
// the series' suffix.
func (r *openMetricsReader) familyMeta(name string) prw.Metadata {
	if m, ok := r.meta[name]; ok {
		return m
	}
	for _, suffix := range []string{"_total", "_bucket", "_count", "_sum", "_created", "_info"} {
		if m, ok := r.meta[strings.TrimSuffix(name, suffix)]; ok && strings.HasSuffix(name, suffix) {
			return m
		}
	}
	return prw.Metadata{}
}

func metricType(t model.MetricType) prw.MetricType {
	switch t {
	case "counter":
		return prw.MetricTypeCounter
	case "gauge":
		return prw.MetricTypeGauge
	case "histogram":
		return prw.MetricTypeHistogram
	case "gaugehistogram":
		return prw.MetricTypeGaugeHistogram
	case "summary":
		return prw.MetricTypeSummary
	case "info":
		return prw.MetricTypeInfo
	case "stateset":
		return prw.MetricTypeStateset
	}
	return prw.MetricTypeUnknown
}

// prwReader reads remote-write request bodies, each as Prometheus sends
// it (snappy block encoded protobuf), prefixed by its length as an
// unsigned varint.
type prwReader struct {
	r       *bufio.Reader
	version prw.Version
	body    []byte
	buf     []byte
	req     prw.Request
	n       int
}

// NewPRWReader reads remote-write requests of the given version.
func NewPRWReader(r io.Reader, version prw.Version) Reader {
	return &prwReader{r: bufio.NewReaderSize(r, 1<<20), version: version}
}

// MaxPRWBody bounds one request of a remote-write file.
const MaxPRWBody = 64 << 20

func (r *prwReader) Next() ([]prw.TimeSeries, error) {
	size, err := binary.ReadUvarint(r.r)
	if errors.Is(err, io.EOF) {
		return nil, io.EOF
	}
	if err != nil {
		return nil, fmt.Errorf("request %d: reading length: %w", r.n, err)
	}
	if size > MaxPRWBody {
		return nil, fmt.Errorf("request %d: length %d exceeds %d bytes", r.n, size, MaxPRWBody)
	}
	if uint64(cap(r.body)) < size {
		r.body = make([]byte, size)
	}
	r.body = r.body[:size]
	if _, err := io.ReadFull(r.r, r.body); err != nil {
		return nil, fmt.Errorf("request %d: %w", r.n, err)
	}
	n, err := snappy.DecodedLen(r.body)
	if err != nil || n > MaxPRWBody {
		return nil, fmt.Errorf("request %d: bad snappy body (%d bytes decoded): %v", r.n, n, err)
	}
	r.buf, err = snappy.Decode(r.buf[:cap(r.buf)], r.body)
	if err != nil {
		return nil, fmt.Errorf("request %d: %w", r.n, err)
	}
	r.req.Reset()
	if err := r.req.Unmarshal(r.version, r.buf); err != nil {
		return nil, fmt.Errorf("request %d: %w", r.n, err)
	}
	r.n++
	return r.req.Series, nil
}

// AppendPRW appends one remote-write body to a remote-write file, for
// writing such files.
func AppendPRW(dst, snappyBody []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(snappyBody)))
	return append(dst, snappyBody...)
}
