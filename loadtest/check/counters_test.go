package check

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// weirLike serves counters named and labelled as weir's over real HTTP.
type weirLike struct {
	received, written, appended *prometheus.CounterVec
	refused, discarded          *prometheus.CounterVec
	url                         string
}

func newWeirLike(t *testing.T) *weirLike {
	reg := prometheus.NewRegistry()
	w := &weirLike{
		received:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: EdgeReceived}, []string{"tenant", "source"}),
		written:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: EdgeWritten}, []string{"tenant", "source"}),
		refused:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: EdgeRefused}, []string{"tenant", "reason"}),
		appended:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: SinkAppended}, []string{"tenant"}),
		discarded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_sink_samples_discarded_total"}, []string{"tenant", "reason"}),
	}
	reg.MustRegister(w.received, w.written, w.refused, w.appended, w.discarded)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	t.Cleanup(srv.Close)
	w.url = srv.URL
	return w
}

func TestCounterAccounting(t *testing.T) {
	w := newWeirLike(t)
	ctx := context.Background()
	// Another tenant's traffic must not count.
	w.received.WithLabelValues("other", "prw1").Add(1e6)
	before, err := ReadCounters(ctx, nil, []string{w.url}, "loadtest")
	if err != nil {
		t.Fatal(err)
	}
	w.received.WithLabelValues("loadtest", "prw1").Add(1000)
	w.written.WithLabelValues("loadtest", "prw1").Add(990)
	w.refused.WithLabelValues("loadtest", "too_many_labels").Add(10)
	w.appended.WithLabelValues("loadtest").Add(985)
	w.discarded.WithLabelValues("loadtest", "out_of_order").Add(5)
	after, err := ReadCounters(ctx, nil, []string{w.url}, "loadtest")
	if err != nil {
		t.Fatal(err)
	}
	d := after.Sub(before)
	if d[EdgeRefused+"{too_many_labels}"] != 10 || d["weir_sink_samples_discarded_total{out_of_order}"] != 5 {
		t.Fatalf("deltas by reason: %v", d)
	}
	if cc := CheckCounters(d, 990, 0); !cc.OK {
		t.Fatalf("consistent counters failed: %v", cc.Problems)
	}
	// The harness saw more acknowledged than the edge wrote: a loss.
	if cc := CheckCounters(d, 995, 0); cc.OK || !strings.Contains(cc.Problems[0], "edge wrote 990") {
		t.Fatalf("edge writing less than acknowledged passed: %+v", cc)
	}
	// Up to the unknown outcomes, writing more than acknowledged is fine.
	if cc := CheckCounters(d, 980, 10); !cc.OK {
		t.Fatalf("%v", cc.Problems)
	}
	// received != written + refused.
	w.received.WithLabelValues("loadtest", "prw1").Add(1)
	after2, _ := ReadCounters(ctx, nil, []string{w.url}, "loadtest")
	if cc := CheckCounters(after2.Sub(before), 990, 0); cc.OK || !strings.Contains(strings.Join(cc.Problems, ";"), "received 1001") {
		t.Fatalf("received != written + refused passed: %+v", cc)
	}
	// The sink lost a sample without counting it.
	w.received.WithLabelValues("loadtest", "prw1").Add(10)
	w.written.WithLabelValues("loadtest", "prw1").Add(10)
	w.refused.WithLabelValues("loadtest", "too_many_labels").Add(1)
	w.appended.WithLabelValues("loadtest").Add(9)
	after3, _ := ReadCounters(ctx, nil, []string{w.url}, "loadtest")
	cc := CheckCounters(after3.Sub(before), 1000, 0)
	if cc.OK || !strings.Contains(strings.Join(cc.Problems, ";"), "sink appended 994") {
		t.Fatalf("a sample lost between edge and sink passed: %+v", cc)
	}
	// The sink storing more than the edge wrote is a fault (a duplicate),
	// unless the edge answered that many samples 503 for Kafka not
	// acknowledging them in time: those may have landed anyway.
	w.appended.WithLabelValues("loadtest").Add(7)
	after4, _ := ReadCounters(ctx, nil, []string{w.url}, "loadtest")
	cc = CheckCounters(after4.Sub(before), 1000, 0)
	if cc.OK || !strings.Contains(strings.Join(cc.Problems, ";"), "sink appended 1001") {
		t.Fatalf("the sink storing more than the edge wrote passed: %+v", cc)
	}
	w.received.WithLabelValues("loadtest", "prw1").Add(6)
	w.refused.WithLabelValues("loadtest", UnacknowledgedReason).Add(6)
	after5, _ := ReadCounters(ctx, nil, []string{w.url}, "loadtest")
	if cc := CheckCounters(after5.Sub(before), 1000, 0); !cc.OK {
		t.Fatalf("samples of timed-out writes that landed failed the check: %v", cc.Problems)
	}
	w.appended.WithLabelValues("loadtest").Add(1)
	after6, _ := ReadCounters(ctx, nil, []string{w.url}, "loadtest")
	if cc := CheckCounters(after6.Sub(before), 1000, 0); cc.OK {
		t.Fatal("the sink storing more than written plus timed-out writes passed")
	}
	// A target without weir's counters is not checked.
	if CheckCounters(Counters{}, 5, 0) != nil {
		t.Fatal("empty counters were checked")
	}
}
