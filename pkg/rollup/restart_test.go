package rollup

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"

	"github.com/weir-metrics/weir/pkg/prw"
)

// event is one step of a partition's life: a record (with samples, or a
// transaction marker) or an idle advance of the watermark.
type event struct {
	offset  int64
	ts      int64
	series  []prw.TimeSeries
	control bool
	advance int64 // an idle advance to this watermark, not a record
}

// messyEvents generates records as a real partition sees them: scrapes of
// gauges, counters (with resets) and a native histogram, delayed by
// varying amounts, with late samples, retried (duplicate) and reordered
// ones, transaction markers, quiet gaps, and idle advances that respect
// the rule the rollup stage follows (never beyond a later record's
// receive time).
func messyEvents(t testing.TB, seed uint64, n int) []event {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	type ser struct {
		ls      []prw.Label
		typ     prw.MetricType
		v       float64
		hist    bool
		last    int64
		lastVal float64
	}
	var ss []*ser
	for i, job := range []string{"a", "b", "a", "b", "a"} {
		inst := fmt.Sprint(i)
		ss = append(ss,
			&ser{ls: labels("__name__", "temp", "job", job, "instance", inst), typ: prw.MetricTypeGauge},
			&ser{ls: labels("__name__", "requests_total", "job", job, "instance", inst), typ: prw.MetricTypeCounter},
		)
	}
	ss = append(ss, &ser{ls: labels("__name__", "rpc_seconds", "job", "a"), typ: prw.MetricTypeHistogram, hist: true})

	var evs []event
	var offset int64
	clock := t0
	for len(evs) < n {
		clock += int64(100 + rng.IntN(400))
		if rng.IntN(40) == 0 {
			clock += int64(5000 + rng.IntN(20000)) // a quiet gap
		}
		if rng.IntN(15) == 0 {
			evs = append(evs, event{offset: offset, control: true, ts: clock})
			offset++
			continue
		}
		recTs := clock + int64(rng.IntN(100)) - 50
		var series []prw.TimeSeries
		for _, s := range ss {
			if rng.IntN(3) != 0 {
				continue
			}
			ts := clock - int64(rng.IntN(1500))
			switch rng.IntN(25) {
			case 0:
				ts = clock - 8000 // late for the small windows
			case 1:
				if s.last != 0 {
					ts = s.last // a retried write
				}
			case 2:
				ts = s.last - 700 // reordered
			}
			if s.hist {
				h := &histogram.Histogram{Schema: 0, Count: uint64(ts / 1000 % 1000), Sum: float64(ts%977) / 10,
					PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{int64(ts / 1000 % 500), int64(ts / 1000 % 500)}}
				h.Count = uint64(2 * (ts / 1000 % 500))
				series = append(series, histSeries(t, s.ls, ts, h))
				s.last = max(s.last, ts)
				continue
			}
			v := rng.Float64() * 100
			if s.typ == prw.MetricTypeCounter {
				v = s.lastVal + float64(rng.IntN(20))
				if rng.IntN(30) == 0 {
					v = float64(rng.IntN(5)) // a reset
				}
			}
			if ts == s.last {
				v = s.lastVal
			}
			s.lastVal, s.last = v, max(s.last, ts)
			series = append(series, floatSeries(s.ls, s.typ, prw.Sample{Value: v, Timestamp: ts}))
		}
		evs = append(evs, event{offset: offset, ts: recTs, series: series})
		offset++
	}
	// Idle advances, each at most the smallest receive time that follows.
	minAfter := make([]int64, len(evs)+1)
	minAfter[len(evs)] = 1 << 62
	for i := len(evs) - 1; i >= 0; i-- {
		minAfter[i] = minAfter[i+1]
		if !evs[i].control {
			minAfter[i] = min(minAfter[i], evs[i].ts)
		}
	}
	var out []event
	for i, e := range evs {
		if i > 0 && rng.IntN(20) == 0 && minAfter[i] < 1<<62 {
			out = append(out, event{advance: minAfter[i] - int64(rng.IntN(300))})
		}
		out = append(out, e)
	}
	return out
}

func restartSpecs(t testing.TB) []Spec {
	specs := []Spec{
		spec(t, "default", 2*time.Second, 2*time.Second, 10*time.Second),
		{Name: "by_job", By: []string{"job"}, Resolutions: []model.Duration{model.Duration(5 * time.Second), model.Duration(10 * time.Second)}, AllowedLateness: model.Duration(3 * time.Second)},
		{Name: "requests", Metrics: "requests_.*", Without: []string{"instance"}, Resolutions: []model.Duration{model.Duration(5 * time.Second)}, AllowedLateness: model.Duration(time.Second)},
	}
	if err := ValidateSpecs(specs); err != nil {
		t.Fatal(err)
	}
	return specs
}

// apply runs events[from:] through p (records before cp.Offset and
// advances before the checkpoint's event are skipped, as after a real
// restart) and returns the rows it emitted, by event index.
func apply(p *Partition, evs []event, from int, stopAt int) (rows [][]Row) {
	rows = make([][]Row, len(evs))
	for i := from; i < len(evs) && i < stopAt; i++ {
		e := evs[i]
		switch {
		case e.advance != 0:
			p.Advance(e.advance)
		case e.control:
			p.Skip(e.offset)
		default:
			p.Process(e.offset, e.ts, e.series)
		}
		rows[i] = p.TakeRows()
	}
	return rows
}

// replayFrom restarts a partition from cp, taken after event k, and
// feeds it what a restarted consumer would read: the records from
// cp.Offset on, and the idle advances that happen after the restart.
func replayFrom(t *testing.T, specs []Spec, evs []event, k int, cp Checkpoint, restartAgain int) map[Key]Row {
	p := newPartition(t, specs, &cp)
	got := map[Key]Row{}
	add := func(rows []Row) {
		for _, r := range rows {
			if prev, ok := got[r.Key()]; ok {
				t.Fatalf("restart after event %d: window %+v emitted twice (%+v, %+v)", k, r.Key(), prev, r)
			}
			got[r.Key()] = r
		}
	}
	start := k
	for i := range evs[:k] {
		if evs[i].advance == 0 && evs[i].offset >= cp.Offset {
			start = i
			break
		}
	}
	// Records [start, k) are read again; the advances among them are in
	// the past and are not repeated.
	for i := start; i < len(evs); i++ {
		e := evs[i]
		if i == restartAgain {
			cp2, ok := p.Checkpoint()
			if !ok {
				t.Fatal("no checkpoint during replay")
			}
			for k2, r := range replayFrom(t, specs, evs, i, cp2, -1) {
				if _, ok := got[k2]; ok {
					t.Fatalf("second restart at %d re-emitted %+v", i, k2)
				}
				got[k2] = r
			}
			return got
		}
		switch {
		case e.advance != 0:
			if i >= k {
				p.Advance(e.advance)
			}
		case e.offset < cp.Offset:
			continue
		case e.control:
			p.Skip(e.offset)
		default:
			p.Process(e.offset, e.ts, e.series)
		}
		add(p.TakeRows())
	}
	p.Flush()
	add(p.TakeRows())
	return got
}

// TestRestartAtEveryOffsetIsExact is the exactly-once argument as a test:
// a partition restarted from the checkpoint taken after any event (as if
// killed right after committing it) emits exactly the rows the
// uninterrupted run emits after that event — no window missing, none
// twice, every value identical — also when it is restarted again while
// still replaying.
func TestRestartAtEveryOffsetIsExact(t *testing.T) {
	specs := restartSpecs(t)
	seeds, n := []uint64{1, 2, 3}, 500
	if raceEnabled {
		seeds, n = seeds[:2], 250
	}
	for _, seed := range seeds {
		evs := messyEvents(t, seed, n)
		full := newPartition(t, specs, nil)
		cps := make([]Checkpoint, len(evs)+1)
		oks := make([]bool, len(evs)+1)
		var byEvent [][]Row
		cps[0], oks[0] = full.Checkpoint()
		for i := range evs {
			byEvent = append(byEvent, apply(full, evs, i, i+1)[i])
			cps[i+1], oks[i+1] = full.Checkpoint()
		}
		full.Flush()
		tail := full.TakeRows()
		var total, discarded int
		for _, d := range full.TakeDiscards() {
			discarded += int(d)
		}
		rng := rand.New(rand.NewPCG(seed, 9))
		for k := 1; k <= len(evs); k++ {
			if !oks[k] {
				continue
			}
			want := map[Key]Row{}
			for _, rows := range byEvent[k:] {
				for _, r := range rows {
					want[r.Key()] = r
				}
			}
			for _, r := range tail {
				want[r.Key()] = r
			}
			again := -1
			if rng.IntN(4) == 0 {
				again = k + rng.IntN(40)
			}
			got := replayFrom(t, specs, evs, k, cps[k], again)
			for key, w := range want {
				g, ok := got[key]
				if !ok {
					t.Fatalf("seed %d, restart after event %d (checkpoint %+v): window %+v missing", seed, k, cps[k], key)
				}
				if !reflect.DeepEqual(g, w) {
					t.Fatalf("seed %d, restart after event %d: window %+v differs:\n got %+v\nwant %+v", seed, k, key, g, w)
				}
			}
			for key := range got {
				if _, ok := want[key]; !ok {
					t.Fatalf("seed %d, restart after event %d: window %+v emitted again although it closed before the checkpoint", seed, k, key)
				}
			}
			total++
		}
		if total < len(evs)/2 || discarded == 0 {
			t.Fatalf("seed %d: only %d restarts checked, %d samples discarded: the data is not messy enough", seed, total, discarded)
		}
	}
}

// TestRestartKeepsTheWatermark covers what the random test rarely hits:
// receive times are not monotonic (concurrent requests), so the first
// record a restart reads again can carry a smaller timestamp than the
// watermark had reached. The restart must begin with the watermark of
// that moment, or a sample that was late the first time is taken, and a
// counter step taken from it changes a window emitted after the restart.
func TestRestartKeepsTheWatermark(t *testing.T) {
	specs := []Spec{spec(t, "default", 6*time.Second, 10*time.Second, 20*time.Second)}
	counter := labels("__name__", "c_total")
	other := labels("__name__", "g")
	evs := []event{
		{offset: 0, ts: t0 + 30000},
		{offset: 1, ts: t0 + 25000, series: []prw.TimeSeries{
			floatSeries(counter, prw.MetricTypeCounter, prw.Sample{Value: 10, Timestamp: t0 + 19000}), // late: [t0, t0+20s) closed at t0+26s
			floatSeries(other, prw.MetricTypeGauge, prw.Sample{Value: 1, Timestamp: t0 + 24000}),
		}},
		{offset: 2, ts: t0 + 25500, series: []prw.TimeSeries{floatSeries(counter, prw.MetricTypeCounter, prw.Sample{Value: 15, Timestamp: t0 + 21000})}},
		{offset: 3, ts: t0 + 60000},
	}
	full := newPartition(t, specs, nil)
	apply(full, evs, 0, 3)
	cp, _ := full.Checkpoint()
	if cp.Offset != 1 || cp.OffsetWatermark != t0+30000 {
		t.Fatalf("checkpoint %+v, want offset 1 with the watermark t0+30s", cp)
	}
	want := apply(full, evs, 3, 4)[3]
	var inc float64 = -1
	for _, r := range want {
		if r.Metric == "c_total" && r.ResolutionMs == 20000 {
			inc = *r.Increase
		}
	}
	if inc != 0 {
		t.Fatalf("c_total's increase in [t0+20s, t0+40s) is %v, want 0: its previous sample was late", inc)
	}
	got := replayFrom(t, specs, evs, 3, cp, -1)
	if len(got) != len(want) {
		t.Fatalf("%d rows after the restart, want %d", len(got), len(want))
	}
	for _, w := range want {
		if !reflect.DeepEqual(got[w.Key()], w) {
			t.Fatalf("after the restart:\n got %+v\nwant %+v", got[w.Key()], w)
		}
	}
}
