package weirtest

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
	"github.com/weir-metrics/weir/pkg/rollup"
	"github.com/weir-metrics/weir/pkg/rollupparquet"
)

// RecomputeRollups reads a tenant's whole series topic, once the stream
// stage (group weir-stream) has processed everything in the raw topic, and
// computes its default rollup at the given resolutions and lateness from
// scratch, closing every window at the end: what the rollup files must
// hold after any number of crashes. Rows are keyed like RollupRow.Key.
func RecomputeRollups(t testing.TB, kafkaAddr, tenant string, resolutions []time.Duration, lateness time.Duration) map[string]rollupparquet.FileRow {
	t.Helper()
	ctx := Context(t)
	topic := "weir." + tenant + ".series"
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	Eventually(t, time.Minute, func() error {
		lag, err := adm.Lag(ctx, "weir-stream")
		if err != nil {
			return err
		}
		if l := lag["weir-stream"].Lag.Total(); l != 0 {
			return fmt.Errorf("the stream stage lags %d records", l)
		}
		return nil
	})
	specs, err := rollup.DefaultSpecs(resolutions, lateness)
	if err != nil {
		t.Fatal(err)
	}
	parts := map[int32]*rollup.Partition{}
	var req prw.Request
	ReadCommitted(t, kafkaAddr, topic, func(r *kgo.Record) {
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
	out := map[string]rollupparquet.FileRow{}
	for _, p := range parts {
		p.Flush()
		for _, r := range p.TakeRows() {
			fr, err := rollupparquet.ToFileRow(&r)
			if err != nil {
				t.Fatal(err)
			}
			k := RollupRow{Tenant: tenant, Rollup: fr.Rollup, Resolution: rollupparquet.ResolutionName(r.ResolutionMs),
				WindowStart: fr.WindowStart, SeriesHash: fr.SeriesHash, SourcePartition: fr.SourcePartition}.Key()
			out[k] = fr
		}
	}
	return out
}

// CompareRollups waits (up to timeout) until the files below bucketDir
// hold a row for every recomputed window, then checks that they hold each
// exactly once and equal to the recomputation, and nothing else. It
// returns the number of windows compared.
func CompareRollups(t testing.TB, bucketDir string, want map[string]rollupparquet.FileRow, timeout time.Duration) int {
	t.Helper()
	var got []RollupRow
	Eventually(t, timeout, func() error {
		rows, err := ReadRollupFiles(bucketDir)
		if err != nil {
			return err
		}
		got = rows
		have := map[string]bool{}
		for _, r := range rows {
			have[r.Key()] = true
		}
		missing := 0
		var examples []string
		for k, w := range want {
			if !have[k] {
				missing++
				if len(examples) < 3 {
					examples = append(examples, fmt.Sprintf("%s (%s %v, count %d)", k, w.Metric, w.Labels, w.Count))
				}
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d recomputed windows not in the files yet, e.g. %s", missing, len(want), strings.Join(examples, "; "))
		}
		return nil
	})
	seen := map[string]bool{}
	bad := 0
	for _, r := range got {
		k := r.Key()
		if seen[k] {
			t.Errorf("window %s is in the files twice", k)
			bad++
		}
		seen[k] = true
		w, ok := want[k]
		if !ok {
			t.Errorf("window %s is in the files but not in the recomputation", k)
			bad++
			continue
		}
		if diff := DiffRollupRow(r, w); diff != "" {
			t.Errorf("window %s differs from the recomputation: %s", k, diff)
			bad++
		}
		if bad > 20 {
			t.Fatal("too many differences")
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d rows in the files, %d recomputed", len(got), len(want))
	}
	return len(want)
}

// DiffRollupRow compares a row read back by Arrow with a recomputed one;
// empty means equal.
func DiffRollupRow(g RollupRow, w rollupparquet.FileRow) string {
	var d []string
	cmp := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) && !bothNaN(a, b) {
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

func bothNaN(a, b any) bool {
	x, ok1 := a.(*float64)
	y, ok2 := b.(*float64)
	return ok1 && ok2 && x != nil && y != nil && math.IsNaN(*x) && math.IsNaN(*y)
}

// ReadCommitted reads topic from its start to its last stable offsets as a
// read_committed consumer, handing fn every record in offset order per
// partition, transaction markers included (so that positions reach the
// end).
func ReadCommitted(t testing.TB, kafkaAddr, topic string, fn func(*kgo.Record)) {
	t.Helper()
	ctx := Context(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
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
	fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for !done() {
		fs := cl.PollFetches(fctx)
		if fctx.Err() != nil {
			t.Fatalf("reading %s: %v (positions %v)", topic, fctx.Err(), pos)
		}
		fs.EachRecord(func(r *kgo.Record) {
			pos[r.Partition] = r.Offset + 1
			fn(r)
		})
	}
}
