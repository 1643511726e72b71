package main

import (
	"bytes"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/influxdata/line-protocol-corpus/lpcorpus"

	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/influx"
)

// corpusFile finds corpus.json of the line-protocol corpus module in the
// module cache.
func corpusFile(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/influxdata/line-protocol-corpus").Output()
	if err != nil {
		t.Fatalf("locating the line-protocol corpus module: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "corpus.json")
}

// corpusEra groups timestamps 6 hours apart at most into one tenant: each
// tenant's TSDB then holds a narrow time range, whatever centuries the
// corpus spans (a TSDB head spanning centuries would compact every 2 h
// range in between).
const corpusEra = 6 * time.Hour

func eraTenant(ms int64) string {
	era := ms / corpusEra.Milliseconds()
	if ms < 0 && ms%corpusEra.Milliseconds() != 0 {
		era--
	}
	return fmt.Sprintf("corpus-%d", era)
}

// corpusPoint is a sample the corpus says a case makes.
type corpusPoint struct {
	series string // labels as weirtest.LabelsKey renders them
	value  float64
	ms     int64 // expected timestamp; for receive-time points, 0
	now    bool  // the line had no timestamp: the receive time applies
}

type corpusCase struct {
	entry    *lpcorpus.DecodeCorpusEntry
	tenant   string
	points   []corpusPoint
	status   int
	body     string
	sentFrom int64 // receive-time bounds, ms
	sentTo   int64
}

func floorDivMs(ns int64) int64 {
	q := ns / 1e6
	if ns < 0 && ns%1e6 != 0 {
		q--
	}
	return q
}

// expectation maps a corpus result to the samples weir stores, following
// docs/line-protocol.md: sanitized names, <measurement>_<field> (or
// <measurement> for "value"), string fields as labels of <measurement>_info
// (empty values are absent labels), the bucket as the corpus_case label,
// timestamps in milliseconds rounded down.
func expectation(e *lpcorpus.DecodeCorpusEntry) []corpusPoint {
	var pts []corpusPoint
	for _, p := range e.Output.Result {
		base := map[string]string{"corpus_case": e.Input.Key}
		for _, tg := range p.Tags {
			base[influx.SanitizeLabelName(string(tg.Key))] = string(tg.Value)
		}
		// A line without a timestamp gets the default time truncated to
		// the precision (in weir, the receive time).
		def := e.Input.DefaultTime
		if d := int64(e.Input.Precision.Duration); d > 1 {
			def -= def % d
		}
		now := p.Time == def
		ms := floorDivMs(p.Time)
		if now {
			ms = 0
		}
		var info map[string]string
		for _, f := range p.Fields {
			var v float64
			switch x := f.Value.Interface().(type) {
			case float64:
				v = x
			case int64:
				v = float64(x)
			case uint64:
				v = float64(x)
			case bool:
				if x {
					v = 1
				}
			case string:
				if info == nil {
					info = map[string]string{}
					for k, v := range base {
						info[k] = v
					}
					info["__name__"] = influx.SanitizeMetricName(string(p.Name) + "_info")
				}
				if x != "" {
					info[influx.SanitizeLabelName(string(f.Key))] = x
				}
				continue
			}
			ls := map[string]string{}
			for k, v := range base {
				ls[k] = v
			}
			name := string(p.Name)
			if string(f.Key) != "value" {
				name += "_" + string(f.Key)
			}
			ls["__name__"] = influx.SanitizeMetricName(name)
			pts = append(pts, corpusPoint{series: weirtest.LabelsKey(ls), value: v, ms: ms, now: now})
		}
		if info != nil {
			pts = append(pts, corpusPoint{series: weirtest.LabelsKey(info), value: 1, ms: ms, now: now})
		}
	}
	return pts
}

func precisionParam(p lpcorpus.Precision) string {
	switch p.Duration {
	case time.Microsecond:
		return "us"
	case time.Millisecond:
		return "ms"
	case time.Second:
		return "s"
	}
	return ""
}

// TestLineProtocolCorpus sends every decode case of the InfluxData
// line-protocol corpus to /api/v2/write of one all-in-one weir. Cases the
// corpus says are invalid must get 400; valid ones 204, and then every
// value and timestamp read back through the query API must be what the
// corpus decodes (mapped to series as docs/line-protocol.md says). At least
// 99.5 % of the cases must conform.
func TestLineProtocolCorpus(t *testing.T) {
	corpus, err := lpcorpus.ReadCorpusJSON(corpusFile(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	runtime := filepath.Join(dir, "runtime.yaml")
	// The corpus tests the protocol, not the limits: they are off, and
	// string fields are kept so that their values can be checked too.
	if err := os.WriteFile(runtime, []byte(`
defaults:
  max_future_skew: 0s
  max_labels_per_series: 0
  max_label_name_length: 0
  max_label_value_length: 0
  influx_string_fields: info
  influx_database_label: corpus_case
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(cfg, []byte(`
kafka:
  partitions: 1
sink:
  tsdb_shards: 1
  out_of_order_window: 24h
edge:
  runtime_file: `+runtime+`
`), 0o600); err != nil {
		t.Fatal(err)
	}
	p := weirtest.Start(t, "all", append([]string{"all", "--config=" + cfg}, embeddedArgs(t, filepath.Join(dir, "data"))...)...)
	p.WaitReady(30 * time.Second)

	keys := make([]string, 0, len(corpus.Decode))
	for k := range corpus.Decode {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	cases := make([]*corpusCase, len(keys))
	for i, k := range keys {
		e := corpus.Decode[k]
		c := &corpusCase{entry: e, tenant: "corpus-invalid"}
		if e.Output.Error == "" {
			c.points = expectation(e)
			c.tenant = "corpus-now"
			for _, pt := range c.points {
				if !pt.now {
					c.tenant = eraTenant(pt.ms)
					break
				}
			}
		}
		cases[i] = c
	}

	// Send every case, 8 at a time.
	start := time.Now()
	work := make(chan *corpusCase)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				q := url.Values{"org": {"corpus"}, "bucket": {c.entry.Input.Key}}
				if pp := precisionParam(c.entry.Input.Precision); pp != "" {
					q.Set("precision", pp)
				}
				c.sentFrom = time.Now().UnixMilli()
				res, err := weirtest.PostRaw(p.URL()+"/api/v2/write?"+q.Encode(), []byte(c.entry.Input.Text), map[string]string{"X-Scope-OrgID": c.tenant})
				c.sentTo = time.Now().UnixMilli()
				if err != nil {
					c.status, c.body = -1, err.Error()
					continue
				}
				c.status, c.body = res.Status, res.Body
			}
		}()
	}
	for _, c := range cases {
		work <- c
	}
	close(work)
	wg.Wait()
	sent := time.Since(start)

	// Read back each tenant's samples in one query over its time range.
	byTenant := map[string][]*corpusCase{}
	for _, c := range cases {
		if c.status == 204 && len(c.points) > 0 {
			byTenant[c.tenant] = append(byTenant[c.tenant], c)
		}
	}
	stored := map[string][]weirtest.Point{} // series key → points
	for ten, cs := range byTenant {
		lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
		for _, c := range cs {
			for _, pt := range c.points {
				ms := pt.ms
				if pt.now {
					ms = c.sentFrom - 1000 // a second of precision rounding
					hi = max(hi, c.sentTo)
				}
				lo, hi = min(lo, ms), max(hi, ms)
			}
		}
		// The window (end-range, end] ends at the newest sample: PromQL
		// cannot evaluate past 2262-04-11, where nanoseconds since 1970
		// overflow int64, and the corpus has a sample just there.
		end := time.UnixMilli(hi)
		series, err := weirtest.QueryRawWithHeaders(p.URL(), ten, `{corpus_case=~".+"}`, time.Duration(hi-lo+1)*time.Millisecond, end,
			map[string]string{"X-Read-Consistency": "strong"})
		if err != nil {
			t.Fatalf("reading back tenant %s: %v", ten, err)
		}
		for _, s := range series {
			stored[s.Key()] = append(stored[s.Key()], s.Points...)
		}
	}

	// Judge each case.
	var failures []string
	pass := 0
	for _, c := range cases {
		if why := judge(c, stored); why != "" {
			failures = append(failures, fmt.Sprintf("%s %q: %s", c.entry.Input.Key, abbreviate(string(c.entry.Input.Text)), why))
			continue
		}
		pass++
	}
	pct := 100 * float64(pass) / float64(len(cases))
	t.Logf("line-protocol corpus: %d of %d cases conform (%.2f %%); sent in %s", pass, len(cases), pct, sent.Round(time.Millisecond))
	for i, f := range failures {
		if i == 20 {
			t.Logf("… and %d more", len(failures)-20)
			break
		}
		t.Log("  " + f)
	}
	if pct < 99.5 {
		t.Fatalf("%.2f %% of the corpus conforms, want at least 99.5 %%", pct)
	}
}

// judge says why a case does not conform, or "".
func judge(c *corpusCase, stored map[string][]weirtest.Point) string {
	if c.entry.Output.Error != "" {
		if c.status != 400 {
			return fmt.Sprintf("corpus says invalid (%s), weir answered %d", c.entry.Output.Error, c.status)
		}
		return ""
	}
	if c.status != 204 {
		return fmt.Sprintf("corpus says valid, weir answered %d: %s", c.status, strings.TrimSpace(c.body))
	}
	prec := c.entry.Input.Precision.Duration.Milliseconds()
	for _, pt := range c.points {
		found := false
		for _, sp := range stored[pt.series] {
			if sp.V != pt.value && !(math.IsNaN(sp.V) && math.IsNaN(pt.value)) {
				continue
			}
			if pt.now {
				// The receive time, truncated to the precision.
				from := c.sentFrom
				if prec > 0 {
					from -= from % prec
				}
				if sp.T >= from && sp.T <= c.sentTo {
					found = true
				}
			} else if sp.T == pt.ms {
				found = true
			}
		}
		if !found {
			return fmt.Sprintf("sample %s %v @%d (receive time: %v) not read back; stored %v", pt.series, pt.value, pt.ms, pt.now, stored[pt.series])
		}
	}
	return ""
}

func abbreviate(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return string(bytes.ToValidUTF8([]byte(s), []byte("?")))
}
