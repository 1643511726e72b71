package budget

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
)

func TestFilterHasNoFalseNegativesAndFewFalsePositives(t *testing.T) {
	const n = 20000
	f := NewFilter(n)
	for i := 0; i < n; i++ {
		f.Add(record.SeriesHash("t", []prw.Label{{Name: "__name__", Value: "m"}, {Name: "i", Value: fmt.Sprint(i)}}))
	}
	// Through JSON, as the edge receives it.
	s := &PartitionState{Version: StateVersion, Tenant: "t", Filter: f}
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalState(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if !got.Filter.Has(record.SeriesHash("t", []prw.Label{{Name: "__name__", Value: "m"}, {Name: "i", Value: fmt.Sprint(i)}})) {
			t.Fatalf("series %d missing", i)
		}
	}
	fp := 0
	for i := 0; i < n; i++ {
		if got.Filter.Has(record.SeriesHash("t", []prw.Label{{Name: "__name__", Value: "other"}, {Name: "i", Value: fmt.Sprint(i)}})) {
			fp++
		}
	}
	if rate := float64(fp) / n; rate > 0.02 {
		t.Fatalf("false positive rate %.3f, want about 0.01", rate)
	}
	if _, err := UnmarshalState([]byte(`{"v":2}`)); err == nil {
		t.Fatal("unknown version accepted")
	}
	if tn, p, ok := ParseKey(Key("team-a", 7)); !ok || tn != "team-a" || p != 7 {
		t.Fatal("key round trip")
	}
}

func ts(metric string, kv ...string) prw.TimeSeries {
	ls := []prw.Label{{Name: "__name__", Value: metric}}
	for i := 0; i+1 < len(kv); i += 2 {
		ls = append(ls, prw.Label{Name: kv[i], Value: kv[i+1]})
	}
	return prw.TimeSeries{Labels: ls, Samples: []prw.Sample{{Value: 1}}}
}

// state builds the state of one of two partitions holding the given
// series (those of the partition), with a filter.
func state(tenant string, p int32, at time.Time, limit int, metricLimits map[string]int, active map[string]int, grew map[string][2]int, known []prw.TimeSeries) *PartitionState {
	s := &PartitionState{Version: StateVersion, Tenant: tenant, Partition: p, Partitions: 2, At: at.UnixMilli(), WindowSeconds: 1200, Limit: limit, MetricLimits: metricLimits, Filter: NewFilter(len(known))}
	for m, n := range active {
		s.Active += n
		s.Metrics = append(s.Metrics, MetricUsage{Name: m, Active: n, New: grew[m][0], Refused: grew[m][1]})
	}
	for _, k := range known {
		h := record.SeriesHash(tenant, k.Labels)
		if int32(h%2) == p {
			s.Filter.Add(h)
		}
	}
	return s
}

func TestViewCheck(t *testing.T) {
	now := time.Now()
	v := NewView()
	known := []prw.TimeSeries{ts("up", "i", "1"), ts("up", "i", "2"), ts("api", "user", "1"), ts("api", "user", "2")}
	v.Apply(state("a", 0, now, 10, map[string]int{"api": 4}, map[string]int{"up": 1, "api": 3}, map[string][2]int{"api": {3, 500}}, known))
	v.Apply(state("a", 1, now, 10, map[string]int{"api": 4}, map[string]int{"up": 1, "api": 1}, nil, known))

	u := v.Tenant("a")
	if u.Active != 6 || u.Metrics["api"].Active != 4 || u.GrewMost.Name != "api" || u.GrewMost.Grew() != 503 || u.Window != 20*time.Minute {
		t.Fatalf("usage %+v", u)
	}
	// Known series pass, whatever the limits.
	if ex := v.Check("a", known); ex != nil {
		t.Fatalf("active series refused: %v", ex)
	}
	// A new series of a full metric is refused, naming the metric.
	ex := v.Check("a", append([]prw.TimeSeries{ts("api", "user", "3")}, known...))
	if ex == nil || ex.Metric != "api" || ex.Limit != 4 || ex.Active != 4 || ex.New != 1 {
		t.Fatalf("metric budget: %+v", ex)
	}
	for _, want := range []string{`metric "api" of tenant "a"`, "4 active series of a limit of 4", "would add 1 new series", `grew most is "api" (503 new series in the last 5m, 500 of them refused)`, "inactive for 20m0s"} {
		if !strings.Contains(ex.Error(), want) {
			t.Errorf("message lacks %q: %s", want, ex.Error())
		}
	}
	// New series of another metric fit until the tenant's limit.
	if ex := v.Check("a", []prw.TimeSeries{ts("new", "i", "1"), ts("new", "i", "2"), ts("new", "i", "3"), ts("new", "i", "4")}); ex != nil {
		t.Fatalf("4 new series of 10-6 refused: %v", ex)
	}
	ex = v.Check("a", []prw.TimeSeries{ts("new", "i", "1"), ts("new", "i", "2"), ts("new", "i", "3"), ts("new", "i", "4"), ts("new", "i", "5")})
	if ex == nil || ex.Metric != "" || ex.Limit != 10 || ex.Active != 6 || ex.New != 5 || !strings.Contains(ex.Error(), `series budget of tenant "a" exceeded: 6 active series of a limit of 10`) {
		t.Fatalf("tenant budget: %+v", ex)
	}
	// Other tenants are not checked at all.
	if ex := v.Check("b", []prw.TimeSeries{ts("new")}); ex != nil {
		t.Fatal(ex)
	}
	// A stale state does not replace a newer one; states nobody
	// republished for a window are forgotten.
	v.Apply(state("a", 0, now.Add(-time.Minute), 10, nil, map[string]int{"up": 100}, nil, nil))
	if v.Tenant("a").Active != 6 {
		t.Fatal("older state applied")
	}
	v.Expire(now.Add(22 * time.Minute))
	if v.Tenant("a") != nil {
		t.Fatal("stale tenant kept")
	}
}

func TestViewWithoutFiltersAdmits(t *testing.T) {
	v := NewView()
	s := &PartitionState{Version: StateVersion, Tenant: "a", Partitions: 1, At: time.Now().UnixMilli(), Active: 100, Limit: 10}
	v.Apply(s)
	if ex := v.Check("a", []prw.TimeSeries{ts("m")}); ex != nil {
		t.Fatalf("refused without knowing which series are new: %v", ex)
	}
}
