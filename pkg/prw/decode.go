package prw

import (
	"fmt"
	"strings"
)

// Reset empties r but keeps its allocated storage for the next Unmarshal.
func (r *Request) Reset() {
	r.Series = r.Series[:0]
	r.labels = r.labels[:0]
	r.exLabels = r.exLabels[:0]
	r.samples = r.samples[:0]
	r.hists = r.hists[:0]
	r.exemplars = r.exemplars[:0]
	r.symbols = r.symbols[:0]
	r.meta = r.meta[:0]
	clear(r.rawLabels)
	r.rawLabels = r.rawLabels[:0]
}

// RawLabels returns the bytes series i's labels were decoded from, as
// received: for a 1.0 request, its label fields when they are contiguous
// (every sender writes them so), else nil; always nil for 2.0, whose
// labels are references. Equal bytes decode to equal labels, so callers
// can key per-series work on them (the edge's series cache does). The
// bytes alias the buffer Unmarshal decoded.
func (r *Request) RawLabels(i int) []byte {
	if i < len(r.rawLabels) {
		return r.rawLabels[i]
	}
	return nil
}

// Unmarshal resets r and decodes buf, a serialized prometheus.WriteRequest
// (V1) or io.prometheus.write.v2.Request (V2), into it.
//
// Label names and values, metadata strings and Histogram.Raw alias buf, so
// buf must not be modified or reused while r (or anything copied out of it
// without copying the strings) is in use. Once r has decoded a request of a
// given size, decoding another one no bigger does not allocate.
//
// Decoding accepts what the generated prompb/writev2 Unmarshal accept, with
// these differences:
//   - packed repeated fields must be well-formed (see errPackedLength);
//   - V2: label refs must come in pairs and every label, exemplar label,
//     help and unit ref must index the symbol table, as Prometheus' receiver
//     requires (it checks after decoding, per series); here any bad ref fails
//     the whole request. Like that receiver, symbols[0] is not required to be
//     "" even though the spec says senders must put it there.
//   - V2: the legacy TimeSeries field 6 (created_timestamp, varint; now
//     reserved) becomes the StartTimestamp of every sample and histogram of
//     that series whose own start timestamp is 0;
//   - V1: a histogram carrying field 17 is rejected (see
//     errV1HistogramField17);
//   - V1: the top-level metadata list is not kept as such but attached to
//     series: an entry applies to the series whose __name__ equals its
//     metric_family_name, or equals it plus one of the suffixes _total,
//     _bucket, _count, _sum, _created, _info (the sample names of
//     OpenMetrics counter, histogram, summary and info families). An exact
//     match wins over a suffix match and, for entries with the same family
//     name, the last one wins. Metadata-only requests, which is how
//     Prometheus' 1.0 sender ships metadata, therefore decode to no series.
//
// Metric types outside the known enum values decode as MetricTypeUnknown.
// On error r is left empty and the error names where in the message the
// problem is, e.g. "timeseries 3: label 2: value: truncated varint".
func (r *Request) Unmarshal(v Version, buf []byte) error {
	r.Reset()
	var err error
	switch v {
	case V1:
		err = r.unmarshalV1(buf)
	case V2:
		err = r.unmarshalV2(buf)
	default:
		return fmt.Errorf("unknown remote-write version %d", v)
	}
	if err != nil {
		r.Reset()
		return err
	}
	return nil
}

// Counts returns the number of float samples, histogram samples and
// exemplars in r.
func (r *Request) Counts() (samples, histograms, exemplars int) {
	for i := range r.Series {
		ts := &r.Series[i]
		samples += len(ts.Samples)
		histograms += len(ts.Histograms)
		exemplars += len(ts.Exemplars)
	}
	return samples, histograms, exemplars
}

// metricType maps a decoded enum value; both versions use the same numbers.
func metricType(v uint64) MetricType {
	// Generated code reads enums as int32.
	if t := int32(v); t >= 0 && t <= int32(MetricTypeStateset) {
		return MetricType(t)
	}
	return MetricTypeUnknown
}

// familyMetadata is one entry of a 1.0 request's metadata list.
type familyMetadata struct {
	family string
	md     Metadata
}

// familySuffixes are the suffixes by which a sample name may extend its
// metric family name; see Unmarshal.
var familySuffixes = [...]string{"_total", "_bucket", "_count", "_sum", "_created", "_info"}

// attachMetadataV1 applies the 1.0 metadata list to the decoded series.
func (r *Request) attachMetadataV1() {
	if len(r.meta) == 0 {
		return
	}
	if r.metaIndex == nil {
		r.metaIndex = make(map[string]int, len(r.meta))
	} else {
		clear(r.metaIndex)
	}
	for i := range r.meta {
		r.metaIndex[r.meta[i].family] = i // later entries overwrite earlier ones
	}
	for i := range r.Series {
		ts := &r.Series[i]
		name := metricName(ts.Labels)
		if name == "" {
			continue
		}
		if j, ok := r.metaIndex[name]; ok {
			ts.Metadata = r.meta[j].md
			continue
		}
		for _, suf := range familySuffixes {
			if len(name) > len(suf) && strings.HasSuffix(name, suf) {
				if j, ok := r.metaIndex[name[:len(name)-len(suf)]]; ok {
					ts.Metadata = r.meta[j].md
				}
				break // no name ends in two of the suffixes
			}
		}
	}
}

// metricName returns the value of the first __name__ label.
func metricName(ls []Label) string {
	for i := range ls {
		if ls[i].Name == metricNameLabel {
			return ls[i].Value
		}
	}
	return ""
}

const metricNameLabel = "__name__"
