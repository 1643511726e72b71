package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/kafka"
)

// TestStreamExactlyOnceUnderSIGKILL runs broker, edge and stream as
// separate processes of the built binary with a pipeline that relabels,
// drops and budgets, kills the stream worker with SIGKILL at random
// moments while a writer sends known data, restarts it each time, and
// then reads the series topic record by record (read committed): every
// sample of the raw topic that the pipeline admits is there exactly once
// and in order, and the budget held across every kill — a restarted
// worker that forgot what it admitted would let new series in beyond it.
func TestStreamExactlyOnceUnderSIGKILL(t *testing.T) {
	const (
		tenant  = "kill"
		stable  = 200 // series sent every round
		growth  = 10  // new series per round
		budget  = 300 // max_series
		rounds  = 40
		minKill = 300 * time.Millisecond
		maxKill = 900 * time.Millisecond
	)
	dir := t.TempDir()
	pipes := filepath.Join(dir, "pipelines")
	if err := os.MkdirAll(pipes, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pipes, "default.yaml"), []byte(fmt.Sprintf(`
relabel:
  - source_labels: [__name__]
    regex: kill_debug
    action: drop
  - source_labels: [__name__]
    regex: kill_stable
    target_label: stage
    replacement: relabeled
budget:
  max_series: %d
`, budget)), 0o644); err != nil {
		t.Fatal(err)
	}
	kafkaAddr := weirtest.FreeAddr(t)
	common := func(sub string) []string {
		return []string{"--data-dir=" + filepath.Join(dir, sub), "--kafka.embedded.addr=" + kafkaAddr, "--kafka.partitions=4"}
	}
	broker := weirtest.Start(t, "broker", append([]string{"broker"}, common("broker")...)...)
	broker.WaitReady(30 * time.Second)
	edge := weirtest.Start(t, "edge", append([]string{"edge"}, common("edge")...)...)
	stream := weirtest.Start(t, "stream", append([]string{"stream", "--stream.instance-id=s1", "--stream.pipelines-dir=" + pipes}, common("stream")...)...)
	edge.WaitReady(30 * time.Second)
	stream.WaitReady(30 * time.Second)

	// The writer: one stable request and one growing request per round,
	// retried until Kafka has them (a 429 for the growing one means the
	// budget is full and the edge knows it: the sender drops them).
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	var (
		wg        sync.WaitGroup
		writeErr  error
		refused   int
		writeDone = make(chan struct{})
	)
	send := func(req *prompb.WriteRequest, growing bool) error {
		for attempt := 0; ; attempt++ {
			res, err := weirtest.WriteV1(edge.URL(), tenant, req)
			switch {
			case err == nil && res.Status == http.StatusNoContent:
				return nil
			case err == nil && res.Status == http.StatusTooManyRequests && growing:
				refused++
				return nil
			case attempt > 50:
				return fmt.Errorf("write failed 50 times: %v %d %s", err, res.Status, res.Body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(writeDone)
		for r := 0; r < rounds; r++ {
			ts := t0 + int64(r)*1000
			st := &prompb.WriteRequest{}
			for i := 0; i < stable; i++ {
				st.Timeseries = append(st.Timeseries, prompb.TimeSeries{
					Labels:  []prompb.Label{{Name: "__name__", Value: "kill_stable"}, {Name: "i", Value: fmt.Sprint(i)}},
					Samples: []prompb.Sample{{Value: float64(r), Timestamp: ts}},
				})
			}
			for i := 0; i < 5; i++ {
				st.Timeseries = append(st.Timeseries, prompb.TimeSeries{
					Labels:  []prompb.Label{{Name: "__name__", Value: "kill_debug"}, {Name: "i", Value: fmt.Sprint(i)}},
					Samples: []prompb.Sample{{Value: float64(r), Timestamp: ts}},
				})
			}
			gr := &prompb.WriteRequest{}
			for i := 0; i < growth; i++ {
				gr.Timeseries = append(gr.Timeseries, prompb.TimeSeries{
					Labels:  []prompb.Label{{Name: "__name__", Value: "kill_growing"}, {Name: "n", Value: fmt.Sprint(r*growth + i)}},
					Samples: []prompb.Sample{{Value: float64(r), Timestamp: ts}},
				})
			}
			if err := send(st, false); err != nil {
				writeErr = err
				return
			}
			if err := send(gr, true); err != nil {
				writeErr = err
				return
			}
			time.Sleep(150 * time.Millisecond)
		}
	}()

	// The killer.
	kills := 0
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for done := false; !done; {
		select {
		case <-writeDone:
			done = true
		case <-time.After(minKill + time.Duration(rng.Int64N(int64(maxKill-minKill)))):
			if err := syscall.Kill(stream.Pid(), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			stream.Kill() // waits until it is gone
			kills++
			stream.Restart()
		}
	}
	wg.Wait()
	if writeErr != nil {
		t.Fatal(writeErr)
	}
	stream.WaitReady(30 * time.Second)
	t.Logf("%d SIGKILLs of the stream worker during %d rounds; %d growing requests answered 429", kills, rounds, refused)
	if kills < 5 {
		t.Fatalf("only %d kills happened", kills)
	}

	// Wait until the worker committed everything the raw topic holds.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers := []string{kafkaAddr}
	rawTopic := kafka.Topic("weir", tenant, kafka.KindRaw)
	weirtest.Eventually(t, 60*time.Second, func() error { return caughtUp(ctx, brokers, rawTopic) })

	raw, err := weirtest.ReadTopic(ctx, brokers, rawTopic)
	if err != nil {
		t.Fatal(err)
	}
	out, err := weirtest.ReadTopic(ctx, brokers, kafka.Topic("weir", tenant, kafka.KindSeries))
	if err != nil {
		t.Fatal(err)
	}

	type sample struct {
		series string
		ts     int64
	}
	// What the pipeline makes of each raw sample.
	expect := map[sample]int{}
	rawGrowing := map[string]bool{}
	for _, s := range raw {
		ls := map[string]string{}
		for k, v := range s.Labels {
			ls[k] = v
		}
		switch ls["__name__"] {
		case "kill_debug":
			continue
		case "kill_stable":
			ls["stage"] = "relabeled"
		case "kill_growing":
			rawGrowing[s.Series] = true
		}
		expect[sample{weirtest.LabelsKey(ls), s.Timestamp}]++
	}
	got := map[sample]int{}
	last := map[string]int64{}
	series := map[string]bool{}
	for _, s := range out {
		k := sample{s.Series, s.Timestamp}
		got[k]++
		series[s.Series] = true
		if s.Labels["__name__"] == "kill_debug" {
			t.Fatalf("a dropped series reached the series topic: %s", s.Series)
		}
		if prev, ok := last[s.Series]; ok && s.Timestamp <= prev {
			t.Fatalf("series %s out of order or duplicated: %d after %d", s.Series, s.Timestamp, prev)
		}
		last[s.Series] = s.Timestamp
	}
	for k, n := range got {
		if n != 1 {
			t.Fatalf("sample %v is %d times in the series topic", k, n)
		}
		if expect[k] == 0 {
			t.Fatalf("sample %v is in the series topic but not in the raw topic", k)
		}
	}
	// Every stable sample is admitted, exactly once.
	stableOut := 0
	for k, n := range expect {
		if n != 1 {
			t.Fatalf("the writer's sample %v is %d times in the raw topic", k, n)
		}
		if metricOf(k.series) != "kill_stable" {
			continue
		}
		if got[k] != 1 {
			t.Fatalf("admitted sample %v is %d times in the series topic", k, got[k])
		}
		stableOut++
	}
	if stableOut != rounds*stable {
		t.Fatalf("%d stable samples in the series topic, want %d", stableOut, rounds*stable)
	}
	// The budget held across every kill, and was reached.
	if len(series) > budget {
		t.Fatalf("%d series admitted, budget %d: a restarted worker forgot what it had admitted", len(series), budget)
	}
	if len(rawGrowing) <= budget-stable || len(series) < budget-growth {
		t.Fatalf("budget not exercised: %d growing series sent, %d series admitted", len(rawGrowing), len(series))
	}
	t.Logf("raw: %d samples; series topic: %d samples of %d series (budget %d)", len(raw), len(out), len(series), budget)
}

func metricOf(key string) string {
	// Keys are {__name__="x",...}: labels sorted, __name__ first here.
	const p = `{__name__="`
	if len(key) < len(p) || key[:len(p)] != p {
		return ""
	}
	rest := key[len(p):]
	for i := 0; i < len(rest); i++ {
		if rest[i] == '"' {
			return rest[:i]
		}
	}
	return ""
}

// caughtUp reports whether the stream group committed the end of every
// partition of topic.
func caughtUp(ctx context.Context, brokers []string, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return err
	}
	committed, err := adm.FetchOffsets(ctx, "weir-stream")
	if err != nil {
		return err
	}
	var behind error
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := committed.Lookup(topic, o.Partition)
		if o.Offset > 0 && (!ok || c.At < o.Offset) {
			behind = fmt.Errorf("partition %d: committed %d of %d", o.Partition, c.At, o.Offset)
		}
	})
	return behind
}
