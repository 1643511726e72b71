package rollup

import (
	"sort"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/weir-metrics/weir/pkg/prw"
)

// labels builds sorted labels from name/value pairs.
func labels(kv ...string) []prw.Label {
	var ls []prw.Label
	for i := 0; i+1 < len(kv); i += 2 {
		ls = append(ls, prw.Label{Name: kv[i], Value: kv[i+1]})
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].Name < ls[j].Name })
	return ls
}

func floatSeries(ls []prw.Label, typ prw.MetricType, samples ...prw.Sample) prw.TimeSeries {
	return prw.TimeSeries{Labels: ls, Samples: samples, Metadata: prw.Metadata{Type: typ}}
}

func histSeries(t testing.TB, ls []prw.Label, ts int64, h *histogram.Histogram) prw.TimeSeries {
	t.Helper()
	wh := writev2.FromIntHistogram(0, ts, h)
	raw, err := wh.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return prw.TimeSeries{Labels: ls, Histograms: []prw.Histogram{{Timestamp: ts, Raw: raw}}, Metadata: prw.Metadata{Type: prw.MetricTypeHistogram}}
}

func spec(t testing.TB, name string, lateness time.Duration, res ...time.Duration) Spec {
	t.Helper()
	s := Spec{Name: name, AllowedLateness: model.Duration(lateness)}
	for _, r := range res {
		s.Resolutions = append(s.Resolutions, model.Duration(r))
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

func newPartition(t testing.TB, specs []Spec, cp *Checkpoint) *Partition {
	t.Helper()
	p, err := NewPartition(Options{Tenant: "t1", Partition: 3, Specs: specs, SketchRelativeAccuracy: 0.01}, cp)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func decodeHistogram(t testing.TB, b []byte) *histogram.FloatHistogram {
	t.Helper()
	var h writev2.Histogram
	if err := h.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	return h.ToFloatHistogram()
}
