package load

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/weir-metrics/weir/loadtest/gen"
	"github.com/weir-metrics/weir/loadtest/internal/promtarget"
	"github.com/weir-metrics/weir/loadtest/report"
)

func testConfig(proto gen.Protocol) Config {
	return Config{
		Name: "test",
		Gen: gen.Options{Seed: 11, Series: 600, BatchSize: 150, Protocol: proto, RunID: "t1",
			ChurnFraction: 0.3, ExplodeFraction: 0.3},
		Rate:           6000, // ten rounds a second
		Duration:       1500 * time.Millisecond,
		Concurrency:    3,
		ChurnInterval:  400 * time.Millisecond,
		MarkerInterval: 200 * time.Millisecond,
		MarkerTimeout:  5 * time.Second,
		RequestTimeout: 10 * time.Second,
		MaxRetries:     3,
		SettleTimeout:  5 * time.Second,
		SampleInterval: 250 * time.Millisecond,
		Verify:         true,
	}
}

func runAgainst(t *testing.T, srv *promtarget.Server, cfg Config) *report.Run {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := Run(context.Background(), cfg, Target{Name: "prometheus-tsdb", WriteURL: srv.URL + "/api/v1/write", QueryURL: srv.URL}, log)
	if err != nil {
		t.Fatal(err)
	}
	if res.Check == nil {
		t.Fatalf("the loss check did not run: %v", res.Failures)
	}
	return res
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestFaithfulTargetPasses: against a target that stores everything, with
// churn and cardinality explosion, every acknowledged sample is found, the
// value sums match, and the run passes.
func TestFaithfulTargetPasses(t *testing.T) {
	for _, proto := range []gen.Protocol{gen.PRW1, gen.PRW2} {
		t.Run(string(proto), func(t *testing.T) {
			srv := promtarget.Start(t, promtarget.Fault{})
			cfg := testConfig(proto)
			if proto == gen.PRW2 {
				// A tiny query budget: the check must split by job and by
				// time window and still add up.
				cfg.Check.Budget = 40
			}
			res := runAgainst(t, srv, cfg)
			c := res.Check
			if !res.OK || !c.OK {
				t.Fatalf("run failed: %s %v %v", c.Summary(), c.Examples, res.Failures)
			}
			if res.SamplesAcked == 0 || c.SamplesFound != c.SamplesAcked || c.SamplesAcked != res.SamplesAcked {
				t.Fatalf("acked %d, checked %d, found %d", res.SamplesAcked, c.SamplesAcked, c.SamplesFound)
			}
			// Churn and explosion must have created series beyond the 600 slots.
			if c.SeriesWritten <= 600 || c.SeriesFound != c.SeriesWritten {
				t.Fatalf("series written %d, found %d", c.SeriesWritten, c.SeriesFound)
			}
			if proto == gen.PRW2 && c.Queries < 4*len(gen.MetricNames()) {
				t.Fatalf("%d queries with a budget of 40 samples", c.Queries)
			}
			if c.ValuesChecked != c.SeriesWritten {
				t.Fatalf("value sums checked for %d of %d series", c.ValuesChecked, c.SeriesWritten)
			}
			if res.EndToEnd.Count == 0 || res.WriteLatency.Count == 0 || len(res.Timeline) < 4 {
				t.Fatalf("no latencies or timeline: %+v %+v %d points", res.EndToEnd, res.WriteLatency, len(res.Timeline))
			}
			// The pacer never sends faster than the target rate (it may be
			// slower on a busy machine).
			if res.AcceptedPerSecond > 6000*1.2 {
				t.Fatalf("accepted %.0f samples/s at a target rate of 6000", res.AcceptedPerSecond)
			}
		})
	}
}

// TestDroppedSampleFails: the target acknowledges every request but drops
// one sample; the check must fail, count exactly one missing sample, and
// name the series and the timestamp.
func TestDroppedSampleFails(t *testing.T) {
	srv := promtarget.Start(t, promtarget.Fault{Metric: "node_cpu_seconds_total", DropNth: 25})
	res := runAgainst(t, srv, testConfig(gen.PRW1))
	c := res.Check
	if res.OK || c.OK {
		t.Fatal("a dropped sample passed the loss check")
	}
	if c.Missing != 1 || c.SeriesShort != 1 || c.Duplicated != 0 || c.SamplesFound != c.SamplesAcked-1 {
		t.Fatalf("want exactly one missing sample: %s", c.Summary())
	}
	if len(srv.Dropped) != 1 {
		t.Fatalf("the target dropped %d samples", len(srv.Dropped))
	}
	d := srv.Dropped[0]
	ex := strings.Join(c.Examples, "\n")
	if !strings.Contains(ex, d.Labels.Get("pod")) || !strings.Contains(ex, fmt.Sprintf("missing at %d", d.T)) {
		t.Fatalf("the examples do not name the dropped sample %v@%d:\n%s", d.Labels, d.T, ex)
	}
}

// TestDuplicatedSampleFails: the target stores one sample twice (the
// second copy 1 ms later); the check must count one duplicate.
func TestDuplicatedSampleFails(t *testing.T) {
	srv := promtarget.Start(t, promtarget.Fault{Metric: "go_goroutines", DuplicateNth: 3})
	res := runAgainst(t, srv, testConfig(gen.PRW2))
	c := res.Check
	if res.OK || c.OK {
		t.Fatal("a duplicated sample passed the loss check")
	}
	if c.Duplicated != 1 || c.SeriesOver != 1 || c.Missing != 0 {
		t.Fatalf("want exactly one duplicate: %s", c.Summary())
	}
	d := srv.Duplicated[0]
	ex := strings.Join(c.Examples, "\n")
	if !strings.Contains(ex, d.Labels.Get("pod")) || !strings.Contains(ex, fmt.Sprintf("at %d", d.T)) {
		t.Fatalf("the examples do not name the extra sample %v@%d:\n%s", d.Labels, d.T, ex)
	}
}

// TestAlteredValueFails: same count, wrong value.
func TestAlteredValueFails(t *testing.T) {
	srv := promtarget.Start(t, promtarget.Fault{Metric: "http_request_duration_seconds_sum", AlterNth: 10})
	res := runAgainst(t, srv, testConfig(gen.PRW1))
	c := res.Check
	if res.OK || c.SeriesValueMismatch != 1 || c.Missing != 0 || c.Duplicated != 0 {
		t.Fatalf("want one value mismatch: %s", c.Summary())
	}
}

// TestUnknownOutcomeIsRetried: a 503 for a request the target did store is
// retried like a remote-write client does; the samples are then
// acknowledged, counted as of unknown outcome, and the run passes.
func TestUnknownOutcomeIsRetried(t *testing.T) {
	srv := promtarget.Start(t, promtarget.Fault{Fail503Nth: 5})
	cfg := testConfig(gen.PRW1)
	cfg.Gen.ExplodeFraction = 0
	res := runAgainst(t, srv, cfg)
	c := res.Check
	if !res.OK || !c.OK {
		t.Fatalf("run failed: %s %v", c.Summary(), c.Examples)
	}
	if res.Errors["503"] != 1 || res.SamplesUnknown != 0 || c.SamplesUnknown != uint64(cfg.Gen.BatchSize) {
		t.Fatalf("want one 503 whose %d samples are of unknown outcome and then acknowledged: errors %v, unknown %d / %d",
			cfg.Gen.BatchSize, res.Errors, res.SamplesUnknown, c.SamplesUnknown)
	}
	if c.SamplesFound != c.SamplesAcked {
		t.Fatalf("found %d of %d", c.SamplesFound, c.SamplesAcked)
	}
	// The target's 503 did not say when to come back: counted apart, so
	// a test of overload can require Retry-After.
	if res.Errors["503 without Retry-After"] != 1 {
		t.Fatalf("a 503 without Retry-After was not counted: %v", res.Errors)
	}
	if res.LoadStarted.IsZero() || res.LoadStarted.After(time.Now()) {
		t.Fatalf("load start %v", res.LoadStarted)
	}
}
