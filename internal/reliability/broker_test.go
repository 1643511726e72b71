package reliability

import (
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/kafka"
)

// TestBrokerDownUnderLoad — scenario: the four-process topology under a
// steady 20k samples/s; the broker process is killed (SIGKILL) and stays
// down for a while, is restarted, and later hangs (SIGSTOP: connections
// open, nothing answered) for as long before it resumes (SIGCONT).
// Duration: 8 s per outage in about 30 s of load (make soak: 3 min per
// outage). Checks: while the broker is away the edge acknowledges nothing
// and answers 503 with Retry-After, every write within
// kafka.produce_timeout (no write waits longer, none times out at the
// harness); the edge's peak RSS stays bounded; ingest resumes by itself
// within seconds of the broker's return; and afterwards the loss check and
// weir's own counters (edge received = written + refused, the sink stored
// what the edge wrote) pass.
func TestBrokerDownUnderLoad(t *testing.T) {
	outage := length(8*time.Second, 3*time.Minute)
	settle := 6 * time.Second
	top := startTopology(t, "", nil)
	d := 3*time.Second + 2*(outage+settle)
	load := weirtest.StartLoad(t, harness(top.edge.URL(), top.sink.URL(), d, 20000,
		"-metrics-url", top.metricsURLs(), "-pid", "edge="+strconv.Itoa(top.edge.Pid()))...)
	load.WaitLoadStarted(time.Minute)

	time.Sleep(3 * time.Second)
	killed := time.Now()
	top.broker.Kill()
	time.Sleep(outage)
	top.broker.Restart()
	back1 := time.Now()
	time.Sleep(settle)
	hung := time.Now()
	if err := syscall.Kill(top.broker.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(outage)
	if err := syscall.Kill(top.broker.Pid(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	back2 := time.Now()

	run := load.Wait(10 * time.Minute)
	requireLossCheck(t, run)
	if run.Counters == nil || !run.Counters.OK {
		t.Fatalf("weir's counters do not account for every sample: %+v", run.Counters)
	}
	requireRetryAfter(t, run)
	if run.Errors["503"] == 0 {
		t.Fatalf("no 503 during the outages: %v", run.Errors)
	}
	if run.Errors["timeout"] > 0 || run.WriteLatency.Max > (produceTimeout+time.Second).Seconds()*1000 {
		t.Fatalf("a write was not answered within kafka.produce_timeout (%s): max %.0f ms, %d harness timeouts", produceTimeout, run.WriteLatency.Max, run.Errors["timeout"])
	}
	// Nothing is acknowledged while the broker is away (a second after it
	// left, for what was in flight).
	for _, o := range [][2]time.Time{{killed, back1}, {hung, back2}} {
		if n := run.AcceptedBetween(o[0].Add(time.Second), o[1]); n > 0 {
			t.Fatalf("%.0f samples acknowledged while the broker was away (%s–%s)", n, o[0].Format(time.TimeOnly), o[1].Format(time.TimeOnly))
		}
	}
	var resumed []time.Duration
	for _, back := range []time.Time{back1, back2} {
		first := run.FirstAcceptedAfter(back)
		if first.IsZero() || first.Sub(back) > 20*time.Second {
			t.Fatalf("ingest did not resume within 20s of the broker's return at %s (first acknowledgement %s)", back.Format(time.TimeOnly), first.Format(time.TimeOnly))
		}
		resumed = append(resumed, first.Sub(back).Round(100*time.Millisecond))
	}
	rss := run.PeakRSS("edge")
	if rss == 0 || rss > 256<<20 {
		t.Fatalf("edge peak RSS %s during the outages", mib(rss))
	}
	report(t, figures{
		"outage_seconds": outage.Seconds(), "load_seconds": run.Seconds, "samples_acked": run.SamplesAcked,
		"samples_unknown": run.SamplesUnknown, "errors": run.Errors, "write_max_ms": run.WriteLatency.Max,
		"resumed_after": []string{resumed[0].String(), resumed[1].String()}, "edge_peak_rss": mib(rss),
		"counter_deltas": run.Counters.Deltas,
	})
}

// TestProduceFaultsUnderLoad — scenario: edge, stream and sink processes
// against a Kafka-protocol broker (kfake) running inside the test, so
// that its control hooks can fail and delay the edge's produce requests,
// under a steady 10k samples/s: first every produce to the raw topic
// fails with a retriable error (NOT_ENOUGH_REPLICAS), then with a fatal
// one (UNKNOWN_SERVER_ERROR), then every produce request is held 3 s,
// longer than kafka.produce_timeout. Duration: 5 s per fault in about
// 40 s of load (make soak: 1 min per fault). Checks: the faults hit
// produce requests; writes get 503 with Retry-After within
// kafka.produce_timeout and none is acknowledged during the error
// phases; ingest resumes by itself; the loss check and weir's counters
// pass.
func TestProduceFaultsUnderLoad(t *testing.T) {
	phase := length(5*time.Second, time.Minute)
	settle := 4 * time.Second
	dir := t.TempDir()
	cfg := config.Default()
	cfg.DataDir = filepath.Join(dir, "broker")
	cfg.Kafka.Embedded.Addr = "127.0.0.1:0"
	cfg.Kafka.Partitions = 4
	b, err := kafka.StartBroker(&cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	c := b.Cluster()
	bucket := filepath.Join(dir, "bucket")
	conf := writeFile(t, filepath.Join(dir, "weir.yaml"), baseConfig+"bucket:\n  dir: "+bucket+"\n")
	args := func(name string, more ...string) []string {
		return append(append([]string{name}, more...), "--config="+conf, "--data-dir="+filepath.Join(dir, name), "--kafka.embedded.addr="+b.Addr())
	}
	edge := weirtest.Start(t, "edge", args("edge")...)
	stream := weirtest.Start(t, "stream", args("stream", "--stream.instance-id=s1")...)
	sink := weirtest.Start(t, "sink", args("sink", "--sink.instance-id=k1")...)
	for _, p := range []*weirtest.Process{edge, stream, sink} {
		p.WaitReady(30 * time.Second)
	}
	// The load runs on for 10 s after the last fault (plus the time the
	// harness takes to see its first write), so that recovery shows.
	d := 3*time.Second + 3*(phase+settle) + 10*time.Second
	load := weirtest.StartLoad(t, harness(edge.URL(), sink.URL(), d, 10000,
		"-metrics-url", edge.URL()+"/metrics,"+stream.URL()+"/metrics,"+sink.URL()+"/metrics")...)
	load.WaitLoadStarted(time.Minute)
	raw := kafka.Topic("weir", tenant, kafka.KindRaw)

	time.Sleep(3 * time.Second)
	var errPhases [][2]time.Time
	hits := map[string]int{}
	for _, f := range []struct {
		name string
		err  *kerr.Error
	}{{"retriable", kerr.NotEnoughReplicas}, {"fatal", kerr.UnknownServerError}} {
		start := time.Now()
		h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: raw, Err: f.err, Count: -1})
		time.Sleep(phase)
		h.Remove()
		errPhases = append(errPhases, [2]time.Time{start, time.Now()})
		hits[f.name] = h.Hits()
		time.Sleep(settle)
	}
	var delaying atomic.Bool
	var delayed atomic.Int64
	delaying.Store(true)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if !delaying.Load() {
			c.DropControl()
			return nil, nil, false
		}
		delayed.Add(1)
		c.SleepControl(func() { time.Sleep(3 * time.Second) })
		return nil, nil, false
	})
	delayStart := time.Now()
	time.Sleep(phase)
	delaying.Store(false)
	delayEnd := time.Now()
	hits["delayed"] = int(delayed.Load())

	run := load.Wait(10 * time.Minute)
	requireLossCheck(t, run)
	if run.Counters == nil || !run.Counters.OK {
		t.Fatalf("weir's counters do not account for every sample: %+v", run.Counters)
	}
	requireRetryAfter(t, run)
	for name, n := range hits {
		if n == 0 {
			t.Fatalf("the %s fault hit no produce request: %v", name, hits)
		}
	}
	if run.Errors["503"] == 0 {
		t.Fatalf("no 503 while produce requests failed: %v", run.Errors)
	}
	if run.Errors["timeout"] > 0 || run.WriteLatency.Max > (produceTimeout+time.Second).Seconds()*1000 {
		t.Fatalf("a write was not answered within kafka.produce_timeout (%s): max %.0f ms", produceTimeout, run.WriteLatency.Max)
	}
	for _, p := range errPhases {
		if n := run.AcceptedBetween(p[0].Add(time.Second), p[1]); n > 0 {
			t.Fatalf("%.0f samples acknowledged while every produce failed (%s–%s)", n, p[0].Format(time.TimeOnly), p[1].Format(time.TimeOnly))
		}
	}
	if first := run.FirstAcceptedAfter(delayEnd.Add(3 * time.Second)); first.IsZero() {
		t.Fatal("ingest did not resume after the delays")
	}
	report(t, figures{
		"phase_seconds": phase.Seconds(), "load_seconds": run.Seconds, "fault_hits": hits, "samples_acked": run.SamplesAcked,
		"samples_unknown": run.SamplesUnknown, "errors": run.Errors, "write_max_ms": run.WriteLatency.Max,
		"accepted_during_delays": run.AcceptedBetween(delayStart, delayEnd), "counter_deltas": run.Counters.Deltas,
	})
}
