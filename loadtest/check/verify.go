package check

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weir-metrics/weir/loadtest/gen"
	"github.com/weir-metrics/weir/loadtest/query"
)

// Options tune Verify.
type Options struct {
	// Budget is the most samples one query should have to read; larger
	// groups are split by job and then by time. Default 2,000,000, well
	// below Prometheus' default --query.max-samples of 50M.
	Budget int
	// Concurrency is the number of queries in flight. Default 4.
	Concurrency int
	// Examples is how many faulty series are listed. Default 10.
	Examples int
}

// Result is the outcome of a verification.
type Result struct {
	OK bool `json:"ok"`
	// Series with at least one acknowledged sample, and those the target
	// returned with at least one sample.
	SeriesWritten int `json:"series_written"`
	SeriesFound   int `json:"series_found"`
	// Samples acknowledged, with an unknown outcome, and found.
	SamplesAcked   uint64 `json:"samples_acked"`
	SamplesUnknown uint64 `json:"samples_unknown"`
	SamplesFound   uint64 `json:"samples_found"`
	// Missing counts acknowledged samples the target does not return;
	// Duplicated counts samples it returns beyond all that was sent.
	Missing    uint64 `json:"samples_missing"`
	Duplicated uint64 `json:"samples_duplicated"`
	// Series counts by fault.
	SeriesShort         int `json:"series_short"`
	SeriesOver          int `json:"series_over"`
	SeriesValueMismatch int `json:"series_value_mismatch"`
	SeriesUnexpected    int `json:"series_unexpected"`
	// ValuesChecked counts series whose value sum was compared (those
	// with no attempt of unknown outcome).
	ValuesChecked int      `json:"values_checked"`
	Examples      []string `json:"examples,omitempty"`
	Queries       int      `json:"queries"`
	Seconds       float64  `json:"seconds"`
}

// Summary is one line describing the result.
func (r *Result) Summary() string {
	verdict := "PASS"
	if !r.OK {
		verdict = "FAIL"
	}
	return fmt.Sprintf("%s: %d/%d series, %d/%d acknowledged samples found (%d of unknown outcome), %d missing, %d duplicated, %d value mismatches, %d unexpected series",
		verdict, r.SeriesFound, r.SeriesWritten, r.SamplesFound, r.SamplesAcked, r.SamplesUnknown, r.Missing, r.Duplicated, r.SeriesValueMismatch, r.SeriesUnexpected)
}

type recRef struct {
	ledger *BatchLedger
	rec    int32
}

type found struct {
	count, sum float64
}

// Verify compares every series of the ledgers with what the target's
// query API returns.
func Verify(ctx context.Context, c *query.Client, pop *gen.Population, ledgers []*BatchLedger, opts Options) (*Result, error) {
	start := time.Now()
	if opts.Budget <= 0 {
		opts.Budget = 2_000_000
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.Examples <= 0 {
		opts.Examples = 10
	}
	res := &Result{}
	index := map[uint64]recRef{}
	// expected samples per metric name and job, to size the queries
	type nameJob struct {
		name string
		job  int
	}
	expected := map[nameJob]uint64{}
	minTS, maxTS := int64(math.MaxInt64), int64(math.MinInt64)
	for _, l := range ledgers {
		for _, rd := range l.Rounds {
			minTS, maxTS = min(minTS, rd.TS), max(maxTS, rd.TS)
		}
		for i := range l.Records {
			r := &l.Records[i]
			res.SamplesAcked += uint64(r.Acked)
			res.SamplesUnknown += uint64(r.Extra)
			if r.Acked > 0 {
				res.SeriesWritten++
			}
			if r.Acked == 0 && r.Extra == 0 {
				continue
			}
			name, labels := pop.Labels(r.ID)
			index[hashLabels(name, labels)] = recRef{l, int32(i)}
			expected[nameJob{name, int(r.ID.Slot) / gen.SeriesPerInstance / gen.InstancesPerJob}] += uint64(r.Acked + r.Extra)
		}
	}
	if len(index) == 0 {
		return nil, fmt.Errorf("nothing was written: no series to verify")
	}
	run := pop.Options().RunID
	from, to := minTS-1, maxTS+1 // sample timestamps are even, bounds odd

	// Plan the queries: per metric name, jobs grouped up to the budget,
	// then time windows if one job alone exceeds it.
	type plan struct {
		name   string
		sel    string
		stamps []int64 // window ends; window k is (stamps[k-1], stamps[k]] with stamps[-1] = from
	}
	var plans []plan
	for _, name := range gen.MetricNames() {
		var jobs []int
		var acc uint64
		flush := func() {
			if len(jobs) == 0 {
				return
			}
			ms := []string{query.Eq("__name__", name), query.Eq(gen.RunLabel, run)}
			if len(jobs) < pop.Jobs() {
				alts := make([]string, len(jobs))
				for i, j := range jobs {
					alts[i] = gen.JobName(j)
				}
				ms = append(ms, query.Re("job", strings.Join(alts, "|")))
			}
			windows := max(1, int((acc+uint64(opts.Budget)-1)/uint64(opts.Budget)))
			plans = append(plans, plan{name: name, sel: query.Selector(ms...), stamps: windowEnds(from, to, windows)})
			jobs, acc = nil, 0
		}
		for j := 0; j < pop.Jobs(); j++ {
			n := expected[nameJob{name, j}]
			if n == 0 {
				continue
			}
			if acc > 0 && acc+n > uint64(opts.Budget) {
				flush()
			}
			jobs = append(jobs, j)
			acc += n
		}
		flush()
	}

	// Run them.
	results := map[uint64]*found{}
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, opts.Concurrency)
	type unexpected struct {
		name   string
		labels map[string]string
	}
	var strays []unexpected
	do := func(p plan, prev, end int64) {
		defer wg.Done()
		defer func() { <-sem }()
		rng := strconv.FormatInt(end-prev, 10) + "ms"
		t := time.UnixMilli(end)
		counts, err := c.Instant(ctx, "count_over_time("+p.sel+"["+rng+"])", t)
		var sums []query.Series
		if err == nil {
			sums, err = c.Instant(ctx, "sum_over_time("+p.sel+"["+rng+"])", t)
		}
		mu.Lock()
		defer mu.Unlock()
		res.Queries += 2
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			return
		}
		for _, s := range counts {
			h := hashMap(p.name, s.Labels)
			f := results[h]
			if f == nil {
				f = &found{}
				results[h] = f
				if _, ok := index[h]; !ok {
					strays = append(strays, unexpected{p.name, s.Labels})
				}
			}
			f.count += s.Value
		}
		for _, s := range sums {
			if f := results[hashMap(p.name, s.Labels)]; f != nil {
				f.sum += s.Value
			}
		}
	}
launch:
	for _, p := range plans {
		prev := from
		for _, end := range p.stamps {
			sem <- struct{}{}
			mu.Lock()
			failed := firstErr != nil
			mu.Unlock()
			if failed {
				<-sem
				break launch // the answer is an error whatever the rest say
			}
			wg.Add(1)
			go do(p, prev, end)
			prev = end
		}
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("querying the target: %w", firstErr)
	}

	// Compare.
	var bad []recRef
	for h, ref := range index {
		r := &ref.ledger.Records[ref.rec]
		f := results[h]
		var n uint64
		if f != nil && f.count > 0 {
			n = uint64(f.count)
			res.SeriesFound++
		}
		res.SamplesFound += n
		switch {
		case n < uint64(r.Acked):
			res.Missing += uint64(r.Acked) - n
			res.SeriesShort++
			bad = append(bad, ref)
		case n > uint64(r.Acked)+uint64(r.Extra):
			res.Duplicated += n - uint64(r.Acked) - uint64(r.Extra)
			res.SeriesOver++
			bad = append(bad, ref)
		case r.Extra == 0:
			res.ValuesChecked++
			if !closeEnough(f.sum, r.Sum) {
				res.SeriesValueMismatch++
				bad = append(bad, ref)
			}
		}
	}
	for _, s := range strays {
		res.SeriesUnexpected++
		if f := results[hashMap(s.name, s.labels)]; f != nil {
			res.Duplicated += uint64(f.count)
			res.SamplesFound += uint64(f.count)
		}
		if len(res.Examples) < opts.Examples {
			res.Examples = append(res.Examples, fmt.Sprintf("%s%s: returned by the target but never written", s.name, renderMap(s.labels)))
		}
	}
	res.OK = res.Missing == 0 && res.Duplicated == 0 && res.SeriesValueMismatch == 0 && res.SeriesUnexpected == 0

	// Explain the first faulty series sample by sample.
	sort.Slice(bad, func(i, j int) bool {
		a, b := bad[i], bad[j]
		if a.ledger.Batch != b.ledger.Batch {
			return a.ledger.Batch < b.ledger.Batch
		}
		return a.rec < b.rec
	})
	for _, ref := range bad {
		if len(res.Examples) >= opts.Examples {
			break
		}
		ex, err := explain(ctx, c, pop, ref, results, from, to)
		if err != nil {
			ex = fmt.Sprintf("%s (could not read its samples: %v)", ex, err)
		}
		res.Examples = append(res.Examples, ex)
		res.Queries++
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// windowEnds splits (from, to] into n windows whose bounds are odd
// milliseconds, which no sample has, so that a server treating ranges as
// closed (Prometheus 2) and one treating them as left-open (Prometheus 3,
// VictoriaMetrics) count the same samples.
func windowEnds(from, to int64, n int) []int64 {
	var out []int64
	for k := 1; k < n; k++ {
		e := from + (to-from)*int64(k)/int64(n)
		if e%2 == 0 {
			e++
		}
		if e > from && e < to && (len(out) == 0 || e > out[len(out)-1]) {
			out = append(out, e)
		}
	}
	return append(out, to)
}

func closeEnough(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*max(1, math.Abs(a), math.Abs(b))
}

func explain(ctx context.Context, c *query.Client, pop *gen.Population, ref recRef, results map[uint64]*found, from, to int64) (string, error) {
	r := &ref.ledger.Records[ref.rec]
	name, labels := pop.Labels(r.ID)
	var ms []string
	for _, l := range labels {
		ms = append(ms, query.Eq(l.Name, l.Value))
	}
	sel := name + query.Selector(ms...)
	var n, sum float64
	if f := results[hashLabels(name, labels)]; f != nil {
		n, sum = f.count, f.sum
	}
	head := fmt.Sprintf("%s: %d acknowledged (+%d of unknown outcome), %d stored", sel, r.Acked, r.Extra, int64(n))
	if n == float64(r.Acked) {
		return fmt.Sprintf("%s; sum of values %g, expected %g", head, sum, r.Sum), nil
	}
	series, err := c.Instant(ctx, sel+"["+strconv.FormatInt(to-from, 10)+"ms]", time.UnixMilli(to))
	if err != nil {
		return head, err
	}
	stored := map[int64]int{}
	for _, s := range series {
		for _, p := range s.Samples {
			stored[p.T]++
		}
	}
	acked, unknown := ref.ledger.timestamps(r)
	var missing, extra []int64
	for _, t := range acked {
		if stored[t] == 0 {
			missing = append(missing, t)
		} else {
			stored[t]--
		}
	}
	for _, t := range unknown {
		if stored[t] > 0 {
			stored[t]--
		}
	}
	for t, k := range stored {
		for ; k > 0; k-- {
			extra = append(extra, t)
		}
	}
	slices.Sort(extra)
	if len(missing) > 0 {
		head += "; missing at " + stamps(missing)
	}
	if len(extra) > 0 {
		head += "; never sent (or sent once, stored twice) at " + stamps(extra)
	}
	if len(missing) == 0 && len(extra) == 0 {
		head += fmt.Sprintf("; its %d raw samples now match (the target was still catching up)", len(acked))
	}
	return head, nil
}

func stamps(ts []int64) string {
	var parts []string
	for i, t := range ts {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("… (%d in all)", len(ts)))
			break
		}
		parts = append(parts, fmt.Sprintf("%d (%s)", t, time.UnixMilli(t).UTC().Format("15:04:05.000")))
	}
	return strings.Join(parts, ", ")
}

func hashLabels(name string, labels []gen.Label) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	for _, l := range labels {
		h.Write([]byte{0xff})
		h.Write([]byte(l.Name))
		h.Write([]byte{0xfe})
		h.Write([]byte(l.Value))
	}
	return h.Sum64()
}

// hashMap hashes a query result's labels as hashLabels does; __name__, if
// the target kept it, is replaced by the name queried.
func hashMap(name string, m map[string]string) uint64 {
	ls := make([]gen.Label, 0, len(m))
	for k, v := range m {
		if k != "__name__" {
			ls = append(ls, gen.Label{Name: k, Value: v})
		}
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].Name < ls[j].Name })
	return hashLabels(name, ls)
}

func renderMap(m map[string]string) string {
	var ms []string
	for k, v := range m {
		ms = append(ms, query.Eq(k, v))
	}
	sort.Strings(ms)
	return query.Selector(ms...)
}
