package prw

import (
	"errors"
	"fmt"

	"github.com/prometheus/prometheus/model/histogram"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

var histogramFields = fieldNames{
	1: "count_int", 2: "count_float", 3: "sum", 4: "schema", 5: "zero_threshold",
	6: "zero_count_int", 7: "zero_count_float", 8: "negative_spans",
	9: "negative_deltas", 10: "negative_counts", 11: "positive_spans",
	12: "positive_deltas", 13: "positive_counts", 14: "reset_hint",
	15: "timestamp", 16: "custom_values", 17: "start_timestamp",
}

var spanFields = fieldNames{1: "offset", 2: "length"}

// errV1HistogramField17 rejects a remote-write 1.0 histogram carrying field
// 17. The field is unknown in 1.0 (gogo would skip it) but is
// start_timestamp in 2.0, and Raw is forwarded as a 2.0 histogram, so
// keeping it would silently change its meaning or make the record
// undecodable.
var errV1HistogramField17 = errors.New("field 17 is not defined in remote-write 1.0 histograms (it is start_timestamp in 2.0)")

// scanHistogram checks the structure of one Histogram message as strictly as
// the generated Unmarshal does (so that Raw is guaranteed to decode later)
// and extracts its timestamp and, for 2.0, its start timestamp.
func scanHistogram(b []byte, v Version) (ts, st int64, err error) {
	for i := 0; i < len(b); {
		var k uint64
		if k, i, err = tag(b, i); err != nil {
			return 0, 0, err
		}
		switch k {
		case 1<<3 | wtVarint, 4<<3 | wtVarint, 6<<3 | wtVarint, 14<<3 | wtVarint,
			9<<3 | wtVarint, 12<<3 | wtVarint:
			if _, i = varint(b, i); i < 0 {
				return 0, 0, fieldErr(k, histogramFields, posErr(i))
			}
		case 2<<3 | wtFixed64, 3<<3 | wtFixed64, 5<<3 | wtFixed64, 7<<3 | wtFixed64,
			10<<3 | wtFixed64, 13<<3 | wtFixed64, 16<<3 | wtFixed64:
			if _, i = fixed64(b, i); i < 0 {
				return 0, 0, fieldErr(k, histogramFields, posErr(i))
			}
		case 8<<3 | wtBytes, 11<<3 | wtBytes:
			s, e := lenDelim(b, i)
			if e < 0 {
				return 0, 0, fieldErr(k, histogramFields, posErr(e))
			}
			if err := checkSpan(b[s:e]); err != nil {
				return 0, 0, fieldErr(k, histogramFields, err)
			}
			i = e
		case 9<<3 | wtBytes, 12<<3 | wtBytes:
			s, e := lenDelim(b, i)
			if e < 0 {
				return 0, 0, fieldErr(k, histogramFields, posErr(e))
			}
			if err := checkPackedVarints(b, s, e); err != nil {
				return 0, 0, fieldErr(k, histogramFields, err)
			}
			i = e
		case 10<<3 | wtBytes, 13<<3 | wtBytes, 16<<3 | wtBytes:
			s, e := lenDelim(b, i)
			if e < 0 {
				return 0, 0, fieldErr(k, histogramFields, posErr(e))
			}
			if err := checkPackedFixed64(e - s); err != nil {
				return 0, 0, fieldErr(k, histogramFields, err)
			}
			i = e
		case 15<<3 | wtVarint:
			var x uint64
			if x, i = varint(b, i); i < 0 {
				return 0, 0, fieldErr(k, histogramFields, posErr(i))
			}
			ts = int64(x)
		default:
			if k>>3 == 17 {
				if v == V1 {
					return 0, 0, errV1HistogramField17
				}
				if k&7 == wtVarint {
					var x uint64
					if x, i = varint(b, i); i < 0 {
						return 0, 0, fieldErr(k, histogramFields, posErr(i))
					}
					st = int64(x)
					continue
				}
			}
			if i, err = skipUnknown(b, i, k, histogramFields); err != nil {
				return 0, 0, err
			}
		}
	}
	return ts, st, nil
}

func checkSpan(b []byte) (err error) {
	for i := 0; i < len(b); {
		var k uint64
		if k, i, err = tag(b, i); err != nil {
			return err
		}
		switch k {
		case 1<<3 | wtVarint, 2<<3 | wtVarint:
			if _, i = varint(b, i); i < 0 {
				return fieldErr(k, spanFields, posErr(i))
			}
		default:
			if i, err = skipUnknown(b, i, k, spanFields); err != nil {
				return err
			}
		}
	}
	return nil
}

// fieldErr prefixes err with the name of the field k belongs to.
func fieldErr(k uint64, names fieldNames, err error) error {
	return fmt.Errorf("%s: %w", names.name(k>>3), err)
}

// Decode decodes the histogram into Prometheus' model form. Exactly one of
// the two results is non-nil on success: the float form when the message
// carries count_float, the integer form otherwise (the rule of writev2's
// IsFloatHistogram). It does not validate the histogram; see Normalize.
// Decode allocates.
func (h Histogram) Decode() (*histogram.Histogram, *histogram.FloatHistogram, error) {
	var hp writev2.Histogram
	if err := hp.Unmarshal(h.Raw); err != nil {
		return nil, nil, err
	}
	if hp.IsFloatHistogram() {
		return nil, hp.ToFloatHistogram(), nil
	}
	return hp.ToIntHistogram(), nil, nil
}
