package prw

import (
	"fmt"
	"math"
)

// Decoding of prometheus.WriteRequest (remote-write 1.0), see
// github.com/prometheus/prometheus/prompb/{remote,types}.proto.

var (
	v1RequestFields  = fieldNames{1: "timeseries", 3: "metadata"}
	v1SeriesFields   = fieldNames{1: "labels", 2: "samples", 3: "exemplars", 4: "histograms"}
	v1LabelFields    = fieldNames{1: "name", 2: "value"}
	v1SampleFields   = fieldNames{1: "value", 2: "timestamp"}
	v1ExemplarFields = fieldNames{1: "labels", 2: "value", 3: "timestamp"}
	v1MetadataFields = fieldNames{1: "type", 2: "metric_family_name", 4: "help", 5: "unit"}
)

func (r *Request) unmarshalV1(b []byte) error {
	for i := 0; i < len(b); {
		k, j, err := tag(b, i)
		if err != nil {
			return err
		}
		switch k {
		case 1<<3 | wtBytes:
			s, e := lenDelim(b, j)
			if e < 0 {
				return fmt.Errorf("timeseries %d: %w", len(r.Series), posErr(e))
			}
			r.Series = append(r.Series, TimeSeries{})
			if err := r.decodeSeriesV1(b[s:e], &r.Series[len(r.Series)-1]); err != nil {
				return fmt.Errorf("timeseries %d: %w", len(r.Series)-1, err)
			}
			i = e
		case 3<<3 | wtBytes:
			s, e := lenDelim(b, j)
			if e < 0 {
				return fmt.Errorf("metadata %d: %w", len(r.meta), posErr(e))
			}
			m, err := decodeMetadataV1(b[s:e])
			if err != nil {
				return fmt.Errorf("metadata %d: %w", len(r.meta), err)
			}
			r.meta = append(r.meta, m)
			i = e
		default:
			if i, err = skipUnknown(b, j, k, v1RequestFields); err != nil {
				return err
			}
		}
	}
	r.attachMetadataV1()
	return nil
}

func (r *Request) decodeSeriesV1(b []byte, ts *TimeSeries) (err error) {
	l0, s0, h0, x0 := len(r.labels), len(r.samples), len(r.hists), len(r.exemplars)
	// The span of the label fields, while they are contiguous.
	rawStart, rawEnd, contiguous := -1, -1, true
	for i := 0; i < len(b); {
		field := i
		var k uint64
		// Fast path for the one-byte tags every field here has.
		if c := b[i]; c < 0x80 && c >= 8 && c&7 != wtEnd {
			k = uint64(c)
			i++
		} else if k, i, err = tag(b, i); err != nil {
			return err
		}
		switch k {
		case 1<<3 | wtBytes:
			s, e := lenDelim(b, i)
			if e < 0 {
				return fmt.Errorf("label %d: %w", len(r.labels)-l0, posErr(e))
			}
			l, err := decodeLabelV1(b[s:e])
			if err != nil {
				return fmt.Errorf("label %d: %w", len(r.labels)-l0, err)
			}
			r.labels = append(r.labels, l)
			if rawStart < 0 {
				rawStart = field
			} else if rawEnd != field {
				contiguous = false
			}
			rawEnd, i = e, e
		case 2<<3 | wtBytes:
			s, e := lenDelim(b, i)
			if e < 0 {
				return fmt.Errorf("sample %d: %w", len(r.samples)-s0, posErr(e))
			}
			sm, err := decodeSampleV1(b[s:e])
			if err != nil {
				return fmt.Errorf("sample %d: %w", len(r.samples)-s0, err)
			}
			r.samples = append(r.samples, sm)
			i = e
		case 3<<3 | wtBytes:
			s, e := lenDelim(b, i)
			if e < 0 {
				return fmt.Errorf("exemplar %d: %w", len(r.exemplars)-x0, posErr(e))
			}
			if err := r.decodeExemplarV1(b[s:e]); err != nil {
				return fmt.Errorf("exemplar %d: %w", len(r.exemplars)-x0, err)
			}
			i = e
		case 4<<3 | wtBytes:
			s, e := lenDelim(b, i)
			if e < 0 {
				return fmt.Errorf("histogram %d: %w", len(r.hists)-h0, posErr(e))
			}
			t, _, err := scanHistogram(b[s:e], V1)
			if err != nil {
				return fmt.Errorf("histogram %d: %w", len(r.hists)-h0, err)
			}
			r.hists = append(r.hists, Histogram{Timestamp: t, Raw: b[s:e:e]})
			i = e
		default:
			if i, err = skipUnknown(b, i, k, v1SeriesFields); err != nil {
				return err
			}
		}
	}
	// Full slice expressions so that appending to one series' slice cannot
	// overwrite the next series.
	ts.Labels = r.labels[l0:len(r.labels):len(r.labels)]
	ts.Samples = r.samples[s0:len(r.samples):len(r.samples)]
	ts.Histograms = r.hists[h0:len(r.hists):len(r.hists)]
	ts.Exemplars = r.exemplars[x0:len(r.exemplars):len(r.exemplars)]
	var raw []byte
	if contiguous && rawStart >= 0 {
		raw = b[rawStart:rawEnd:rawEnd]
	}
	r.rawLabels = append(r.rawLabels, raw)
	return nil
}

func decodeLabelV1(b []byte) (l Label, err error) {
	// Fast path: name then value, both shorter than 128 bytes, nothing
	// else — what every sender produces.
	if len(b) >= 4 && b[0] == (1<<3|wtBytes) && b[1] < 0x80 {
		n := int(b[1])
		if v := 2 + n; v+2 <= len(b) && b[v] == (2<<3|wtBytes) && b[v+1] < 0x80 && v+2+int(b[v+1]) == len(b) {
			return Label{Name: str(b, 2, v), Value: str(b, v+2, len(b))}, nil
		}
	}
	for i := 0; i < len(b); {
		var k uint64
		if k, i, err = tag(b, i); err != nil {
			return l, err
		}
		switch k {
		case 1<<3 | wtBytes, 2<<3 | wtBytes:
			s, e := lenDelim(b, i)
			if e < 0 {
				return l, fieldErr(k, v1LabelFields, posErr(e))
			}
			if k == (1<<3 | wtBytes) {
				l.Name = str(b, s, e)
			} else {
				l.Value = str(b, s, e)
			}
			i = e
		default:
			if i, err = skipUnknown(b, i, k, v1LabelFields); err != nil {
				return l, err
			}
		}
	}
	return l, nil
}

func decodeSampleV1(b []byte) (sm Sample, err error) {
	// Fast path: value then timestamp.
	if len(b) >= 11 && b[0] == (1<<3|wtFixed64) && b[9] == (2<<3|wtVarint) {
		v, _ := fixed64(b, 1)
		if t, j := varint(b, 10); j == len(b) {
			return Sample{Value: math.Float64frombits(v), Timestamp: int64(t)}, nil
		}
	}
	for i := 0; i < len(b); {
		var k uint64
		if k, i, err = tag(b, i); err != nil {
			return sm, err
		}
		switch k {
		case 1<<3 | wtFixed64:
			var v uint64
			if v, i = fixed64(b, i); i < 0 {
				return sm, fieldErr(k, v1SampleFields, posErr(i))
			}
			sm.Value = math.Float64frombits(v)
		case 2<<3 | wtVarint:
			var t uint64
			if t, i = varint(b, i); i < 0 {
				return sm, fieldErr(k, v1SampleFields, posErr(i))
			}
			sm.Timestamp = int64(t)
		default:
			if i, err = skipUnknown(b, i, k, v1SampleFields); err != nil {
				return sm, err
			}
		}
	}
	return sm, nil
}

func (r *Request) decodeExemplarV1(b []byte) (err error) {
	l0 := len(r.exLabels)
	var ex Exemplar
	for i := 0; i < len(b); {
		var k uint64
		if k, i, err = tag(b, i); err != nil {
			return err
		}
		switch k {
		case 1<<3 | wtBytes:
			s, e := lenDelim(b, i)
			if e < 0 {
				return fmt.Errorf("label %d: %w", len(r.exLabels)-l0, posErr(e))
			}
			l, err := decodeLabelV1(b[s:e])
			if err != nil {
				return fmt.Errorf("label %d: %w", len(r.exLabels)-l0, err)
			}
			r.exLabels = append(r.exLabels, l)
			i = e
		case 2<<3 | wtFixed64:
			var v uint64
			if v, i = fixed64(b, i); i < 0 {
				return fieldErr(k, v1ExemplarFields, posErr(i))
			}
			ex.Value = math.Float64frombits(v)
		case 3<<3 | wtVarint:
			var t uint64
			if t, i = varint(b, i); i < 0 {
				return fieldErr(k, v1ExemplarFields, posErr(i))
			}
			ex.Timestamp = int64(t)
		default:
			if i, err = skipUnknown(b, i, k, v1ExemplarFields); err != nil {
				return err
			}
		}
	}
	ex.Labels = r.exLabels[l0:len(r.exLabels):len(r.exLabels)]
	r.exemplars = append(r.exemplars, ex)
	return nil
}

func decodeMetadataV1(b []byte) (m familyMetadata, err error) {
	for i := 0; i < len(b); {
		var k uint64
		if k, i, err = tag(b, i); err != nil {
			return m, err
		}
		switch k {
		case 1<<3 | wtVarint:
			var t uint64
			if t, i = varint(b, i); i < 0 {
				return m, fieldErr(k, v1MetadataFields, posErr(i))
			}
			m.md.Type = metricType(t)
		case 2<<3 | wtBytes, 4<<3 | wtBytes, 5<<3 | wtBytes:
			s, e := lenDelim(b, i)
			if e < 0 {
				return m, fieldErr(k, v1MetadataFields, posErr(e))
			}
			switch k >> 3 {
			case 2:
				m.family = str(b, s, e)
			case 4:
				m.md.Help = str(b, s, e)
			case 5:
				m.md.Unit = str(b, s, e)
			}
			i = e
		default:
			if i, err = skipUnknown(b, i, k, v1MetadataFields); err != nil {
				return m, err
			}
		}
	}
	return m, nil
}
