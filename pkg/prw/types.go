// Package prw decodes Prometheus remote-write requests (1.0 and 2.0) into one
// in-memory form and encodes that form as a remote-write 2.0 request.
//
// Decoding is the edge's hot path, so it is written by hand against the wire
// format rather than through the generated gogo types: strings alias the
// input buffer and all slices are reused between requests. Tests check that
// it decodes exactly what the generated prompb and writev2 types decode,
// apart from the stricter checks listed on Request.Unmarshal.
//
// TimeSeries.Normalize applies the series checks of Prometheus' receiver,
// and Encoder writes the result as the remote-write 2.0 request stored in
// each Kafka record.
package prw

// Version is a remote-write protobuf message version.
type Version uint8

const (
	// V1 is prometheus.WriteRequest (remote-write 1.0).
	V1 Version = 1
	// V2 is io.prometheus.write.v2.Request (remote-write 2.0).
	V2 Version = 2
)

func (v Version) String() string {
	switch v {
	case V1:
		return "prw1"
	case V2:
		return "prw2"
	}
	return "unknown"
}

// Label is one label pair. Name and Value may alias the buffer a Request
// was decoded from; copy them to keep them past the buffer's lifetime.
type Label struct {
	Name, Value string
}

// Sample is one float sample. StartTimestamp is the remote-write 2.0 start
// (created) timestamp, 0 when unknown.
type Sample struct {
	Value          float64
	Timestamp      int64
	StartTimestamp int64
}

// Histogram is one native histogram kept in its protobuf encoding.
// prometheus.Histogram (1.0) and io.prometheus.write.v2.Histogram (2.0)
// share field numbers 1–16 (2.0 adds start_timestamp = 17), so the same
// bytes are valid in both messages and pass through without re-encoding.
// Timestamp is copied out of Raw for ordering and limits; changing it does
// not change Raw.
//
// StartTimestamp is the 2.0 start timestamp, 0 when unknown. Decoding 2.0
// takes it from Raw's field 17 or, when that is 0, from the series' legacy
// created_timestamp (see Request.Unmarshal). The Encoder appends it to Raw as
// field 17 whenever it differs from what Raw itself carries; protobuf's
// last-one-wins rule for scalars makes the appended value the one readers
// see. For a hand-built Histogram a non-zero StartTimestamp therefore
// overrides Raw's, and 0 leaves Raw's alone.
type Histogram struct {
	Timestamp      int64
	StartTimestamp int64
	Raw            []byte

	// rawStart is field 17 as found in Raw when decoded, so the Encoder can
	// tell whether StartTimestamp needs writing.
	rawStart int64
}

// Exemplar is one exemplar of a series.
type Exemplar struct {
	Labels    []Label
	Value     float64
	Timestamp int64
}

// MetricType is the metric type of metadata; both protocol versions number
// the types the same way.
type MetricType uint8

const (
	MetricTypeUnknown MetricType = iota
	MetricTypeCounter
	MetricTypeGauge
	MetricTypeHistogram
	MetricTypeGaugeHistogram
	MetricTypeSummary
	MetricTypeInfo
	MetricTypeStateset
)

// Metadata describes the metric family of a series.
type Metadata struct {
	Type MetricType
	Help string
	Unit string
}

// TimeSeries is one series with its data points.
type TimeSeries struct {
	Labels     []Label
	Samples    []Sample
	Histograms []Histogram
	Exemplars  []Exemplar
	Metadata   Metadata
}

// Request is a decoded remote-write request. Its zero value is ready to use;
// Reset keeps the allocated slices for the next request.
type Request struct {
	Series []TimeSeries

	// Backing storage: every TimeSeries' (and Exemplar's) slices are
	// sub-slices of these, so a warmed-up Request decodes without
	// allocating.
	labels    []Label
	exLabels  []Label
	samples   []Sample
	hists     []Histogram
	exemplars []Exemplar
	symbols   []string         // 2.0 symbol table
	rawLabels [][]byte         // 1.0: each series' label fields as received
	meta      []familyMetadata // 1.0 top-level metadata
	metaIndex map[string]int   // 1.0 family name -> index into meta
}
