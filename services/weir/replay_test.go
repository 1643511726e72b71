package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
)

// TestReplayRebuildsRollupsAfterAWrongSpec backfills three hours of
// history while the tenant's rollup spec is wrong (it aggregates the
// sensors of a room), so the backfill writes wrong rollup files; then it
// fixes the spec and replays the range into rollups. The files of those
// hours must then hold exactly one row per series and window, equal to a
// direct computation from the input, and nothing of the wrong spec.
func TestReplayRebuildsRollupsAfterAWrongSpec(t *testing.T) {
	dir := t.TempDir()
	pipelines := filepath.Join(dir, "pipelines")
	if err := os.MkdirAll(pipelines, 0o755); err != nil {
		t.Fatal(err)
	}
	writeSpec := func(extra string) {
		t.Helper()
		spec := "rollups:\n  - name: default\n    resolutions: [5m]\n    allowed_lateness: 1m\n" + extra
		if err := os.WriteFile(filepath.Join(pipelines, "roll.yaml"), []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(pipelines, "default.yaml"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeSpec("    by: [room]\n") // wrong: sums the sensors of a room
	args := []string{
		"--data-dir=" + filepath.Join(dir, "weir"), "--kafka.embedded.addr=" + weirtest.FreeAddr(t),
		"--stream.pipelines-dir=" + pipelines,
	}
	env := []string{"WEIR_SINK_OUT_OF_ORDER_WINDOW=24h", "WEIR_EDGE_MAX_BACKFILL_AGE=24h"}
	p := weirtest.StartWithEnv(t, "all", env, append([]string{"all"}, args...)...)
	p.WaitReady(30 * time.Second)

	// Three hours of one-minute gauge samples of 24 sensors in 4 rooms,
	// ending more than an hour ago.
	end := time.Now().Add(-2 * time.Hour).Truncate(time.Hour)
	start := end.Add(-3 * time.Hour)
	type key struct {
		sensor string
		window int64
	}
	want := map[key][]float64{}
	// The wrong spec aggregates per room and source partition.
	roomParts := map[string]bool{}
	var om strings.Builder
	om.WriteString("# TYPE room_temperature_celsius gauge\n")
	for ts := start; ts.Before(end); ts = ts.Add(time.Minute) {
		for s := 0; s < 24; s++ {
			v := float64(s) + math.Sin(float64(ts.Unix())/600)*3
			sensor := fmt.Sprintf("s%02d", s)
			fmt.Fprintf(&om, "room_temperature_celsius{room=\"r%d\",sensor=%q} %g %d\n", s%4, sensor, v, ts.Unix())
			w := ts.Truncate(5 * time.Minute).UnixMilli()
			part := record.Partition("roll", []prw.Label{{Name: "__name__", Value: "room_temperature_celsius"}, {Name: "room", Value: fmt.Sprintf("r%d", s%4)}, {Name: "sensor", Value: sensor}}, 8)
			roomParts[fmt.Sprintf("r%d/%d", s%4, part)] = true
			want[key{sensor, w}] = append(want[key{sensor, w}], v)
		}
	}
	om.WriteString("# EOF\n")
	file := filepath.Join(dir, "history.om")
	if err := os.WriteFile(file, []byte(om.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := weirtest.Run(t, env, append(append([]string{"backfill", "--tenant=roll", "--format=openmetrics"}, args...), file)...)
	if err != nil {
		t.Fatalf("backfill: %v\n%s", err, out)
	}
	bucket := filepath.Join(dir, "weir", "bucket")
	rowsOf := func() ([]weirtest.RollupRow, error) {
		rows, err := weirtest.ReadRollupFiles(bucket)
		var ours []weirtest.RollupRow
		for _, r := range rows {
			if r.Tenant == "roll" && r.Metric == "room_temperature_celsius" {
				ours = append(ours, r)
			}
		}
		return ours, err
	}
	// The wrong spec's files: one row per room, source partition and
	// window, without the sensor.
	weirtest.Eventually(t, 60*time.Second, func() error {
		rows, err := rowsOf()
		if err != nil {
			return err
		}
		if want := len(roomParts) * 36; len(rows) != want {
			return fmt.Errorf("%d rows from the wrong spec, want %d (%d rooms and partitions × 36 windows)", len(rows), want, len(roomParts))
		}
		for _, r := range rows {
			if _, ok := r.Labels["sensor"]; ok {
				return fmt.Errorf("the wrong spec kept the sensor: %v", r.Labels)
			}
		}
		return nil
	})

	writeSpec("")
	out, err = weirtest.Run(t, env, append([]string{"replay", "--tenant=roll", "--into=rollups",
		"--from=" + start.Format(time.RFC3339), "--to=" + end.Format(time.RFC3339)}, args...)...)
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	if !strings.Contains(out, "done in") {
		t.Fatalf("replay did not finish:\n%s", out)
	}
	weirtest.Eventually(t, 60*time.Second, func() error {
		rows, err := rowsOf()
		if err != nil {
			return err
		}
		if len(rows) != len(want) {
			return fmt.Errorf("%d rows, want %d (24 sensors × 36 windows, once each)", len(rows), len(want))
		}
		seen := map[key]bool{}
		for _, r := range rows {
			k := key{r.Labels["sensor"], r.WindowStart}
			vals, ok := want[k]
			if !ok || seen[k] {
				return fmt.Errorf("unexpected or duplicated row %+v", k)
			}
			seen[k] = true
			var sum, mn, mx float64 = 0, math.Inf(1), math.Inf(-1)
			for _, v := range vals {
				sum += v
				mn, mx = math.Min(mn, v), math.Max(mx, v)
			}
			if r.Count != int64(len(vals)) || r.Sum == nil || math.Abs(*r.Sum-sum) > 1e-9 || *r.Min != mn || *r.Max != mx ||
				*r.First != vals[0] || *r.Last != vals[len(vals)-1] {
				return fmt.Errorf("row %+v: count %d sum %v min %v max %v, want %d %v %v %v", k, r.Count, *r.Sum, *r.Min, *r.Max, len(vals), sum, mn, mx)
			}
		}
		return nil
	})
}

// TestReplayIntoTSDBAfterAPipelineFix drops a metric by mistake in the
// pipeline, fixes the pipeline and replays the range into the TSDB: the
// dropped samples appear, the others are not duplicated, and running the
// same replay again writes nothing (it resumes at its end).
func TestReplayIntoTSDBAfterAPipelineFix(t *testing.T) {
	dir := t.TempDir()
	pipelines := filepath.Join(dir, "pipelines")
	if err := os.MkdirAll(pipelines, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(pipelines, "default.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("relabel:\n  - source_labels: [__name__]\n    regex: lost_metric\n    action: drop\n")
	args := []string{
		"--data-dir=" + filepath.Join(dir, "weir"), "--kafka.embedded.addr=" + weirtest.FreeAddr(t),
		"--stream.pipelines-dir=" + pipelines,
	}
	env := []string{"WEIR_SINK_OUT_OF_ORDER_WINDOW=1h"}
	p := weirtest.StartWithEnv(t, "all", env, append([]string{"all"}, args...)...)
	p.WaitReady(30 * time.Second)

	from := time.Now().Add(-time.Second)
	t0 := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	for i := 0; i < 20; i++ {
		req := &prompb.WriteRequest{}
		for _, name := range []string{"lost_metric", "kept_metric"} {
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
				Labels:  []prompb.Label{{Name: "__name__", Value: name}, {Name: "job", Value: "replay"}},
				Samples: []prompb.Sample{{Value: float64(i), Timestamp: t0.Add(time.Duration(i) * 15 * time.Second).UnixMilli()}},
			})
		}
		if err := weirtest.MustWrite(weirtest.WriteV1(p.URL(), "ryw", req)); err != nil {
			t.Fatal(err)
		}
	}
	strong := map[string]string{"X-Read-Consistency": "strong"}
	count := func(name string) int {
		t.Helper()
		series, err := weirtest.QueryRawWithHeaders(p.URL(), "ryw", name, time.Hour, time.Now(), strong)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range series {
			n += len(s.Points)
		}
		return n
	}
	if lost, kept := count("lost_metric"), count("kept_metric"); lost != 0 || kept != 20 {
		t.Fatalf("before the replay: lost_metric %d samples, kept_metric %d; want 0 and 20", lost, kept)
	}
	write("{}\n")
	to := time.Now().Add(time.Second)
	replayArgs := append([]string{"replay", "--tenant=ryw", "--into=tsdb", "--from=" + from.Format(time.RFC3339Nano), "--to=" + to.Format(time.RFC3339Nano)}, args...)
	out, err := weirtest.Run(t, env, replayArgs...)
	if err != nil || !strings.Contains(out, "done in") {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	weirtest.Eventually(t, 30*time.Second, func() error {
		if lost, kept := count("lost_metric"), count("kept_metric"); lost != 20 || kept != 20 {
			return fmt.Errorf("after the replay: lost_metric %d samples, kept_metric %d; want 20 and 20", lost, kept)
		}
		return nil
	})
	out, err = weirtest.Run(t, env, replayArgs...)
	if err != nil || !strings.Contains(out, "0 series records") {
		t.Fatalf("the same replay again should resume at its end and write nothing: %v\n%s", err, out)
	}
}
