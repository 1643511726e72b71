package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/backfill"
)

// TestBackfillDayOfHistory backfills a day of data behind live data, in
// each file format (OpenMetrics, remote-write, line protocol), and reads
// all of it back through the query API.
func TestBackfillDayOfHistory(t *testing.T) {
	dir := t.TempDir()
	kafkaAddr := weirtest.FreeAddr(t)
	args := []string{"--data-dir=" + filepath.Join(dir, "weir"), "--kafka.embedded.addr=" + kafkaAddr}
	env := []string{"WEIR_SINK_OUT_OF_ORDER_WINDOW=48h"}
	p := weirtest.StartWithEnv(t, "all", env, append([]string{"all"}, args...)...)
	p.WaitReady(30 * time.Second)

	// Live data first, so the history lands behind the head.
	now := time.Now().Truncate(time.Minute)
	live := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "history_om"}, {Name: "room", Value: "a"}},
		Samples: []prompb.Sample{{Value: -1, Timestamp: now.UnixMilli()}},
	}}}
	if err := weirtest.MustWrite(weirtest.WriteV1(p.URL(), "hist", live)); err != nil {
		t.Fatal(err)
	}

	start := now.Add(-25 * time.Hour)
	const step = 5 * time.Minute
	points := int(24 * time.Hour / step)
	var om strings.Builder
	om.WriteString("# TYPE history_om gauge\n")
	var prwFile []byte
	var lp strings.Builder
	for i := 0; i < points; i++ {
		ts := start.Add(time.Duration(i) * step)
		for _, room := range []string{"a", "b"} {
			fmt.Fprintf(&om, "history_om{room=%q} %d %d\n", room, i, ts.UnixMilli()/1000)
		}
		fmt.Fprintf(&lp, "history_influx,room=a value=%d %d\n", 3*i, ts.UnixNano())
		req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  []prompb.Label{{Name: "__name__", Value: "history_prw"}, {Name: "room", Value: "a"}},
			Samples: []prompb.Sample{{Value: float64(i) * 2, Timestamp: ts.UnixMilli()}},
		}}}
		body, _ := req.Marshal()
		prwFile = backfill.AppendPRW(prwFile, snappy.Encode(nil, body))
	}
	om.WriteString("# EOF\n")
	omPath := filepath.Join(dir, "day.om")
	prwPath := filepath.Join(dir, "day.prw")
	lpPath := filepath.Join(dir, "day.lp")
	if err := os.WriteFile(lpPath, []byte(lp.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(omPath, []byte(om.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(prwPath, prwFile, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{"--format=openmetrics", omPath},
		{"--format=prw", "--prw-version=1", prwPath},
		{"--format=influx", lpPath},
	} {
		out, err := weirtest.Run(t, nil, append(append([]string{"backfill", "--tenant=hist", "--max-age=72h"}, args...), c...)...)
		if err != nil {
			t.Fatalf("weir backfill %v: %v\n%s", c, err, out)
		}
		t.Logf("weir backfill %v:\n%s", c, out)
		if !strings.Contains(out, "written to weir.hist.raw") {
			t.Fatalf("backfill output does not report what it wrote:\n%s", out)
		}
	}

	want := map[string]int{
		`{__name__="history_om",room="a"}`:     points + 1,
		`{__name__="history_om",room="b"}`:     points,
		`{__name__="history_prw",room="a"}`:    points,
		`{__name__="history_influx",room="a"}`: points,
	}
	weirtest.Eventually(t, 60*time.Second, func() error {
		series, err := weirtest.QueryRaw(p.URL(), "hist", `{__name__=~"history_.*"}`, 26*time.Hour, now.Add(time.Minute))
		if err != nil {
			return err
		}
		if len(series) != len(want) {
			return fmt.Errorf("%d series, want %d", len(series), len(want))
		}
		for _, s := range series {
			if len(s.Points) != want[s.Key()] {
				return fmt.Errorf("%s: %d points, want %d", s.Key(), len(s.Points), want[s.Key()])
			}
		}
		return nil
	})

	// The backfilled hours are rolled up: every sample of history_prw is
	// counted once in the 5m rows, none twice.
	weirtest.Eventually(t, 60*time.Second, func() error {
		rows, err := weirtest.ReadRollupFiles(filepath.Join(dir, "weir", "bucket"))
		if err != nil {
			return err
		}
		var counted int64
		windows := map[int64]bool{}
		for _, r := range rows {
			if r.Tenant == "hist" && r.Metric == "history_prw" && r.Resolution == "5m" {
				if windows[r.WindowStart] {
					return fmt.Errorf("window %d rolled up twice", r.WindowStart)
				}
				windows[r.WindowStart] = true
				counted += r.Count
			}
		}
		// Samples of the hour still within the allowed lateness are left
		// to the live rollups; the rest are in the rows.
		complete := time.Now().Add(-5 * time.Minute).Truncate(time.Hour)
		wantCounted := 0
		for i := 0; i < points; i++ {
			if start.Add(time.Duration(i) * step).Before(complete) {
				wantCounted++
			}
		}
		if counted != int64(wantCounted) {
			return fmt.Errorf("5m rollup rows of history_prw count %d samples, want %d", counted, wantCounted)
		}
		return nil
	})

	// Older than the bound: refused with a message that says what to do.
	old := filepath.Join(dir, "old.om")
	if err := os.WriteFile(old, []byte(fmt.Sprintf("too_old 1 %d\n", now.Add(-100*time.Hour).Unix())), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := weirtest.Run(t, nil, append(append([]string{"backfill", "--tenant=hist", "--max-age=72h", "--format=openmetrics"}, args...), old)...)
	if err == nil || !strings.Contains(out, "older than the backfill bound") {
		t.Fatalf("too old backfill: err %v\n%s", err, out)
	}
	// Without --max-age, the tenant's max_backfill_age limit bounds it:
	// 72h from the runtime file, where the default (720h) would not.
	runtime := filepath.Join(dir, "runtime.yaml")
	if err := os.WriteFile(runtime, []byte("tenants:\n  hist:\n    max_backfill_age: 72h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = weirtest.Run(t, []string{"WEIR_EDGE_RUNTIME_FILE=" + runtime}, append(append([]string{"backfill", "--tenant=hist", "--format=openmetrics"}, args...), old)...)
	if err == nil || !strings.Contains(out, "older than the backfill bound of 72h") || !strings.Contains(out, "max_backfill_age") {
		t.Fatalf("backfill beyond the tenant's max_backfill_age: err %v\n%s", err, out)
	}
}
