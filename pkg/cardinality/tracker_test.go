package cardinality

import (
	"fmt"
	"testing"
	"time"

	"github.com/weir-metrics/weir/pkg/budget"
	"github.com/weir-metrics/weir/pkg/pipeline"
	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
)

func series(tenant, metric string, kv ...string) pipeline.Result {
	ls := []prw.Label{{Name: "__name__", Value: metric}}
	for i := 0; i+1 < len(kv); i += 2 {
		ls = append(ls, prw.Label{Name: kv[i], Value: kv[i+1]})
	}
	h := record.SeriesHash(tenant, ls)
	return pipeline.Result{Decision: pipeline.Decision{Labels: ls}, RawHash: h, OutHash: h, Metric: metric}
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func newTracker() *Tracker {
	tr := New(Options{Window: 20 * time.Minute, LabelValuesLimit: 50})
	tr.SetNow(t0)
	return tr
}

// TestBudgetsRefuseNewSeriesOnly fills a tenant's and a metric's budget:
// new series beyond them are refused, existing ones keep passing, other
// tenants are untouched.
func TestBudgetsRefuseNewSeriesOnly(t *testing.T) {
	tr := newTracker()
	b := &pipeline.Budget{MaxSeries: 10, MaxSeriesPerMetric: 4, Metrics: map[string]int{"big": 8}}
	p := tr.Partition("a", 0)
	admit := func(r pipeline.Result) Verdict { return p.Admit(&r, b, nil) }
	for i := 0; i < 6; i++ {
		want := Admitted
		if i >= 4 {
			want = RefusedMetric
		}
		if v := admit(series("a", "small", "i", fmt.Sprint(i))); v != want {
			t.Fatalf("small %d: %v, want %v", i, v, want)
		}
	}
	for i := 0; i < 8; i++ {
		want := Admitted
		if i >= 6 { // 4 small + 6 big = 10 = tenant limit
			want = RefusedTenant
		}
		if v := admit(series("a", "big", "i", fmt.Sprint(i))); v != want {
			t.Fatalf("big %d: %v, want %v", i, v, want)
		}
	}
	// Existing series pass, also in later minutes.
	tr.SetNow(t0.Add(3 * time.Minute))
	for i := 0; i < 4; i++ {
		if v := admit(series("a", "small", "i", fmt.Sprint(i))); v != Admitted {
			t.Fatalf("existing series refused: %v", v)
		}
	}
	if v := admit(series("a", "big", "i", "new")); v != RefusedTenant {
		t.Fatalf("new series at the limit: %v", v)
	}
	// Another tenant is untouched.
	q := tr.Partition("b", 0)
	for i := 0; i < 20; i++ {
		r := series("b", "big", "i", fmt.Sprint(i))
		if v := q.Admit(&r, &pipeline.Budget{}, nil); v != Admitted {
			t.Fatalf("tenant b refused: %v", v)
		}
	}
	if a, m := tr.Active("a", "big"); a != 10 || m != 6 {
		t.Fatalf("active %d, big %d; want 10, 6", a, m)
	}
	ms := tr.Metrics("a")
	if len(ms) != 2 || ms[0].Name != "big" || ms[0].New != 6 || ms[0].Refused != 3 || ms[1].Refused != 2 {
		t.Fatalf("metrics %+v", ms)
	}
	// After the window without samples, series expire and room returns.
	tr.Sweep(t0.Add(24 * time.Minute))
	if a, _ := tr.Active("a", ""); a != 0 {
		t.Fatalf("%d active after the window", a)
	}
	if v := admit(series("a", "big", "i", "later")); v != Admitted {
		t.Fatalf("after expiry: %v", v)
	}
}

type fakeRemote struct{ active, metric int }

func (f fakeRemote) Active(string) int               { return f.active }
func (f fakeRemote) MetricActive(string, string) int { return f.metric }

func TestBudgetCountsRemotePartitions(t *testing.T) {
	tr := newTracker()
	p := tr.Partition("a", 1)
	b := &pipeline.Budget{MaxSeries: 10, MaxSeriesPerMetric: 5}
	r := series("a", "m", "i", "1")
	if v := p.Admit(&r, b, fakeRemote{active: 10}); v != RefusedTenant {
		t.Fatalf("remote usage ignored: %v", v)
	}
	if v := p.Admit(&r, b, fakeRemote{active: 3, metric: 5}); v != RefusedMetric {
		t.Fatalf("remote metric usage ignored: %v", v)
	}
	if v := p.Admit(&r, b, fakeRemote{active: 3, metric: 4}); v != Admitted {
		t.Fatalf("%v", v)
	}
}

// TestLedgerReplayRebuildsState checks that what the ledger recorded
// rebuilds the same budget state in a fresh tracker (a restarted or new
// owner), so a full tenant stays full.
func TestLedgerReplayRebuildsState(t *testing.T) {
	tr := newTracker()
	b := &pipeline.Budget{MaxSeries: 5}
	p := tr.Partition("a", 0)
	var ledger [][]byte
	var ats []time.Time
	flush := func(at time.Time) {
		if e := p.TakeLedger(); len(e) > 0 {
			ledger = append(ledger, EncodeLedger(e))
			ats = append(ats, at)
		}
	}
	for i := 0; i < 7; i++ {
		r := series("a", "m", "i", fmt.Sprint(i))
		p.Admit(&r, b, nil)
	}
	p.ObserveDropped(42)
	flush(t0)
	// Six minutes later (beyond the 5-minute refresh), series 0 is seen
	// again: it gets a new ledger entry, the others do not.
	t1 := t0.Add(6 * time.Minute)
	tr.SetNow(t1)
	r0 := series("a", "m", "i", "0")
	p.Admit(&r0, b, nil)
	flush(t1)
	if len(ledger) != 2 {
		t.Fatalf("%d ledger records", len(ledger))
	}
	entries, err := DecodeLedger(ledger[1])
	if err != nil || len(entries) != 1 || entries[0].Raw != r0.RawHash || entries[0].Metric != "m" {
		t.Fatalf("refresh entry %+v %v", entries, err)
	}

	replay := func() (*Tracker, *Partition) {
		tr := newTracker()
		tr.SetNow(t1)
		p := tr.Partition("a", 0)
		for i, rec := range ledger {
			es, err := DecodeLedger(rec)
			if err != nil {
				t.Fatal(err)
			}
			p.Replay(ats[i], es)
		}
		p.MarkLoaded()
		return tr, p
	}
	// Series 1–4 were last recorded at t0: they expire 20 minutes after
	// it, series 0 (refreshed at t1) stays.
	tr3, _ := replay()
	tr3.Sweep(t0.Add(21 * time.Minute))
	if a, _ := tr3.Active("a", ""); a != 1 {
		t.Fatalf("after expiry %d active, want 1", a)
	}

	// Replay into a fresh tracker at t1: the tenant is still full.
	tr2, p2 := replay()
	if a, m := tr2.Active("a", "m"); a != 5 || m != 5 {
		t.Fatalf("replayed active %d/%d, want 5", a, m)
	}
	for i := 0; i < 7; i++ {
		r := series("a", "m", "i", fmt.Sprint(i))
		want := Admitted
		if i >= 5 {
			want = RefusedTenant
		}
		if v := p2.Admit(&r, b, nil); v != want {
			t.Fatalf("after replay, series %d: %v, want %v", i, v, want)
		}
	}
	// The dropped raw series was replayed too: the edge's filter has it.
	s := p2.Snapshot(b, 8, t1, true)
	if !s.Filter.Has(42) || !s.Filter.Has(r0.RawHash) {
		t.Fatal("filter lacks a replayed raw series")
	}
}

func TestLedgerDecodeRejectsGarbage(t *testing.T) {
	good := EncodeLedger([]LedgerEntry{{Raw: 1, Out: 2, Metric: "m"}, {Raw: 3}})
	es, err := DecodeLedger(good)
	if err != nil || len(es) != 2 || es[0].Metric != "m" || es[1].Metric != "" || es[1].Out != 0 {
		t.Fatalf("%+v %v", es, err)
	}
	for i := 0; i < len(good); i++ {
		if _, err := DecodeLedger(good[:i]); err == nil {
			t.Fatalf("truncated at %d decoded", i)
		}
	}
}

// TestLabelsRankExplodingLabel checks that the explorer ranks a label that
// gains many values first, counting refused series too, and says "at
// least" once it reaches the tracking limit.
func TestLabelsRankExplodingLabel(t *testing.T) {
	tr := newTracker()
	p := tr.Partition("a", 0)
	b := &pipeline.Budget{MaxSeriesPerMetric: 20}
	for i := 0; i < 200; i++ {
		r := series("a", "api_requests_total", "job", "api", "method", []string{"GET", "POST"}[i%2], "user_id", fmt.Sprint(i))
		p.Admit(&r, b, nil)
	}
	ls, ok := tr.Labels("a", "api_requests_total")
	if !ok || len(ls) != 3 {
		t.Fatalf("%+v", ls)
	}
	if ls[0].Name != "user_id" || ls[0].DistinctValues != 50 || !ls[0].AtLeast {
		t.Fatalf("first label %+v, want user_id with at least 50", ls[0])
	}
	if ls[1].Name != "method" || ls[1].DistinctValues != 2 || ls[2].Name != "job" || ls[2].DistinctValues != 1 {
		t.Fatalf("labels %+v", ls)
	}
	if _, ok := tr.Labels("a", "nope"); ok {
		t.Fatal("unknown metric found")
	}
}

// TestSnapshotForEdge checks the published state: counts, limits, growth
// and a filter with every active and dropped raw series.
func TestSnapshotForEdge(t *testing.T) {
	tr := newTracker()
	p := tr.Partition("a", 3)
	b := &pipeline.Budget{MaxSeries: 100, MaxSeriesPerMetric: 50, Metrics: map[string]int{"x": 7}}
	var raws []uint64
	for i := 0; i < 30; i++ {
		r := series("a", "x", "i", fmt.Sprint(i))
		p.Admit(&r, b, nil)
		raws = append(raws, r.RawHash)
	}
	s := p.Snapshot(b, 8, t0, true)
	if s.Tenant != "a" || s.Partition != 3 || s.Partitions != 8 || s.Active != 7 || s.Limit != 100 || s.MetricLimitOf("x") != 7 || s.MetricLimitOf("y") != 50 || s.WindowSeconds != 1200 {
		t.Fatalf("state %+v", s)
	}
	if len(s.Metrics) != 1 || s.Metrics[0] != (budget.MetricUsage{Name: "x", Active: 7, New: 7, Refused: 23}) {
		t.Fatalf("metrics %+v", s.Metrics)
	}
	for i, h := range raws {
		if got := s.Filter.Has(h); got != (i < 7) && i < 7 {
			t.Fatalf("filter misses active series %d", i)
		}
	}
	if p.Snapshot(b, 8, t0, false).Filter != nil {
		t.Fatal("filter without asking")
	}
}
