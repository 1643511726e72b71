package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
	"github.com/weir-metrics/weir/pkg/rollup"
	"github.com/weir-metrics/weir/pkg/rollupparquet"
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
	if !strings.Contains(stream.Logs(), "resuming rollups") {
		t.Fatalf("the restarted stage never resumed from a checkpoint:\n%s", stream.Logs())
	}

	// Recompute from the series topic, once it holds everything the edge
	// took, and wait for the files to hold the same rows.
	want := recomputeRollups(t, kafkaAddr, tenant, cfg)
	bucketDir := filepath.Join(dir, "bucket")
	var got []weirtest.RollupRow
	weirtest.Eventually(t, 40*time.Second, func() error {
		rows, err := weirtest.ReadRollupFiles(bucketDir)
		if err != nil {
			return err
		}
		got = rows
		have := map[string]bool{}
		for _, r := range rows {
			have[r.Key()] = true
		}
		missing := 0
		for k := range want {
			if !have[k] {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d recomputed windows not in the files yet", missing, len(want))
		}
		return nil
	})
	seen := map[string]bool{}
	for _, r := range got {
		k := r.Key()
		if seen[k] {
			t.Errorf("window %s is in the files twice", k)
		}
		seen[k] = true
		w, ok := want[k]
		if !ok {
			t.Errorf("window %s is in the files but not in the recomputation", k)
			continue
		}
		if diff := diffRow(r, w); diff != "" {
			t.Errorf("window %s differs from the recomputation: %s", k, diff)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d rows in the files, %d recomputed", len(got), len(want))
	}
	t.Logf("%d kills, %d requests, %d windows compared", kills, sent.Load(), len(want))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// recomputeRollups reads the tenant's whole series topic and computes its
// rollups from scratch with the same specs, closing every window at the
// end. Rows are keyed like weirtest.RollupRow.Key.
func recomputeRollups(t *testing.T, kafkaAddr, tenant, cfgFile string) map[string]rollupparquet.FileRow {
	t.Helper()
	ctx := weirtest.Context(t)
	topic := "weir." + tenant + ".series"
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers come back too, so positions reach the end.
		kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// Wait until the stream stage has produced all the edge took.
	adm := kadm.NewClient(cl)
	weirtest.Eventually(t, 30*time.Second, func() error {
		lag, err := adm.Lag(ctx, "weir-stream")
		if err != nil {
			return err
		}
		if l := lag["weir-stream"].Lag.Total(); l != 0 {
			return fmt.Errorf("the stream stage lags %d records", l)
		}
		return nil
	})
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := rollup.DefaultSpecs([]time.Duration{2 * time.Second, 10 * time.Second}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	parts := map[int32]*rollup.Partition{}
	pos := map[int32]int64{}
	done := func() bool {
		ok := true
		ends.Each(func(o kadm.ListedOffset) {
			if pos[o.Partition] < o.Offset {
				ok = false
			}
		})
		return ok
	}
	var req prw.Request
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for !done() {
		fs := cl.PollFetches(fctx)
		if fctx.Err() != nil {
			t.Fatalf("reading %s: %v (positions %v, ends %v)", topic, fctx.Err(), pos, ends)
		}
		fs.EachRecord(func(r *kgo.Record) {
			pos[r.Partition] = r.Offset + 1
			if r.Attrs.IsControl() {
				return
			}
			p := parts[r.Partition]
			if p == nil {
				p, err = rollup.NewPartition(rollup.Options{Tenant: tenant, Partition: r.Partition, Specs: specs, SketchRelativeAccuracy: 0.01}, nil)
				if err != nil {
					t.Fatal(err)
				}
				parts[r.Partition] = p
			}
			meta, err := record.ParseHeaders(r.Headers)
			if err != nil {
				t.Fatal(err)
			}
			req.Reset()
			if err := record.Decode(meta, r.Value, &req); err != nil {
				t.Fatal(err)
			}
			p.Process(r.Offset, r.Timestamp.UnixMilli(), req.Series)
		})
	}
	out := map[string]rollupparquet.FileRow{}
	for _, p := range parts {
		p.Flush()
		for _, r := range p.TakeRows() {
			fr, err := rollupparquet.ToFileRow(&r)
			if err != nil {
				t.Fatal(err)
			}
			k := weirtest.RollupRow{Tenant: tenant, Rollup: fr.Rollup, Resolution: rollupparquet.ResolutionName(r.ResolutionMs),
				WindowStart: fr.WindowStart, SeriesHash: fr.SeriesHash, SourcePartition: fr.SourcePartition}.Key()
			out[k] = fr
		}
	}
	return out
}

// diffRow compares a row read back by Arrow with a recomputed one.
func diffRow(g weirtest.RollupRow, w rollupparquet.FileRow) string {
	var d []string
	cmp := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			d = append(d, fmt.Sprintf("%s %v != %v", name, a, b))
		}
	}
	cmp("metric", g.Metric, w.Metric)
	cmp("labels", g.Labels, w.Labels)
	cmp("window_end", g.WindowEnd, w.WindowEnd)
	cmp("kind", g.Kind, w.Kind)
	cmp("count", g.Count, w.Count)
	cmp("sum", g.Sum, w.Sum)
	cmp("min", g.Min, w.Min)
	cmp("max", g.Max, w.Max)
	cmp("first", g.First, w.First)
	cmp("last", g.Last, w.Last)
	cmp("first_timestamp", g.FirstTS, w.FirstTimestamp)
	cmp("last_timestamp", g.LastTS, w.LastTimestamp)
	cmp("increase", g.Increase, w.Increase)
	cmp("resets", g.Resets, w.Resets)
	cmp("histogram_count", g.HistogramCount, w.HistogramCount)
	if !bytes.Equal(g.Histogram, w.Histogram) {
		d = append(d, "histogram bytes differ")
	}
	if !bytes.Equal(g.Sketch, w.Sketch) {
		d = append(d, "sketch bytes differ")
	}
	return strings.Join(d, "; ")
}
