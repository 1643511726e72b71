package main

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/weir-metrics/weir/internal/weirtest"
)

// expected is what a test wrote, by series key.
type expected map[string][]weirtest.Point

// rw1Request builds a remote-write 1.0 request of n series with k float
// samples each, one series with native histograms and exemplars on the
// first series, starting at t0 and one second apart.
func rw1Request(t0 int64, n, k int, want expected) *prompb.WriteRequest {
	req := &prompb.WriteRequest{}
	for i := 0; i < n; i++ {
		// Labels deliberately unsorted: the edge must sort, not refuse.
		ls := []prompb.Label{
			{Name: "job", Value: "e2e"},
			{Name: "__name__", Value: "e2e_rw1_gauge"},
			{Name: "instance", Value: fmt.Sprintf("host-%d", i)},
		}
		ts := prompb.TimeSeries{Labels: ls}
		key := weirtest.LabelsKey(map[string]string{"__name__": "e2e_rw1_gauge", "job": "e2e", "instance": fmt.Sprintf("host-%d", i)})
		for j := 0; j < k; j++ {
			v := float64(i*1000+j) + 0.25
			if j == 2 {
				v = math.Inf(1)
			}
			tms := t0 + int64(j)*1000
			ts.Samples = append(ts.Samples, prompb.Sample{Value: v, Timestamp: tms})
			want[key] = append(want[key], weirtest.Point{T: tms, V: v})
		}
		if i == 0 {
			ts.Exemplars = []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "abc"}}, Value: 1, Timestamp: t0}}
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	h := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "e2e_rw1_latency_seconds"}, {Name: "job", Value: "e2e"}}}
	key := weirtest.LabelsKey(map[string]string{"__name__": "e2e_rw1_latency_seconds", "job": "e2e"})
	for j := 0; j < k; j++ {
		hist := &histogram.Histogram{
			Count: uint64(10 + j), ZeroCount: 2, ZeroThreshold: 0.001, Sum: 18.5 + float64(j), Schema: 1,
			PositiveSpans:   []histogram.Span{{Offset: 0, Length: 2}},
			PositiveBuckets: []int64{int64(3 + j), 2},
			NegativeSpans:   []histogram.Span{{Offset: 0, Length: 1}},
			NegativeBuckets: []int64{0},
		}
		// Buckets: positive 3+j and 5+j, negative 0, zero 2 → count 10+2j;
		// make Count consistent.
		hist.Count = uint64(2 + (3 + j) + (5 + j))
		tms := t0 + int64(j)*1000
		h.Histograms = append(h.Histograms, prompb.FromIntHistogram(tms, hist))
		want[key] = append(want[key], weirtest.Point{T: tms, Histogram: &weirtest.HistogramPoint{Count: float64(hist.Count), Sum: hist.Sum}})
	}
	req.Timeseries = append(req.Timeseries, h)
	req.Metadata = []prompb.MetricMetadata{{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "e2e_rw1_gauge", Help: "a gauge"}}
	return req
}

// rw2Request builds a remote-write 2.0 request in the same shape.
func rw2Request(t0 int64, n, k int, want expected) *writev2.Request {
	st := writev2.NewSymbolTable()
	req := &writev2.Request{}
	for i := 0; i < n; i++ {
		ls := map[string]string{"__name__": "e2e_rw2_requests_total", "job": "e2e", "instance": fmt.Sprintf("host-%d", i)}
		ts := writev2.TimeSeries{
			LabelsRefs: []uint32{
				st.Symbolize("__name__"), st.Symbolize(ls["__name__"]),
				st.Symbolize("instance"), st.Symbolize(ls["instance"]),
				st.Symbolize("job"), st.Symbolize("e2e"),
			},
			Metadata: writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: st.Symbolize("requests served"), UnitRef: st.Symbolize("requests")},
		}
		for j := 0; j < k; j++ {
			v := float64(i*100 + j*j)
			tms := t0 + int64(j)*1000
			ts.Samples = append(ts.Samples, writev2.Sample{Value: v, Timestamp: tms, StartTimestamp: t0 - 60000})
			want[weirtest.LabelsKey(ls)] = append(want[weirtest.LabelsKey(ls)], weirtest.Point{T: tms, V: v})
		}
		if i == 1 {
			ts.Exemplars = []writev2.Exemplar{{LabelsRefs: []uint32{st.Symbolize("trace_id"), st.Symbolize("def")}, Value: 7, Timestamp: t0}}
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	ls := map[string]string{"__name__": "e2e_rw2_size_bytes", "job": "e2e"}
	hts := writev2.TimeSeries{LabelsRefs: []uint32{st.Symbolize("__name__"), st.Symbolize(ls["__name__"]), st.Symbolize("job"), st.Symbolize("e2e")}}
	for j := 0; j < k; j++ {
		fh := &histogram.FloatHistogram{
			Count: 6.5 + float64(j), ZeroCount: 0.5, ZeroThreshold: 0.01, Sum: 100.25 * float64(j+1), Schema: 0,
			PositiveSpans:   []histogram.Span{{Offset: 1, Length: 2}},
			PositiveBuckets: []float64{2 + float64(j), 4},
		}
		tms := t0 + int64(j)*1000
		hts.Histograms = append(hts.Histograms, writev2.FromFloatHistogram(0, tms, fh))
		want[weirtest.LabelsKey(ls)] = append(want[weirtest.LabelsKey(ls)], weirtest.Point{T: tms, Histogram: &weirtest.HistogramPoint{Count: fh.Count, Sum: fh.Sum}})
	}
	req.Timeseries = append(req.Timeseries, hts)
	req.Symbols = st.Symbols()
	return req
}

// checkReadBack polls the query API until every expected series holds
// exactly the expected points, value for value and timestamp for
// timestamp.
func checkReadBack(t *testing.T, baseURL, tenant string, want expected, end time.Time) {
	t.Helper()
	weirtest.Eventually(t, 30*time.Second, func() error {
		got, err := weirtest.QueryRaw(baseURL, tenant, `{job="e2e"}`, time.Hour, end)
		if err != nil {
			return err
		}
		return compare(got, want)
	})
}

func compare(got []weirtest.Series, want expected) error {
	if len(got) != len(want) {
		return fmt.Errorf("got %d series, want %d", len(got), len(want))
	}
	for _, s := range got {
		w, ok := want[s.Key()]
		if !ok {
			return fmt.Errorf("unexpected series %s", s.Key())
		}
		if len(s.Points) != len(w) {
			return fmt.Errorf("series %s: got %d points, want %d", s.Key(), len(s.Points), len(w))
		}
		for i, p := range s.Points {
			wp := w[i]
			if p.T != wp.T {
				return fmt.Errorf("series %s point %d: timestamp %d, want %d", s.Key(), i, p.T, wp.T)
			}
			switch {
			case wp.Histogram != nil:
				if p.Histogram == nil || *p.Histogram != *wp.Histogram {
					return fmt.Errorf("series %s point %d: histogram %+v, want %+v", s.Key(), i, p.Histogram, wp.Histogram)
				}
			case p.V != wp.V:
				return fmt.Errorf("series %s point %d: value %v, want %v", s.Key(), i, p.V, wp.V)
			}
		}
	}
	return nil
}

func writeBoth(t *testing.T, baseURL, tenant string, t0 int64) expected {
	t.Helper()
	want := expected{}
	res, err := weirtest.WriteV1(baseURL, tenant, rw1Request(t0, 5, 4, want))
	if err := weirtest.MustWrite(res, err); err != nil {
		t.Fatal(err)
	}
	if res.SamplesWritten != 20 || res.HistogramsWritten != 4 || res.ExemplarsWritten != 1 {
		t.Errorf("RW1 written headers: samples %d histograms %d exemplars %d, want 20, 4, 1", res.SamplesWritten, res.HistogramsWritten, res.ExemplarsWritten)
	}
	res, err = weirtest.WriteV2(baseURL, tenant, rw2Request(t0, 3, 4, want))
	if err := weirtest.MustWrite(res, err); err != nil {
		t.Fatal(err)
	}
	if res.SamplesWritten != 12 || res.HistogramsWritten != 4 || res.ExemplarsWritten != 1 {
		t.Errorf("RW2 written headers: samples %d histograms %d exemplars %d, want 12, 4, 1", res.SamplesWritten, res.HistogramsWritten, res.ExemplarsWritten)
	}
	return want
}

func embeddedArgs(t *testing.T, dir string) []string {
	return []string{
		"--data-dir=" + dir,
		"--kafka.embedded.addr=" + weirtest.FreeAddr(t),
		"--log.level=info",
	}
}

// TestAllInOneRoundTripAndRestart writes remote-write 1.0 and 2.0 to an
// all-in-one weir, reads every sample back, restarts weir on the same data
// directory and reads them again.
func TestAllInOneRoundTripAndRestart(t *testing.T) {
	dir := t.TempDir()
	p := weirtest.Start(t, "all", append([]string{"all"}, embeddedArgs(t, dir)...)...)
	p.WaitReady(30 * time.Second)

	now := time.Now().Truncate(time.Second)
	t0 := now.Add(-time.Minute).UnixMilli()
	want := writeBoth(t, p.URL(), "team-a", t0)
	checkReadBack(t, p.URL(), "team-a", want, now)

	// Another tenant sees none of it; anonymous is a tenant too.
	for _, other := range []string{"team-b", ""} {
		got, err := weirtest.QueryRaw(p.URL(), other, `{job="e2e"}`, time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Fatalf("tenant %q sees %d series of team-a", other, len(got))
		}
	}

	p.Stop(30 * time.Second)
	p.Restart()
	p.WaitReady(30 * time.Second)
	checkReadBack(t, p.URL(), "team-a", want, now)

	// New writes after the restart land next to the old ones.
	more := writeBoth(t, p.URL(), "team-a", t0+10_000)
	for k, pts := range more {
		want[k] = append(want[k], pts...)
	}
	checkReadBack(t, p.URL(), "team-a", want, now)
}

// TestSeparateProcesses runs broker, edge, stream and sink as separate
// processes of the built binary and does the same round trip.
func TestSeparateProcesses(t *testing.T) {
	dir := t.TempDir()
	kafkaAddr := weirtest.FreeAddr(t)
	common := func(sub string) []string {
		return []string{"--data-dir=" + filepath.Join(dir, sub), "--kafka.embedded.addr=" + kafkaAddr}
	}
	broker := weirtest.Start(t, "broker", append([]string{"broker"}, common("broker")...)...)
	broker.WaitReady(30 * time.Second)
	edge := weirtest.Start(t, "edge", append([]string{"edge"}, common("edge")...)...)
	stream := weirtest.Start(t, "stream", append([]string{"stream", "--stream.instance-id=s1"}, common("stream")...)...)
	sink := weirtest.Start(t, "sink", append([]string{"sink", "--sink.instance-id=k1"}, common("sink")...)...)
	for _, p := range []*weirtest.Process{edge, stream, sink} {
		p.WaitReady(30 * time.Second)
	}
	now := time.Now().Truncate(time.Second)
	want := writeBoth(t, edge.URL(), "team-a", now.Add(-time.Minute).UnixMilli())
	checkReadBack(t, sink.URL(), "team-a", want, now)

	for _, p := range []*weirtest.Process{edge, stream, sink, broker} {
		p.Stop(30 * time.Second)
	}
}

// TestStrongReadSeesAcknowledgedWrite holds the stream stage back so a
// just-acknowledged write has not reached the sink: an eventual read does
// not see it, a strong read waits until it does.
func TestStrongReadSeesAcknowledgedWrite(t *testing.T) {
	dir := t.TempDir()
	kafkaAddr := weirtest.FreeAddr(t)
	common := func(sub string) []string {
		return []string{"--data-dir=" + filepath.Join(dir, sub), "--kafka.embedded.addr=" + kafkaAddr}
	}
	broker := weirtest.Start(t, "broker", append([]string{"broker"}, common("broker")...)...)
	broker.WaitReady(30 * time.Second)
	edge := weirtest.Start(t, "edge", append([]string{"edge"}, common("edge")...)...)
	sink := weirtest.Start(t, "sink", append([]string{"sink", "--sink.instance-id=k1"}, common("sink")...)...)
	edge.WaitReady(30 * time.Second)
	sink.WaitReady(30 * time.Second)

	now := time.Now().Truncate(time.Second)
	want := writeBoth(t, edge.URL(), "ryw", now.Add(-time.Minute).UnixMilli())
	// No stream worker runs: the write is in the raw topic only.
	got, err := weirtest.QueryRaw(sink.URL(), "ryw", `{job="e2e"}`, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("eventual read saw %d series before the stream stage ran", len(got))
	}

	type result struct {
		series []weirtest.Series
		err    error
		took   time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		s, err := weirtest.QueryRawWithHeaders(sink.URL(), "ryw", `{job="e2e"}`, time.Hour, now, map[string]string{"X-Read-Consistency": "strong"})
		done <- result{s, err, time.Since(start)}
	}()
	time.Sleep(500 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("strong read returned before the data could be there: %v (%d series, after %s)", r.err, len(r.series), r.took)
	default:
	}
	stream := weirtest.Start(t, "stream", append([]string{"stream", "--stream.instance-id=s1"}, common("stream")...)...)
	stream.WaitReady(30 * time.Second)
	r := <-done
	if r.err != nil {
		t.Fatalf("strong read failed after %s: %v", r.took, r.err)
	}
	if err := compare(r.series, want); err != nil {
		t.Fatalf("strong read did not see the acknowledged write: %v", err)
	}
}
