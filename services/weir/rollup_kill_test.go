package main

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"

	"github.com/weir-metrics/weir/internal/weirtest"
)

// TestRollupKillAndRecompute runs broker, edge, sink and stream as
// separate processes and SIGKILLs the stream process, which runs the
// rollup stage, at random moments while data flows. Afterwards the
// Parquet files must hold exactly the rows a clean recomputation from the
// series topic gives: no window missing, none twice, every value equal.
func TestRollupKillAndRecompute(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "bucket:\n  dir: "+filepath.Join(dir, "bucket")+"\n")
	kafkaAddr := weirtest.FreeAddr(t)
	common := func(sub string) []string {
		return []string{"--config=" + cfg, "--data-dir=" + filepath.Join(dir, sub), "--kafka.embedded.addr=" + kafkaAddr}
	}
	broker := weirtest.Start(t, "broker", append([]string{"broker"}, common("broker")...)...)
	broker.WaitReady(30 * time.Second)
	edge := weirtest.Start(t, "edge", append([]string{"edge"}, common("edge")...)...)
	sink := weirtest.Start(t, "sink", append([]string{"sink", "--sink.instance-id=k1"}, common("sink")...)...)
	stream := weirtest.Start(t, "stream", append([]string{"stream", "--stream.instance-id=s1"}, common("stream")...)...)
	for _, p := range []*weirtest.Process{edge, sink, stream} {
		p.WaitReady(30 * time.Second)
	}
	const tenant = "team-k"

	// Send continuously: 16 gauges and 16 counters (resetting now and
	// then), every request retried once in a while.
	var (
		stop    atomic.Bool
		sent    atomic.Int64
		wg      sync.WaitGroup
		sendErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(5, 6))
		counters := make([]float64, 16)
		for !stop.Load() {
			ts := time.Now().UnixMilli()
			req := &prompb.WriteRequest{}
			for i := range 16 {
				counters[i] += float64(rng.IntN(10))
				if rng.IntN(200) == 0 {
					counters[i] = 0
				}
				req.Timeseries = append(req.Timeseries,
					prompb.TimeSeries{Labels: label("__name__", "kill_gauge", "i", fmt.Sprint(i)), Samples: []prompb.Sample{{Value: rng.ExpFloat64() * 100, Timestamp: ts}}},
					prompb.TimeSeries{Labels: label("__name__", "kill_requests_total", "i", fmt.Sprint(i)), Samples: []prompb.Sample{{Value: counters[i], Timestamp: ts}}},
				)
			}
			for n := 0; n < 1+boolInt(rng.IntN(10) == 0); n++ {
				res, err := weirtest.WriteV1(edge.URL(), tenant, req)
				if err := weirtest.MustWrite(res, err); err != nil {
					sendErr = err
					return
				}
			}
			sent.Add(1)
			time.Sleep(50 * time.Millisecond)
		}
	}()

	// Kill the stream process at random moments.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := 0
	deadline := time.Now().Add(22 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(1000+rng.IntN(2500)) * time.Millisecond)
		stream.Kill()
		kills++
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		stream.Restart()
	}
	stop.Store(true)
	wg.Wait()
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	stream.WaitReady(30 * time.Second)
	if kills < 6 || sent.Load() < 200 {
		t.Fatalf("only %d kills and %d requests: the test did not exercise restarts", kills, sent.Load())
	}
	// The stage is ready once its partitions are assigned; it restores
	// their checkpoints right after.
	weirtest.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(stream.Logs(), "resuming rollups") {
			return fmt.Errorf("the restarted stage never resumed from a checkpoint:\n%s", stream.Logs())
		}
		return nil
	})

	// Recompute from the series topic, once it holds everything the edge
	// took, and wait for the files to hold the same rows.
	want := weirtest.RecomputeRollups(t, kafkaAddr, tenant, []time.Duration{2 * time.Second, 10 * time.Second}, time.Second)
	weirtest.CompareRollups(t, filepath.Join(dir, "bucket"), want, 40*time.Second)
	t.Logf("%d kills, %d requests, %d windows compared", kills, sent.Load(), len(want))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
