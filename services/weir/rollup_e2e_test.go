package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/rollup"
)

// rollupTestConfig makes windows small enough for a test: 2s and 10s
// windows, 1s of lateness, idle partitions closing after 3s, files
// uploaded at the latest 2s after their first row.
const rollupTestConfig = `
kafka:
  partitions: 4
  produce_timeout: 2s
rollup:
  resolutions: [2s, 10s]
  allowed_lateness: 1s
  idle_timeout: 3s
  commit_interval: 1s
  parquet_max_file_age: 2s
`

func writeConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	path := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(path, []byte(rollupTestConfig+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// sentSample is one sample the test wrote and expects in the rollups.
type sentSample struct {
	ts   int64
	v    float64
	hist *histogram.FloatHistogram
}

// sentSeries is what the test wrote of one series.
type sentSeries struct {
	metric  string
	labels  map[string]string
	kind    string
	samples []sentSample
}

func (s *sentSeries) key() string { return s.metric + weirtest.LabelsKey(s.labels) }

// rollupWriter sends remote-write 1.0 requests and remembers what weir
// accepted, the way a direct computation needs it.
type rollupWriter struct {
	t      *testing.T
	url    string
	tenant string
	series map[string]*sentSeries
}

func (w *rollupWriter) send(req *prompb.WriteRequest, keep bool) {
	w.t.Helper()
	res, err := weirtest.WriteV1(w.url, w.tenant, req)
	if err := weirtest.MustWrite(res, err); err != nil {
		w.t.Fatal(err)
	}
	if !keep {
		return
	}
	for _, ts := range req.Timeseries {
		ls := map[string]string{}
		metric := ""
		for _, l := range ts.Labels {
			if l.Name == "__name__" {
				metric = l.Value
			} else {
				ls[l.Name] = l.Value
			}
		}
		s := &sentSeries{metric: metric, labels: ls}
		if old, ok := w.series[s.key()]; ok {
			s = old
		} else {
			w.series[s.key()] = s
		}
		for _, smp := range ts.Samples {
			s.samples = append(s.samples, sentSample{ts: smp.Timestamp, v: smp.Value})
		}
		for _, h := range ts.Histograms {
			s.samples = append(s.samples, sentSample{ts: h.Timestamp, hist: h.ToFloatHistogram()})
		}
	}
}

func label(kv ...string) []prompb.Label {
	var ls []prompb.Label
	for i := 0; i+1 < len(kv); i += 2 {
		ls = append(ls, prompb.Label{Name: kv[i], Value: kv[i+1]})
	}
	return ls
}

// TestRollupsEndToEnd writes gauges, counters with a reset, a classic
// histogram and a native histogram through the edge of an all-in-one
// weir, waits for the Parquet files, reads them back with Apache Arrow's
// Parquet reader and checks every aggregate of every window against a
// computation straight from what was written. A retried request and a
// late sample are counted, not rolled up. Then it runs the DuckDB queries
// of docs/rollups.md on the files.
func TestRollupsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "")
	p := weirtest.Start(t, "all", append([]string{"all", "--config=" + cfg}, embeddedArgs(t, dir)...)...)
	p.WaitReady(30 * time.Second)
	w := &rollupWriter{t: t, url: p.URL(), tenant: "team-r", series: map[string]*sentSeries{}}

	// Warm up: the pipeline is ready once a sample went all the way.
	weirtest.Eventually(t, 30*time.Second, func() error {
		w.send(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: label("__name__", "warmup"), Samples: []prompb.Sample{{Value: 1, Timestamp: time.Now().UnixMilli()}}}}}, false)
		n, err := weirtest.MetricValue(p.URL(), "weir_rollup_samples_total", nil)
		if err == nil && n == 0 {
			err = fmt.Errorf("no sample rolled up yet")
		}
		return err
	})

	rng := rand.New(rand.NewPCG(3, 4))
	var (
		requests     float64
		latencyObs   [3]float64 // cumulative per le 0.1, 1, +Inf
		latencyCount float64
		latencySum   float64
		native       = &histogram.Histogram{Schema: 0, PositiveSpans: []histogram.Span{{Offset: 0, Length: 3}}, PositiveBuckets: []int64{0, 0, 0}}
		nativeAbs    [3]int64
	)
	meta := []prompb.MetricMetadata{
		{MetricFamilyName: "e2e_temperature_celsius", Type: prompb.MetricMetadata_GAUGE},
		{MetricFamilyName: "e2e_requests_total", Type: prompb.MetricMetadata_COUNTER},
		{MetricFamilyName: "e2e_latency_seconds", Type: prompb.MetricMetadata_HISTOGRAM},
		{MetricFamilyName: "e2e_rpc_duration_seconds", Type: prompb.MetricMetadata_HISTOGRAM},
	}
	var retried *prompb.WriteRequest
	start := time.Now()
	for i := 0; time.Since(start) < 6*time.Second; i++ {
		ts := time.Now().UnixMilli()
		// Counters, with a restart of the process at i == 20.
		if i == 20 {
			requests, latencyObs, latencyCount, latencySum = 0, [3]float64{}, 0, 0
			nativeAbs = [3]int64{}
		}
		requests += float64(rng.IntN(50))
		for k := 0; k < rng.IntN(6); k++ {
			d := math.Exp(rng.NormFloat64() - 1)
			for b, le := range []float64{0.1, 1, math.Inf(1)} {
				if d <= le {
					latencyObs[b]++
				}
			}
			latencyCount++
			latencySum += d
			switch {
			case d <= 0.5:
				nativeAbs[0]++
			case d <= 1:
				nativeAbs[1]++
			default:
				nativeAbs[2]++
			}
		}
		native.PositiveBuckets = []int64{nativeAbs[0], nativeAbs[1] - nativeAbs[0], nativeAbs[2] - nativeAbs[1]}
		native.Count = uint64(nativeAbs[0] + nativeAbs[1] + nativeAbs[2])
		native.Sum = latencySum
		req := &prompb.WriteRequest{Metadata: meta, Timeseries: []prompb.TimeSeries{
			{Labels: label("__name__", "e2e_temperature_celsius", "room", "lab"), Samples: []prompb.Sample{{Value: 15 + math.Exp(rng.NormFloat64()), Timestamp: ts}}},
			{Labels: label("__name__", "e2e_requests_total", "handler", "/api"), Samples: []prompb.Sample{{Value: requests, Timestamp: ts}}},
			{Labels: label("__name__", "e2e_latency_seconds_bucket", "le", "0.1"), Samples: []prompb.Sample{{Value: latencyObs[0], Timestamp: ts}}},
			{Labels: label("__name__", "e2e_latency_seconds_bucket", "le", "1"), Samples: []prompb.Sample{{Value: latencyObs[1], Timestamp: ts}}},
			{Labels: label("__name__", "e2e_latency_seconds_bucket", "le", "+Inf"), Samples: []prompb.Sample{{Value: latencyObs[2], Timestamp: ts}}},
			{Labels: label("__name__", "e2e_latency_seconds_count"), Samples: []prompb.Sample{{Value: latencyCount, Timestamp: ts}}},
			{Labels: label("__name__", "e2e_latency_seconds_sum"), Samples: []prompb.Sample{{Value: latencySum, Timestamp: ts}}},
			{Labels: label("__name__", "e2e_rpc_duration_seconds"), Histograms: []prompb.Histogram{prompb.FromIntHistogram(ts, native)}},
		}}
		w.send(req, true)
		retried = req
		time.Sleep(200 * time.Millisecond)
	}
	// A sender retrying the request weir took last: every sample is a
	// duplicate. A sample 20s old: its windows are closed.
	w.send(retried, false)
	w.send(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: label("__name__", "e2e_temperature_celsius", "room", "lab"),
		Samples: []prompb.Sample{{Value: 1000, Timestamp: time.Now().Add(-20 * time.Second).UnixMilli()}}}}}, false)

	want := expectRollups(t, w.series, []int64{2000, 10000})
	bucketDir := filepath.Join(dir, "bucket")
	var got []weirtest.RollupRow
	weirtest.Eventually(t, 60*time.Second, func() error {
		rows, err := weirtest.ReadRollupFiles(bucketDir)
		if err != nil {
			return err
		}
		got = got[:0]
		have := map[string]bool{}
		for _, r := range rows {
			if strings.HasPrefix(r.Metric, "e2e_") {
				got = append(got, r)
				have[rowKey(r.Metric, r.Labels, r.ResolutionSeconds*1000, r.WindowStart)] = true
			}
		}
		for k := range want {
			if !have[k] {
				return fmt.Errorf("%d of %d windows in the files; missing %s", len(have), len(want), k)
			}
		}
		return nil
	})
	if len(got) != len(want) {
		t.Fatalf("%d rows in the files, want %d (one per series and window)", len(got), len(want))
	}
	for _, r := range got {
		checkRollupRow(t, r, want[rowKey(r.Metric, r.Labels, r.ResolutionSeconds*1000, r.WindowStart)])
	}

	// The retried request: 8 samples, each a duplicate in both
	// resolutions. The old sample: late in both. (The Eventually above
	// waited for the idle windows to close, so every discard is counted.)
	checkMetric(t, p.URL(), "weir_rollup_samples_discarded_total", map[string]string{"tenant": "team-r", "reason": "duplicate"}, 16)
	checkMetric(t, p.URL(), "weir_rollup_samples_discarded_total", map[string]string{"tenant": "team-r", "reason": "late"}, 2)

	t.Run("duckdb", func(t *testing.T) { checkDocQueries(t, bucketDir, "team-r", w.series) })
}

func checkMetric(t *testing.T, url, name string, match map[string]string, want float64) {
	t.Helper()
	weirtest.Eventually(t, 10*time.Second, func() error {
		v, err := weirtest.MetricValue(url, name, match)
		if err == nil && v != want {
			err = fmt.Errorf("%s%v = %v, want %v", name, match, v, want)
		}
		return err
	})
}

func rowKey(metric string, labels map[string]string, resMs, start int64) string {
	return fmt.Sprintf("%s%s@%d/%d", metric, weirtest.LabelsKey(labels), start, resMs)
}

// window is a direct computation of one window of one series.
type window struct {
	kind                       string
	count                      int64
	sum, min, max              float64
	first, last                float64
	firstTs, lastTs            int64
	increase                   float64
	values                     []float64
	hist                       *histogram.FloatHistogram
	histCount                  int64
	isCounter, isFloat, isHist bool
}

// expectRollups computes every window straight from the samples written:
// count, sum, min, max, first and last; for counters the increase, a step
// between consecutive samples counted in the window of the later one, a
// drop counted as a reset to zero; for native histograms the sum of those
// steps; for gauges the values, for quantiles.
func expectRollups(t *testing.T, series map[string]*sentSeries, resolutions []int64) map[string]*window {
	out := map[string]*window{}
	for _, s := range series {
		isCounter := strings.HasSuffix(s.metric, "_total") || strings.HasSuffix(s.metric, "_bucket") ||
			strings.HasSuffix(s.metric, "_count") || strings.HasSuffix(s.metric, "_sum")
		sort.Slice(s.samples, func(i, j int) bool { return s.samples[i].ts < s.samples[j].ts })
		for _, res := range resolutions {
			var prev *sentSample
			for i := range s.samples {
				smp := &s.samples[i]
				start := smp.ts - smp.ts%res
				k := rowKey(s.metric, s.labels, res, start)
				win := out[k]
				if win == nil {
					win = &window{}
					out[k] = win
				}
				if smp.hist != nil {
					win.isHist = true
					win.kind = rollup.KindHistogram
					win.histCount++
					if prev != nil {
						var d *histogram.FloatHistogram
						if smp.hist.DetectReset(prev.hist) {
							d = smp.hist.Copy()
						} else {
							var err error
							if d, _, _, err = smp.hist.Copy().Sub(prev.hist); err != nil {
								t.Fatal(err)
							}
						}
						if win.hist == nil {
							win.hist = d
						} else if _, _, _, err := win.hist.Add(d); err != nil {
							t.Fatal(err)
						}
					}
					prev = smp
					continue
				}
				win.isFloat = true
				win.kind = rollup.KindGauge
				if isCounter {
					win.kind, win.isCounter = rollup.KindCounter, true
					if prev != nil {
						if smp.v >= prev.v {
							win.increase += smp.v - prev.v
						} else {
							win.increase += smp.v
						}
					}
				}
				if win.count == 0 {
					win.min, win.max, win.first, win.firstTs = smp.v, smp.v, smp.v, smp.ts
				}
				win.min, win.max = math.Min(win.min, smp.v), math.Max(win.max, smp.v)
				win.last, win.lastTs = smp.v, smp.ts
				win.sum += smp.v
				win.count++
				win.values = append(win.values, smp.v)
				prev = smp
			}
		}
	}
	return out
}

func checkRollupRow(t *testing.T, r weirtest.RollupRow, w *window) {
	t.Helper()
	name := fmt.Sprintf("%s%v @%d/%ds", r.Metric, r.Labels, r.WindowStart, r.ResolutionSeconds)
	if w == nil {
		t.Errorf("%s: a window nothing was written to", name)
		return
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }
	eqp := func(p *float64, v float64) bool { return p != nil && near(*p, v) }
	if r.Kind != w.kind || r.Tenant != "team-r" || r.Rollup != "default" || r.WindowEnd != r.WindowStart+r.ResolutionSeconds*1000 {
		t.Errorf("%s: kind %s tenant %s rollup %s end %d, want %s team-r default", name, r.Kind, r.Tenant, r.Rollup, r.WindowEnd, w.kind)
	}
	if w.isFloat {
		if r.Count != w.count || !eqp(r.Sum, w.sum) || !eqp(r.Min, w.min) || !eqp(r.Max, w.max) ||
			!eqp(r.First, w.first) || !eqp(r.Last, w.last) || r.FirstTS == nil || *r.FirstTS != w.firstTs || r.LastTS == nil || *r.LastTS != w.lastTs {
			t.Errorf("%s: count %d sum %v min %v max %v first %v last %v, want %d %v %v %v %v %v", name,
				r.Count, deref(r.Sum), deref(r.Min), deref(r.Max), deref(r.First), deref(r.Last), w.count, w.sum, w.min, w.max, w.first, w.last)
		}
	}
	if w.isCounter != (r.Increase != nil) || w.isCounter && !near(*r.Increase, w.increase) {
		t.Errorf("%s: increase %v, want %v", name, deref(r.Increase), w.increase)
	}
	if w.kind == rollup.KindGauge {
		if r.SketchGamma == nil || r.SketchRelativeAccuracy == nil || math.Abs(*r.SketchRelativeAccuracy-0.01) > 1e-12 {
			t.Fatalf("%s: sketch columns missing", name)
		}
		bins := rollup.Bins{Gamma: *r.SketchGamma, ZeroCount: deref(r.SketchZeroCount)}
		for _, b := range r.SketchBins {
			bins.Positive = append(bins.Positive, rollup.Bin{Index: b.Index, Count: b.Count})
		}
		sorted := append([]float64(nil), w.values...)
		sort.Float64s(sorted)
		for _, q := range []float64{0, 0.5, 0.9, 0.99, 1} {
			exact := sorted[int(q*float64(len(sorted)-1))]
			if got := rollup.Quantile(q, bins); math.Abs(got-exact) > 0.01*exact {
				t.Errorf("%s: q%v from the sketch bins %v, exact %v", name, q, got, exact)
			}
		}
		if sk, err := rollup.DecodeSketch(r.Sketch); err != nil || sk.GetCount() != float64(w.count) {
			t.Errorf("%s: sketch bytes: %v, count %v, want %d", name, err, sk.GetCount(), w.count)
		}
	}
	if w.isHist {
		if r.HistogramCount != w.histCount {
			t.Errorf("%s: %d histograms, want %d", name, r.HistogramCount, w.histCount)
		}
		var h writev2.Histogram
		if err := h.Unmarshal(r.Histogram); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := h.ToFloatHistogram()
		want := w.hist
		if want == nil {
			want = &histogram.FloatHistogram{}
		}
		if !near(got.Count, want.Count) || !near(got.Sum, want.Sum) {
			t.Errorf("%s: merged histogram count %v sum %v, want %v %v", name, got.Count, got.Sum, want.Count, want.Sum)
		}
		wb := map[float64]float64{}
		for it := want.AllBucketIterator(); it.Next(); {
			wb[it.At().Upper] += it.At().Count
		}
		for it := got.AllBucketIterator(); it.Next(); {
			if b := it.At(); !near(b.Count, wb[b.Upper]) {
				t.Errorf("%s: bucket ≤%v holds %v, want %v", name, b.Upper, b.Count, wb[b.Upper])
			}
		}
	}
}

func deref[T any](p *T) T {
	var z T
	if p == nil {
		return z
	}
	return *p
}

// docQueries returns the SQL blocks of docs/rollups.md marked for tests,
// by name.
func docQueries(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "rollups.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	rest := string(b)
	for {
		i := strings.Index(rest, "<!-- duckdb-test: ")
		if i < 0 {
			break
		}
		rest = rest[i+len("<!-- duckdb-test: "):]
		name, after, _ := strings.Cut(rest, " -->")
		_, body, ok := strings.Cut(after, "```sql\n")
		if !ok {
			t.Fatalf("docs/rollups.md: query %s has no sql block", name)
		}
		sql, _, _ := strings.Cut(body, "```")
		out[name] = sql
		rest = body
	}
	for _, name := range []string{"p99", "hourly", "gauge"} {
		if out[name] == "" {
			t.Fatalf("docs/rollups.md lost its %s query", name)
		}
	}
	return out
}

// checkDocQueries runs the queries of docs/rollups.md, pointed at the
// test's files, tenant, resolutions and metrics, and checks their answers
// against the samples written.
func checkDocQueries(t *testing.T, bucketDir, tenant string, series map[string]*sentSeries) {
	queries := docQueries(t)
	adapt := func(sql string, repl ...string) string {
		repl = append(repl, "'rollups/**/*.parquet'", "'"+filepath.ToSlash(bucketDir)+"/rollups/**/*.parquet'", "'team-a'", "'"+tenant+"'")
		return strings.NewReplacer(repl...).Replace(sql)
	}
	var gauge, counter *sentSeries
	for _, s := range series {
		switch s.metric {
		case "e2e_temperature_celsius":
			gauge = s
		case "e2e_requests_total":
			counter = s
		}
	}
	hour := func(ts int64) string {
		return time.UnixMilli(ts).UTC().Truncate(time.Hour).Format("2006-01-02 15:04:05")
	}
	parseHour := func(v any) string {
		s := fmt.Sprint(v)
		return strings.TrimSuffix(s, "+00")
	}

	// p99 over the 10s sketches: within 1 % of the raw samples' p99.
	rows := weirtest.DuckDB(t, "SET TimeZone = 'UTC'", adapt(queries["p99"], "'1h'", "'10s'", "'node_load1'", "'e2e_temperature_celsius'"))
	var values []float64
	for _, smp := range gauge.samples {
		values = append(values, smp.v)
	}
	sort.Float64s(values)
	exact := values[int(0.99*float64(len(values)-1))]
	got, ok := rows[0]["p99"].(float64)
	if len(rows) != 1 || !ok || math.Abs(got-exact) > 0.01*exact {
		t.Errorf("p99 query: %v, exact p99 %v (%d samples)", rows, exact, len(values))
	}

	// Requests per hour: every step between consecutive samples, in the
	// hour of the later one.
	wantHourly := map[string]float64{}
	for i := 1; i < len(counter.samples); i++ {
		prev, cur := counter.samples[i-1].v, counter.samples[i].v
		step := cur - prev
		if cur < prev {
			step = cur
		}
		wantHourly[hour(counter.samples[i].ts)] += step
	}
	if first := hour(counter.samples[0].ts); wantHourly[first] == 0 {
		wantHourly[first] += 0 // the hour exists even if nothing increased
	}
	rows = weirtest.DuckDB(t, "SET TimeZone = 'UTC'", adapt(queries["hourly"], "'5m'", "'2s'", "'http_requests_total'", "'e2e_requests_total'"))
	if len(rows) != len(wantHourly) {
		t.Errorf("hourly query: %v, want %v", rows, wantHourly)
	}
	for _, r := range rows {
		h := parseHour(r["hour"])
		if got, _ := r["requests"].(float64); math.Abs(got-wantHourly[h]) > 1e-6 {
			t.Errorf("hourly query: %s has %v requests, want %v", h, got, wantHourly[h])
		}
	}

	// Mean and maximum of the gauge per hour.
	type agg struct{ sum, n, max float64 }
	wantGauge := map[string]*agg{}
	for _, smp := range gauge.samples {
		a := wantGauge[hour(smp.ts)]
		if a == nil {
			a = &agg{max: math.Inf(-1)}
			wantGauge[hour(smp.ts)] = a
		}
		a.sum += smp.v
		a.n++
		a.max = math.Max(a.max, smp.v)
	}
	rows = weirtest.DuckDB(t, "SET TimeZone = 'UTC'", adapt(queries["gauge"], "'5m'", "'2s'", "'temperature_celsius'", "'e2e_temperature_celsius'"))
	if len(rows) != len(wantGauge) {
		t.Errorf("gauge query: %v, want %d hours", rows, len(wantGauge))
	}
	for _, r := range rows {
		a := wantGauge[parseHour(r["hour"])]
		mean, _ := r["mean"].(float64)
		mx, _ := r["max"].(float64)
		if a == nil || r["room"] != "lab" || math.Abs(mean-a.sum/a.n) > 1e-9*a.sum || mx != a.max {
			t.Errorf("gauge query: %v, want mean %v max %v", r, a.sum/a.n, a.max)
		}
	}
}
