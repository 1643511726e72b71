package limits

import (
	"strings"
	"testing"
	"time"

	"github.com/weir-metrics/weir/pkg/prw"
)

func defaults() Limits {
	return Limits{
		MaxRequestBytes:      10 << 20,
		MaxDecompressedBytes: 64 << 20,
		MaxLabelsPerSeries:   30,
		MaxLabelNameLength:   1024,
		MaxLabelValueLength:  2048,
		MaxFutureSkew:        10 * time.Minute,
		InfluxStringFields:   "drop",
	}
}

func TestOverridesLoad(t *testing.T) {
	o := NewOverrides(defaults())
	if got := o.For("a").MaxLabelsPerSeries; got != 30 {
		t.Fatalf("before any file: %d", got)
	}
	err := o.Load([]byte(`
defaults:
  ingestion_rate: 1000
tenants:
  team-a:
    ingestion_rate: 5000
    max_future_skew: 1h
    influx_string_fields: info
  team-b:
    max_labels_per_series: 10
`))
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := o.For("team-a"), o.For("team-b"), o.For("other")
	if a.IngestionRate != 5000 || a.MaxFutureSkew != time.Hour || a.InfluxStringFields != "info" || a.MaxLabelsPerSeries != 30 {
		t.Errorf("team-a: %+v", a)
	}
	if b.IngestionRate != 1000 || b.MaxLabelsPerSeries != 10 {
		t.Errorf("team-b must inherit the file's defaults: %+v", b)
	}
	if c.IngestionRate != 1000 || c.MaxLabelsPerSeries != 30 {
		t.Errorf("unlisted tenant: %+v", c)
	}
	if got := o.Tenants(); strings.Join(got, ",") != "team-a,team-b" {
		t.Errorf("Tenants() = %v", got)
	}

	// Every bad file is refused as a whole, naming what is wrong, and the
	// limits in force stay.
	for _, bad := range []struct{ file, msg string }{
		{"tenants:\n  team-a:\n    ingestion_rat: 5\n", `unknown setting "ingestion_rat"`},
		{"tenants:\n  team-a:\n    max_labels_per_series: -1\n", "tenant team-a: max_labels_per_series"},
		{"tenants:\n  team-a:\n    max_future_skew: soon\n", "tenant team-a"},
		{"tenants:\n  a.b:\n    ingestion_rate: 1\n", "tenant ID"},
		{"tenants:\n  team-a:\n    influx_string_fields: keep\n", "influx_string_fields"},
		{"tenants:\n  team-a:\n    influx_database_label: __db\n", "influx_database_label"},
		{"defaults:\n  max_request_bytes: 10\n", "defaults: max_request_bytes"},
		{"tenant:\n  team-a: {}\n", "tenant"},
		{"tenants: [1, 2]\n", "runtime file"},
	} {
		err := o.Load([]byte(bad.file))
		if err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("file %q: want an error mentioning %q, got %v", bad.file, bad.msg, err)
		}
		if o.For("team-a").IngestionRate != 5000 {
			t.Fatalf("a refused file changed the limits in force")
		}
	}
	// An empty file puts the defaults back.
	if err := o.Load(nil); err != nil {
		t.Fatal(err)
	}
	if o.For("team-a").IngestionRate != 0 {
		t.Errorf("empty file: team-a keeps %v", o.For("team-a").IngestionRate)
	}
}

func series(labels int, nameLen, valueLen int, exemplars int, ts int64) prw.TimeSeries {
	s := prw.TimeSeries{Labels: []prw.Label{{Name: "__name__", Value: "up"}}}
	for i := 1; i < labels; i++ {
		s.Labels = append(s.Labels, prw.Label{Name: "l" + strings.Repeat("x", i), Value: "v"})
	}
	if nameLen > 0 {
		s.Labels = append(s.Labels, prw.Label{Name: strings.Repeat("n", nameLen), Value: "v"})
	}
	if valueLen > 0 {
		s.Labels = append(s.Labels, prw.Label{Name: "val", Value: strings.Repeat("v", valueLen)})
	}
	s.Samples = []prw.Sample{{Value: 1, Timestamp: ts}}
	for i := 0; i < exemplars; i++ {
		s.Exemplars = append(s.Exemplars, prw.Exemplar{Value: 1, Timestamp: ts})
	}
	return s
}

func TestCheckSeries(t *testing.T) {
	l := defaults()
	l.MaxLabelsPerSeries = 5
	l.MaxLabelNameLength = 10
	l.MaxLabelValueLength = 20
	l.MaxExemplarsPerSeries = 2
	l.MaxFutureSkew = time.Minute
	now := time.UnixMilli(1_700_000_000_000)
	ok := series(3, 0, 0, 1, now.UnixMilli())

	u, v := l.CheckSeries([]prw.TimeSeries{ok, series(3, 10, 20, 2, now.Add(time.Minute).UnixMilli())}, now)
	if v != nil {
		t.Fatalf("series at the limits refused: %v", v)
	}
	if u.Labels != 5 || u.LabelNameLength != 10 || u.LabelValueLength != 20 || u.Exemplars != 2 || u.FutureSkew != time.Minute {
		t.Fatalf("usage %+v", u)
	}

	for _, c := range []struct {
		s     prw.TimeSeries
		limit string
		msg   string
	}{
		{series(6, 0, 0, 0, now.UnixMilli()), MaxLabelsPerSeries, "has 6 labels, more than max_labels_per_series (5)"},
		{series(2, 11, 0, 0, now.UnixMilli()), MaxLabelNameLength, "label name of 11 bytes"},
		{series(2, 0, 21, 0, now.UnixMilli()), MaxLabelValueLength, `value of 21 bytes for label "val"`},
		{series(2, 0, 0, 3, now.UnixMilli()), MaxExemplarsPerSeries, "3 exemplars"},
		{series(2, 0, 0, 0, now.Add(time.Hour).UnixMilli()), MaxFutureSkew, "1h0m0s ahead"},
	} {
		_, v := l.CheckSeries([]prw.TimeSeries{ok, c.s}, now)
		if v == nil || v.Limit != c.limit || !strings.Contains(v.Error(), c.msg) || !strings.Contains(v.Error(), "up{") {
			t.Errorf("%s: got %v, want a violation saying %q and naming the series", c.limit, v, c.msg)
		}
	}
	// Zero limits are off.
	var off Limits
	if _, v := off.CheckSeries([]prw.TimeSeries{series(100, 5000, 5000, 100, now.Add(24*time.Hour).UnixMilli())}, now); v != nil {
		t.Fatalf("zero limits refused: %v", v)
	}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestAllowTokenBucket(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	tr := NewTracker()
	tr.now = c.now
	l := defaults()
	l.IngestionRate = 100
	l.IngestionBurst = 200

	if ok, _ := tr.Allow("a", &l, 150); !ok {
		t.Fatal("first request refused with a full bucket")
	}
	// 50 tokens left: a request of 100 waits for them.
	if ok, retry := tr.Allow("a", &l, 100); ok || retry < time.Second || retry > 1500*time.Millisecond {
		t.Fatalf("request above the tokens left: ok=%v Retry-After %s", ok, retry)
	}
	// A request larger than the burst goes through once the bucket is full
	// and leaves it in debt.
	c.t = c.t.Add(1500 * time.Millisecond)
	if ok, _ := tr.Allow("a", &l, 450); !ok {
		t.Fatal("request larger than the burst refused with a full bucket")
	}
	var last time.Duration
	for i := 0; i < 5; i++ {
		ok, retry := tr.Allow("a", &l, 1)
		if ok {
			t.Fatal("admitted while the bucket is in debt")
		}
		// The refill alone needs 2.51 s; the backoff grows 1, 2, 4, 8, 16 s;
		// the jitter adds up to half.
		base := max(2510*time.Millisecond, time.Second<<i)
		if retry < base || retry > base*3/2+time.Second {
			t.Errorf("refusal %d: Retry-After %s, want between %s and %s", i, retry, base, base*3/2)
		}
		if i >= 2 && retry < last*3/4 {
			t.Errorf("refusal %d: Retry-After %s did not grow from %s", i, retry, last)
		}
		last = retry
	}
	// Other tenants are not affected.
	if ok, _ := tr.Allow("b", &l, 150); !ok {
		t.Fatal("tenant b refused because of tenant a")
	}
	c.t = c.t.Add(4 * time.Second)
	if ok, _ := tr.Allow("a", &l, 140); !ok {
		t.Fatal("refused after the bucket refilled")
	}
	// The streak was reset: the next refusal starts from a small wait.
	if ok, retry := tr.Allow("a", &l, 100); ok || retry > 2*time.Second {
		t.Fatalf("after an admitted request: ok=%v Retry-After %s, want a short wait again", ok, retry)
	}
	// Unlimited admits everything.
	var unlimited Limits
	for i := 0; i < 3; i++ {
		if ok, _ := tr.Allow("c", &unlimited, 1e9); !ok {
			t.Fatal("unlimited tenant refused")
		}
	}
}

func TestUsage(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_020, 0)} // 10 s into a window
	tr := NewTracker()
	tr.now = c.now
	l := defaults()
	l.IngestionRate = 1000
	l.MaxLabelsPerSeries = 10
	tr.Allow("a", &l, 5000)
	tr.Observe("a", &l, Usage{Labels: 5, RequestBytes: 1 << 20})

	got := map[string]float64{}
	for _, u := range tr.Usage() {
		if u.Tenant != "a" {
			t.Fatalf("unexpected tenant %q", u.Tenant)
		}
		got[u.Limit] = u.Ratio
	}
	// 5000 samples in the first 10 s of the window: 333/s over the last 15 s.
	if got[MaxLabelsPerSeries] != 0.5 || got[MaxRequestBytes] != 0.1 || got[IngestionRate] != 5000.0/15/1000 {
		t.Fatalf("usage %v", got)
	}
	if _, ok := got[MaxExemplarsPerSeries]; ok {
		t.Fatal("usage reported for a limit that is off")
	}
	// Two windows later the peaks are gone; after idleExpiry the tenant
	// is forgotten.
	c.t = c.t.Add(2 * Window)
	for _, u := range tr.Usage() {
		if u.Ratio != 0 {
			t.Fatalf("stale usage %+v", u)
		}
	}
	c.t = c.t.Add(idleExpiry + time.Second)
	if u := tr.Usage(); len(u) != 0 {
		t.Fatalf("idle tenant still reported: %v", u)
	}
}
