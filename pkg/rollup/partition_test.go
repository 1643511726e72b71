package rollup

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"

	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
)

// t0 is a minute boundary.
const t0 = int64(1_700_000_040_000)

// expect is a direct computation of one window's aggregates.
type expect struct {
	count                     int64
	sum, min, max             float64
	first, last               float64
	firstTs, lastTs           int64
	increase                  float64
	counter                   bool
	values                    []float64
	hist                      *histogram.FloatHistogram
	histCount                 int64
	kind                      string
	hasIncrease, hasHistogram bool
}

func (e *expect) add(ts int64, v float64) {
	if e.count == 0 || ts < e.firstTs {
		e.first, e.firstTs = v, ts
	}
	if e.count == 0 || ts >= e.lastTs {
		e.last, e.lastTs = v, ts
	}
	if e.count == 0 {
		e.min, e.max = v, v
	}
	e.min, e.max = math.Min(e.min, v), math.Max(e.max, v)
	e.sum += v
	e.count++
	e.values = append(e.values, v)
}

type wkey struct {
	rollup string
	res    int64
	start  int64
	hash   uint64
}

// TestAggregatesMatchDirectComputation feeds a minute and a half of
// scrapes (gauges, counters with a reset, a classic histogram, a native
// counter histogram with a reset) and checks every aggregate of every
// window, per series and summed by job, against a computation written
// straight from the definitions.
func TestAggregatesMatchDirectComputation(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	specs := []Spec{
		spec(t, "default", 5*time.Second, 10*time.Second, time.Minute),
		{Name: "by_job", By: []string{"job"}, Resolutions: []model.Duration{model.Duration(time.Minute)}, AllowedLateness: model.Duration(5 * time.Second)},
	}
	if err := ValidateSpecs(specs); err != nil {
		t.Fatal(err)
	}
	p := newPartition(t, specs, nil)

	type ser struct {
		ls      []prw.Label
		typ     prw.MetricType
		counter bool
		v       float64
	}
	var floats []*ser
	for i, job := range []string{"a", "a", "b"} {
		inst := fmt.Sprint(i)
		floats = append(floats,
			&ser{ls: labels("__name__", "temp_celsius", "job", job, "instance", inst), typ: prw.MetricTypeGauge},
			&ser{ls: labels("__name__", "requests_total", "job", job, "instance", inst), typ: prw.MetricTypeCounter, counter: true},
		)
	}
	for _, le := range []string{"0.1", "+Inf"} {
		floats = append(floats, &ser{ls: labels("__name__", "latency_seconds_bucket", "job", "a", "le", le), typ: prw.MetricTypeHistogram, counter: true})
	}
	floats = append(floats, &ser{ls: labels("__name__", "latency_seconds_count", "job", "a"), counter: true}) // no metadata: the suffix decides
	nh := labels("__name__", "rpc_seconds", "job", "a")

	want := map[wkey]*expect{}
	get := func(rollup string, res, ts int64, hash uint64, kind string) *expect {
		k := wkey{rollup, res, alignDown(ts, res), hash}
		e := want[k]
		if e == nil {
			e = &expect{kind: kind}
			want[k] = e
		}
		return e
	}
	type target struct {
		rollup string
		res    []int64
		hash   uint64
	}
	targets := func(ls []prw.Label) []target {
		byJob := groupLabels(&specs[1], ls)
		return []target{
			{"default", []int64{10_000, 60_000}, record.SeriesHash("t1", ls)},
			{"by_job", []int64{60_000}, record.SeriesHash("t1", byJob)},
		}
	}
	prevVal := map[*ser]float64{}
	var prevHist *histogram.FloatHistogram
	var histCum histogram.Histogram
	histCum = histogram.Histogram{Schema: 0, PositiveSpans: []histogram.Span{{Offset: 0, Length: 3}}, PositiveBuckets: []int64{0, 0, 0}}
	var emittedEarly int
	for i := 0; i < 150; i++ {
		ts := t0 + int64(i)*1000
		var series []prw.TimeSeries
		for _, s := range floats {
			switch {
			case !s.counter:
				s.v = math.Exp(rng.NormFloat64()) * 20
			case i == 70:
				s.v = float64(rng.IntN(3)) // reset
			default:
				s.v += float64(rng.IntN(10))
			}
			series = append(series, floatSeries(s.ls, s.typ, prw.Sample{Value: s.v, Timestamp: ts}))
			kind := KindGauge
			if s.counter {
				kind = KindCounter
			}
			for _, tg := range targets(s.ls) {
				for _, res := range tg.res {
					e := get(tg.rollup, res, ts, tg.hash, kind)
					e.add(ts, s.v)
					if s.counter {
						e.hasIncrease = true
						if pv, ok := prevVal[s]; ok {
							if s.v >= pv {
								e.increase += s.v - pv
							} else {
								e.increase += s.v
							}
						}
					}
				}
			}
			prevVal[s] = s.v
		}
		// The native histogram: observations land in three buckets; at
		// i == 100 the process restarts.
		if i == 100 {
			histCum = histogram.Histogram{Schema: 0, PositiveSpans: []histogram.Span{{Offset: 0, Length: 3}}, PositiveBuckets: []int64{0, 0, 0}}
		}
		obs := [3]int64{int64(rng.IntN(5)), int64(rng.IntN(5)), int64(rng.IntN(5))}
		abs := [3]int64{}
		for j := range abs {
			abs[j] = histCum.PositiveBuckets[0]
			if j > 0 {
				abs[j] = abs[j-1] + histCum.PositiveBuckets[j]
			}
		}
		var deltas []int64
		var prevAbs int64
		for j := range abs {
			abs[j] += obs[j]
			deltas = append(deltas, abs[j]-prevAbs)
			prevAbs = abs[j]
		}
		histCum.PositiveBuckets = deltas
		histCum.Count += uint64(obs[0] + obs[1] + obs[2])
		histCum.Sum += float64(obs[0])*0.5 + float64(obs[1])*1.5 + float64(obs[2])*3
		cur := histCum.Copy()
		series = append(series, histSeries(t, nh, ts, cur))
		fh := cur.ToFloat(nil)
		for _, tg := range targets(nh) {
			for _, res := range tg.res {
				e := get(tg.rollup, res, ts, tg.hash, KindHistogram)
				e.hasHistogram = true
				e.histCount++
				var delta *histogram.FloatHistogram
				if prevHist != nil {
					if i == 100 {
						delta = fh.Copy()
					} else {
						d, _, _, err := fh.Copy().Sub(prevHist)
						if err != nil {
							t.Fatal(err)
						}
						delta = d
					}
				}
				if delta != nil {
					if e.hist == nil {
						e.hist = delta.Copy()
					} else if _, _, _, err := e.hist.Add(delta); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		prevHist = fh

		p.Process(int64(i), ts+200, series)
		rows := p.TakeRows()
		emittedEarly += len(rows)
		for _, r := range rows {
			// A window closes once its end plus the lateness is reached,
			// not before.
			if end := r.WindowEndMs() + r.AllowedLatenessMs; end > ts+200 {
				t.Fatalf("window %d+%d closed at watermark %d, before %d", r.WindowStartMs, r.ResolutionMs, ts+200, end)
			}
			checkRow(t, r, want)
		}
	}
	if emittedEarly == 0 {
		t.Fatal("no window closed while records flowed")
	}
	p.Flush()
	rest := p.TakeRows()
	for _, r := range rest {
		checkRow(t, r, want)
	}
	if got := emittedEarly + len(rest); got != len(want) {
		t.Fatalf("%d rows, want %d (one per window and series or group)", got, len(want))
	}
	if d := p.TakeDiscards(); len(d) != 0 {
		t.Fatalf("in-order data discarded: %v", d)
	}
}

func checkRow(t *testing.T, r Row, want map[wkey]*expect) {
	t.Helper()
	k := wkey{r.Rollup, r.ResolutionMs, r.WindowStartMs, r.SeriesHash}
	e := want[k]
	if e == nil {
		t.Fatalf("unexpected row %s %v %+v", r.Metric, r.Labels, k)
	}
	name := fmt.Sprintf("%s %s%v @%d/%dms", r.Rollup, r.Metric, r.Labels, r.WindowStartMs, r.ResolutionMs)
	if r.Kind != e.kind {
		t.Errorf("%s: kind %s, want %s", name, r.Kind, e.kind)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }
	if r.Count != e.count || !near(r.Sum, e.sum) || r.Min != e.min || r.Max != e.max ||
		r.First != e.first || r.FirstTimestampMs != e.firstTs || r.Last != e.last || r.LastTimestampMs != e.lastTs {
		t.Errorf("%s: got count %d sum %v min %v max %v first %v@%d last %v@%d, want %d %v %v %v %v@%d %v@%d", name,
			r.Count, r.Sum, r.Min, r.Max, r.First, r.FirstTimestampMs, r.Last, r.LastTimestampMs,
			e.count, e.sum, e.min, e.max, e.first, e.firstTs, e.last, e.lastTs)
	}
	if e.hasIncrease != (r.Increase != nil) || e.hasIncrease && !near(*r.Increase, e.increase) {
		t.Errorf("%s: increase %v, want %v", name, r.Increase, e.increase)
	}
	if e.kind == KindGauge {
		sk, err := DecodeSketch(r.Sketch)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if sk.GetCount() != float64(e.count) {
			t.Errorf("%s: sketch holds %v values, want %d", name, sk.GetCount(), e.count)
		}
		bins, err := SketchBins(sk)
		if err != nil {
			t.Fatal(err)
		}
		checkQuantiles(t, name, bins, e.values, 0.01)
	} else if len(r.Sketch) != 0 {
		t.Errorf("%s: a %s has a sketch", name, e.kind)
	}
	if e.hasHistogram {
		if r.HistogramCount != e.histCount {
			t.Errorf("%s: %d histograms, want %d", name, r.HistogramCount, e.histCount)
		}
		got := decodeHistogram(t, r.Histogram)
		wantH := e.hist
		if wantH == nil {
			wantH = &histogram.FloatHistogram{}
		}
		if !near(got.Count, wantH.Count) || !near(got.Sum, wantH.Sum) {
			t.Errorf("%s: histogram count %v sum %v, want %v %v", name, got.Count, got.Sum, wantH.Count, wantH.Sum)
		}
		gb, wb := bucketMap(got), bucketMap(wantH)
		for le, n := range wb {
			if !near(gb[le], n) {
				t.Errorf("%s: bucket %v holds %v, want %v", name, le, gb[le], n)
			}
		}
	}
}

func bucketMap(h *histogram.FloatHistogram) map[float64]float64 {
	out := map[float64]float64{}
	it := h.AllBucketIterator()
	for it.Next() {
		b := it.At()
		if b.Count != 0 {
			out[b.Upper] += b.Count
		}
	}
	return out
}

// checkQuantiles checks every percentile of the sketch bins against the
// exact quantile of values: within alpha relative error.
func checkQuantiles(t *testing.T, name string, bins Bins, values []float64, alpha float64) {
	t.Helper()
	sorted := append([]float64(nil), values...)
	sort.Float64s(sorted)
	for _, q := range []float64{0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1} {
		exact := sorted[int(math.Floor(q*float64(len(sorted)-1)))]
		got := Quantile(q, bins)
		if math.Abs(got-exact) > alpha*math.Abs(exact)*(1+1e-9) {
			t.Errorf("%s: q%v = %v, exact %v: relative error %.4f above %v", name, q, got, exact, math.Abs(got-exact)/math.Abs(exact), alpha)
		}
	}
}

// TestLateDuplicateOutOfOrderAndNonFinite checks that samples left out
// are counted by reason and resolution, and do not change the rows.
func TestLateDuplicateOutOfOrderAndNonFinite(t *testing.T) {
	specs := []Spec{spec(t, "default", 2*time.Second, 10*time.Second, time.Minute)}
	p := newPartition(t, specs, nil)
	ls := labels("__name__", "g", "job", "x")
	other := labels("__name__", "g", "job", "y")
	rec := func(off, recTs int64, ls []prw.Label, smp ...prw.Sample) {
		p.Process(off, recTs, []prw.TimeSeries{floatSeries(ls, prw.MetricTypeGauge, smp...)})
	}
	rec(0, t0+100, ls, prw.Sample{Value: 1, Timestamp: t0})
	rec(1, t0+200, ls, prw.Sample{Value: 1, Timestamp: t0}) // duplicate (a retried write)
	rec(2, t0+5100, ls, prw.Sample{Value: 2, Timestamp: t0 + 5000})
	rec(3, t0+5200, ls, prw.Sample{Value: 9, Timestamp: t0 + 3000}) // out of order
	rec(4, t0+5300, ls, prw.Sample{Value: math.NaN(), Timestamp: t0 + 5200}, prw.Sample{Value: math.Inf(1), Timestamp: t0 + 5201})
	rec(5, t0+5400, other, prw.Sample{Value: 10, Timestamp: t0 + 1000})
	rec(6, t0+12500, ls, prw.Sample{Value: 3, Timestamp: t0 + 12000})
	// The watermark is t0+12.5s: the 10s window [t0, t0+10s) closed at
	// t0+12s, the minute window is open: late for one, taken by the other.
	rec(7, t0+12600, other, prw.Sample{Value: 4, Timestamp: t0 + 9000})
	rec(8, t0+13000, ls, prw.Sample{Value: 5, Timestamp: t0 + 13000 + 3000}) // 3s ahead of its receive time, lateness is 2s
	got := p.TakeDiscards()
	want := map[DiscardKey]int64{
		{"default", "10s", ReasonDuplicate}:  1,
		{"default", "1m", ReasonDuplicate}:   1,
		{"default", "10s", ReasonOutOfOrder}: 1,
		{"default", "1m", ReasonOutOfOrder}:  1,
		{"default", "10s", ReasonNonFinite}:  2,
		{"default", "1m", ReasonNonFinite}:   2,
		{"default", "10s", ReasonLate}:       1,
		{"default", "10s", ReasonFuture}:     1,
		{"default", "1m", ReasonFuture}:      1,
	}
	if len(got) != len(want) {
		t.Errorf("discards %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("discards[%v] = %d, want %d", k, got[k], n)
		}
	}
	p.Flush()
	rows := map[string]Row{}
	for _, r := range p.TakeRows() {
		rows[fmt.Sprintf("%s/%d/%d", r.Labels["job"], r.ResolutionMs, r.WindowStartMs)] = r
	}
	if r := rows[fmt.Sprintf("x/10000/%d", t0)]; r.Count != 2 || r.Sum != 3 {
		t.Errorf("x's first 10s window: count %d sum %v, want the samples 1 and 2 only", r.Count, r.Sum)
	}
	if r := rows[fmt.Sprintf("x/60000/%d", t0)]; r.Count != 3 || r.Sum != 6 {
		t.Errorf("x's minute window: count %d sum %v, want 1, 2 and 3", r.Count, r.Sum)
	}
	// The late sample is in y's minute window but not in its 10s one.
	if r := rows[fmt.Sprintf("y/10000/%d", t0)]; r.Count != 1 || r.Sum != 10 {
		t.Errorf("y's first 10s window: count %d sum %v, want the sample 10 only", r.Count, r.Sum)
	}
	if r := rows[fmt.Sprintf("y/60000/%d", t0)]; r.Count != 2 || r.Sum != 14 || r.Last != 4 {
		t.Errorf("y's minute window: count %d sum %v last %v, want 10 and 4", r.Count, r.Sum, r.Last)
	}
}
