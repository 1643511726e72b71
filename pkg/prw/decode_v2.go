package prw

import (
	"fmt"
	"math"
)

// Decoding of io.prometheus.write.v2.Request (remote-write 2.0), see
// github.com/prometheus/prometheus/prompb/io/prometheus/write/v2/types.proto.

var (
	v2RequestFields  = fieldNames{4: "symbols", 5: "timeseries"}
	v2SeriesFields   = fieldNames{1: "labels_refs", 2: "samples", 3: "histograms", 4: "exemplars", 5: "metadata"}
	v2SampleFields   = fieldNames{1: "value", 2: "timestamp", 3: "start_timestamp"}
	v2ExemplarFields = fieldNames{1: "labels_refs", 2: "value", 3: "timestamp"}
	v2MetadataFields = fieldNames{1: "type", 3: "help_ref", 4: "unit_ref"}
)

// refError is a symbol reference that Prometheus' receiver would reject:
// out of the symbol table's range, or an unpaired label ref.
type refError struct{ msg string }

func (e *refError) Error() string { return e.msg }

func refRangeErr(what string, ref uint64, size int) error {
	return &refError{fmt.Sprintf("%s %d outside of symbols table (size %d)", what, ref, size)}
}

func (r *Request) unmarshalV2(b []byte) error {
	// Symbols may legally follow the series that use them, so collect them
	// first. Senders put them first, so the second pass starts at the first
	// series.
	first, n := -1, 0
	for i := 0; i < len(b); {
		k, j, err := tag(b, i)
		if err != nil {
			return err
		}
		switch k {
		case 4<<3 | wtBytes:
			s, e := lenDelim(b, j)
			if e < 0 {
				return fmt.Errorf("symbols %d: %w", len(r.symbols), posErr(e))
			}
			r.symbols = append(r.symbols, str(b, s, e))
			i = e
		case 5<<3 | wtBytes:
			_, e := lenDelim(b, j)
			if e < 0 {
				return fmt.Errorf("timeseries %d: %w", n, posErr(e))
			}
			if first < 0 {
				first = i
			}
			n++
			i = e
		default:
			if i, err = skipUnknown(b, j, k, v2RequestFields); err != nil {
				return err
			}
		}
	}
	if first < 0 {
		return nil
	}
	for i := first; i < len(b); {
		// The structure was checked above.
		k, j, _ := tag(b, i)
		if k != (5<<3 | wtBytes) {
			i, _ = skip(b, j, k&7)
			continue
		}
		s, e := lenDelim(b, j)
		r.Series = append(r.Series, TimeSeries{})
		if err := r.decodeSeriesV2(b[s:e], &r.Series[len(r.Series)-1]); err != nil {
			return fmt.Errorf("timeseries %d: %w", len(r.Series)-1, err)
		}
		i = e
	}
	return nil
}

func (r *Request) decodeSeriesV2(b []byte, ts *TimeSeries) (err error) {
	syms := r.symbols
	l0, s0, h0, x0 := len(r.labels), len(r.samples), len(r.hists), len(r.exemplars)
	var (
		pending  = -1 // name ref waiting for its value ref
		typ      uint64
		help     uint64
		unit     uint64
		legacyCT int64
	)
	for i := 0; i < len(b); {
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
				return fmt.Errorf("labels_refs: %w", posErr(e))
			}
			p := b[:e]
			for j := s; j < e; {
				var v uint64
				if c := p[j]; c < 0x80 {
					v = uint64(c)
					j++
				} else if v, j = varintSlow(p, j); j < 0 {
					if j == posTruncated {
						return fmt.Errorf("labels_refs: %w", errPackedLength)
					}
					return fmt.Errorf("labels_refs: %w", posErr(j))
				}
				// The common case inline; addLabelRef has the rest and the
				// error messages.
				if ref := uint32(v); int(ref) < len(syms) {
					if pending < 0 {
						pending = int(ref)
					} else {
						r.labels = append(r.labels, Label{Name: syms[pending], Value: syms[ref]})
						pending = -1
					}
					continue
				}
				if pending, err = r.addLabelRef(&r.labels, syms, pending, uint32(v), len(r.labels)-l0); err != nil {
					return err
				}
			}
			i = e
		case 1<<3 | wtVarint:
			var v uint64
			if v, i = varint(b, i); i < 0 {
				return fmt.Errorf("labels_refs: %w", posErr(i))
			}
			if pending, err = r.addLabelRef(&r.labels, syms, pending, uint32(v), len(r.labels)-l0); err != nil {
				return err
			}
		case 2<<3 | wtBytes:
			s, e := lenDelim(b, i)
			if e < 0 {
				return fmt.Errorf("sample %d: %w", len(r.samples)-s0, posErr(e))
			}
			sm, err := decodeSampleV2(b[s:e])
			if err != nil {
				return fmt.Errorf("sample %d: %w", len(r.samples)-s0, err)
			}
			r.samples = append(r.samples, sm)
			i = e
		case 3<<3 | wtBytes:
			s, e := lenDelim(b, i)
			if e < 0 {
				return fmt.Errorf("histogram %d: %w", len(r.hists)-h0, posErr(e))
			}
			t, st, err := scanHistogram(b[s:e], V2)
			if err != nil {
				return fmt.Errorf("histogram %d: %w", len(r.hists)-h0, err)
			}
			r.hists = append(r.hists, Histogram{Timestamp: t, StartTimestamp: st, Raw: b[s:e:e], rawStart: st})
			i = e
		case 4<<3 | wtBytes:
			s, e := lenDelim(b, i)
			if e < 0 {
				return fmt.Errorf("exemplar %d: %w", len(r.exemplars)-x0, posErr(e))
			}
			if err := r.decodeExemplarV2(b[s:e]); err != nil {
				return fmt.Errorf("exemplar %d: %w", len(r.exemplars)-x0, err)
			}
			i = e
		case 5<<3 | wtBytes:
			// A repeated singular message merges field by field.
			s, e := lenDelim(b, i)
			if e < 0 {
				return fmt.Errorf("metadata: %w", posErr(e))
			}
			if err := decodeMetadataV2(b[s:e], &typ, &help, &unit); err != nil {
				return fmt.Errorf("metadata: %w", err)
			}
			i = e
		case 6<<3 | wtVarint:
			// Legacy created_timestamp from before start timestamps moved
			// into Sample and Histogram; reserved in today's schema.
			var v uint64
			if v, i = varint(b, i); i < 0 {
				return fmt.Errorf("created_timestamp (6): %w", posErr(i))
			}
			legacyCT = int64(v)
		default:
			if i, err = skipUnknown(b, i, k, v2SeriesFields); err != nil {
				return err
			}
		}
	}
	if pending >= 0 {
		return &refError{fmt.Sprintf("labels_refs: odd number of refs (%d)", 2*(len(r.labels)-l0)+1)}
	}
	// Same checks and order as writev2.TimeSeries.ToMetadata.
	if unit >= uint64(len(syms)) {
		return refRangeErr("metadata unit_ref", unit, len(syms))
	}
	if help >= uint64(len(syms)) {
		return refRangeErr("metadata help_ref", help, len(syms))
	}
	ts.Metadata = Metadata{Type: metricType(typ), Help: syms[help], Unit: syms[unit]}

	ts.Labels = r.labels[l0:len(r.labels):len(r.labels)]
	ts.Samples = r.samples[s0:len(r.samples):len(r.samples)]
	ts.Histograms = r.hists[h0:len(r.hists):len(r.hists)]
	ts.Exemplars = r.exemplars[x0:len(r.exemplars):len(r.exemplars)]
	if legacyCT != 0 {
		for i := range ts.Samples {
			if ts.Samples[i].StartTimestamp == 0 {
				ts.Samples[i].StartTimestamp = legacyCT
			}
		}
		for i := range ts.Histograms {
			if ts.Histograms[i].StartTimestamp == 0 {
				ts.Histograms[i].StartTimestamp = legacyCT
			}
		}
	}
	return nil
}

// addLabelRef handles one label ref: it checks its range and either keeps
// it as the pending name ref or appends the completed label to *dst. n is
// the number of labels decoded so far, for error messages. It returns the
// new pending ref.
func (r *Request) addLabelRef(dst *[]Label, syms []string, pending int, ref uint32, n int) (int, error) {
	if int(ref) >= len(syms) {
		what := "name"
		if pending >= 0 {
			what = "value"
		}
		return 0, refRangeErr(fmt.Sprintf("label %d: %s ref", n, what), uint64(ref), len(syms))
	}
	if pending < 0 {
		return int(ref), nil
	}
	*dst = append(*dst, Label{Name: syms[pending], Value: syms[ref]})
	return -1, nil
}

func decodeSampleV2(b []byte) (sm Sample, err error) {
	// Fast path: value then timestamp, no start timestamp.
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
				return sm, fieldErr(k, v2SampleFields, posErr(i))
			}
			sm.Value = math.Float64frombits(v)
		case 2<<3 | wtVarint, 3<<3 | wtVarint:
			var t uint64
			if t, i = varint(b, i); i < 0 {
				return sm, fieldErr(k, v2SampleFields, posErr(i))
			}
			if k>>3 == 2 {
				sm.Timestamp = int64(t)
			} else {
				sm.StartTimestamp = int64(t)
			}
		default:
			if i, err = skipUnknown(b, i, k, v2SampleFields); err != nil {
				return sm, err
			}
		}
	}
	return sm, nil
}

func (r *Request) decodeExemplarV2(b []byte) (err error) {
	syms := r.symbols
	l0 := len(r.exLabels)
	pending := -1
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
				return fmt.Errorf("labels_refs: %w", posErr(e))
			}
			p := b[:e]
			for j := s; j < e; {
				var v uint64
				if v, j = varint(p, j); j < 0 {
					if j == posTruncated {
						return fmt.Errorf("labels_refs: %w", errPackedLength)
					}
					return fmt.Errorf("labels_refs: %w", posErr(j))
				}
				if pending, err = r.addLabelRef(&r.exLabels, syms, pending, uint32(v), len(r.exLabels)-l0); err != nil {
					return err
				}
			}
			i = e
		case 1<<3 | wtVarint:
			var v uint64
			if v, i = varint(b, i); i < 0 {
				return fmt.Errorf("labels_refs: %w", posErr(i))
			}
			if pending, err = r.addLabelRef(&r.exLabels, syms, pending, uint32(v), len(r.exLabels)-l0); err != nil {
				return err
			}
		case 2<<3 | wtFixed64:
			var v uint64
			if v, i = fixed64(b, i); i < 0 {
				return fieldErr(k, v2ExemplarFields, posErr(i))
			}
			ex.Value = math.Float64frombits(v)
		case 3<<3 | wtVarint:
			var t uint64
			if t, i = varint(b, i); i < 0 {
				return fieldErr(k, v2ExemplarFields, posErr(i))
			}
			ex.Timestamp = int64(t)
		default:
			if i, err = skipUnknown(b, i, k, v2ExemplarFields); err != nil {
				return err
			}
		}
	}
	if pending >= 0 {
		return &refError{fmt.Sprintf("labels_refs: odd number of refs (%d)", 2*(len(r.exLabels)-l0)+1)}
	}
	ex.Labels = r.exLabels[l0:len(r.exLabels):len(r.exLabels)]
	r.exemplars = append(r.exemplars, ex)
	return nil
}

// decodeMetadataV2 sets the fields present in b, leaving the others as they
// are (merge semantics). Refs are truncated to uint32 like the generated
// code does; the caller checks their range.
func decodeMetadataV2(b []byte, typ, help, unit *uint64) (err error) {
	for i := 0; i < len(b); {
		var k uint64
		if k, i, err = tag(b, i); err != nil {
			return err
		}
		switch k {
		case 1<<3 | wtVarint, 3<<3 | wtVarint, 4<<3 | wtVarint:
			var v uint64
			if v, i = varint(b, i); i < 0 {
				return fieldErr(k, v2MetadataFields, posErr(i))
			}
			switch k >> 3 {
			case 1:
				*typ = v
			case 3:
				*help = uint64(uint32(v))
			case 4:
				*unit = uint64(uint32(v))
			}
		default:
			if i, err = skipUnknown(b, i, k, v2MetadataFields); err != nil {
				return err
			}
		}
	}
	return nil
}
