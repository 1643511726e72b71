package prw

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"
)

// The fuzz targets check Unmarshal against the generated gogo code, which
// is what Prometheus' receiver runs. For any input:
//
//  1. Unmarshal never panics, and never accepts what gogo rejects.
//  2. If both accept it, they decode the same series.
//  3. If gogo accepts it and Unmarshal does not, the reason is one of the
//     documented differences:
//     - a packed repeated field whose last element overruns its length
//     (errPackedLength), which gogo tolerates;
//     - V1: a histogram with field 17 (errV1HistogramField17);
//     - V2: a symbol ref out of range or unpaired label refs (*refError),
//     exactly when Prometheus' ToLabels/ToMetadata/ToExemplar would fail.
//  4. gogo's re-encoding of what it decoded (canonical: packed fields well
//     formed, unknown fields kept) is accepted unless the second or third
//     reason above applies, and then it is rejected for that reason.
//  5. If Unmarshal accepts the input, encoding the result with Encoder and
//     decoding that with writev2 and with Unmarshal(V2) gives the same
//     series again, and every series stays within SeriesSizeUpperBound.

func FuzzUnmarshalV1(f *testing.F) {
	for _, s := range seedsV1() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var lib prompb.WriteRequest
		libErr := lib.Unmarshal(in)
		var r Request
		err := r.Unmarshal(V1, in)
		if err == nil && libErr != nil {
			t.Fatalf("accepted input prompb rejects: %v", libErr)
		}
		if libErr == nil {
			want, field17, convErr := fromV1(&lib)
			if convErr != nil {
				t.Fatal(convErr)
			}
			switch {
			case err == nil && field17:
				t.Fatal("accepted a histogram with field 17")
			case err == nil:
				got, err := fromOurs(&r)
				if err != nil {
					t.Fatal(err)
				}
				diffSeries(t, "v1", got, want)
			case errors.Is(err, errPackedLength), field17 && errors.Is(err, errV1HistogramField17):
			default:
				t.Fatalf("prompb accepts, Unmarshal: %v", err)
			}

			canon := mustMarshal(&lib)
			var rc Request
			err := rc.Unmarshal(V1, canon)
			if field17 {
				if !errors.Is(err, errV1HistogramField17) {
					t.Fatalf("canonical input with field 17: %v", err)
				}
			} else {
				if err != nil {
					t.Fatalf("canonical input rejected: %v", err)
				}
				got, err := fromOurs(&rc)
				if err != nil {
					t.Fatal(err)
				}
				diffSeries(t, "v1 canonical", got, want)
			}
		}
		if err == nil {
			checkRoundTrip(t, &r)
		}
	})
}

func FuzzUnmarshalV2(f *testing.F) {
	for _, s := range seedsV2() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var lib writev2.Request
		libErr := lib.Unmarshal(in)
		var r Request
		err := r.Unmarshal(V2, in)
		if err == nil && libErr != nil {
			t.Fatalf("accepted input writev2 rejects: %v", libErr)
		}
		if libErr == nil {
			want, refsOK := fromV2(&lib)
			switch {
			case err == nil && !refsOK:
				t.Fatal("accepted bad symbol refs")
			case err == nil:
				got, err := fromOurs(&r)
				if err != nil {
					t.Fatal(err)
				}
				diffSeries(t, "v2", got, want)
			case errors.Is(err, errPackedLength), !refsOK && isRefError(err):
			default:
				t.Fatalf("writev2 accepts, Unmarshal: %v", err)
			}

			canon := mustMarshal(&lib)
			var rc Request
			err := rc.Unmarshal(V2, canon)
			if !refsOK {
				if !isRefError(err) {
					t.Fatalf("canonical input with bad refs: %v", err)
				}
			} else {
				if err != nil {
					t.Fatalf("canonical input rejected: %v", err)
				}
				got, err := fromOurs(&rc)
				if err != nil {
					t.Fatal(err)
				}
				diffSeries(t, "v2 canonical", got, want)
			}
		}
		if err == nil {
			checkRoundTrip(t, &r)
		}
	})
}

func seedsV1() [][]byte {
	unknown := richV1()
	unknown.XXX_unrecognized = unknownFields(2, 99)
	unknown.Timeseries[0].XXX_unrecognized = unknownFields(5)
	unknown.Timeseries[1].Histograms[0].XXX_unrecognized = unknownFields(18)
	metaOnly := &prompb.WriteRequest{Metadata: richV1().Metadata}
	// Small seeds give mutations a better chance to hit the interesting
	// bytes (lengths, tags, packed payloads).
	small := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:     []prompb.Label{{Name: "__name__", Value: "h"}},
		Samples:    []prompb.Sample{{Value: 1, Timestamp: 2}},
		Exemplars:  []prompb.Exemplar{{Labels: []prompb.Label{{Name: "t", Value: "1"}}, Value: 1}},
		Histograms: []prompb.Histogram{smallHistogramV1()},
	}}, Metadata: []prompb.MetricMetadata{{Type: 1, MetricFamilyName: "h", Help: "x"}}}
	return [][]byte{
		mustMarshal(small),
		mustMarshal(realisticV1(3)),
		mustMarshal(richV1()),
		mustMarshal(unknown),
		mustMarshal(metaOnly),
		nonPackedV1(),
	}
}

func seedsV2() [][]byte {
	legacy := richV2()
	legacy.Timeseries[0].XXX_unrecognized = protowire.AppendVarint(protowire.AppendTag(nil, 6, protowire.VarintType), 1000)
	legacy.Timeseries[1].XXX_unrecognized = protowire.AppendVarint(protowire.AppendTag(nil, 6, protowire.VarintType), 2000)
	unknown := richV2()
	unknown.XXX_unrecognized = unknownFields(1, 6)
	unknown.Timeseries[0].XXX_unrecognized = unknownFields(7)
	unknown.Timeseries[1].Histograms[1].XXX_unrecognized = unknownFields(18)
	small := &writev2.Request{Symbols: []string{"", "__name__", "h", "t"}, Timeseries: []writev2.TimeSeries{{
		LabelsRefs: []uint32{1, 2},
		Samples:    []writev2.Sample{{Value: 1, Timestamp: 2, StartTimestamp: 1}},
		Exemplars:  []writev2.Exemplar{{LabelsRefs: []uint32{3, 2}, Value: 1}},
		Histograms: []writev2.Histogram{smallHistogramV2()},
		Metadata:   writev2.Metadata{Type: 1, HelpRef: 3},
	}}}
	return [][]byte{
		mustMarshal(small),
		mustMarshal(v1ToV2(realisticV1(3))),
		mustMarshal(richV2()),
		mustMarshal(legacy),
		mustMarshal(unknown),
		nonPackedV2(),
	}
}

// TestWriteFuzzCorpus (re)writes the seed corpora under testdata/fuzz when
// PRW_WRITE_CORPUS=1, so the seeds are also on disk for go test to run.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("PRW_WRITE_CORPUS") != "1" {
		t.Skip("set PRW_WRITE_CORPUS=1 to write testdata/fuzz seeds")
	}
	for name, seeds := range map[string][][]byte{"FuzzUnmarshalV1": seedsV1(), "FuzzUnmarshalV2": seedsV2()} {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d", i)), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func smallHistogramV1() prompb.Histogram {
	return prompb.Histogram{
		Count: &prompb.Histogram_CountInt{CountInt: 3}, Schema: 0,
		PositiveSpans: []prompb.BucketSpan{{Offset: 0, Length: 2}}, PositiveDeltas: []int64{1, 1},
		NegativeCounts: []float64{1}, CustomValues: []float64{1}, Timestamp: 5,
	}
}

func smallHistogramV2() writev2.Histogram {
	return writev2.Histogram{
		Count: &writev2.Histogram_CountInt{CountInt: 3}, Schema: 0,
		PositiveSpans: []writev2.BucketSpan{{Offset: 0, Length: 2}}, PositiveDeltas: []int64{1, 1},
		NegativeCounts: []float64{1}, CustomValues: []float64{1}, Timestamp: 5, StartTimestamp: 4,
	}
}
