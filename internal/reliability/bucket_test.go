package reliability

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/kafka"
)

// TestBucketDownUnderLoad — scenario: the four-process topology under a
// steady 20k samples/s; a while into the load the sink's bucket (a
// filesystem bucket) fails every request: its directory is moved away and
// a plain file put in its place, so uploads and reads fail with real I/O
// errors; later it is put back. Duration: 10 s of outage in about 20 s of
// load (make soak: 3 min). Checks: during the outage the Parquet writer
// counts failed uploads and commits no offset (Kafka keeps the rows); the
// TSDB path is unaffected (the loss check passes, with weir's counters);
// and after the bucket is back the uploads catch up: the rollup files
// equal a clean recomputation, window for window, none missing, none
// twice.
func TestBucketDownUnderLoad(t *testing.T) {
	outage := length(10*time.Second, 3*time.Minute)
	top := startTopology(t, "", nil)
	// The first files are uploaded a few seconds into the load (windows
	// close, then wait up to rollup.parquet_max_file_age): the outage
	// starts once uploads and commits are flowing.
	before := 10 * time.Second
	d := before + outage + 6*time.Second
	load := weirtest.StartLoad(t, harness(top.edge.URL(), top.sink.URL(), d, 20000, "-metrics-url", top.metricsURLs())...)
	load.WaitLoadStarted(time.Minute)

	time.Sleep(before)
	committedBefore := parquetCommitted(t, top.kafka)
	away := top.bucket + ".away"
	if err := os.Rename(top.bucket, away); err != nil {
		t.Fatal(err)
	}
	writeFile(t, top.bucket, "the bucket is unavailable\n")
	down := time.Now()
	// Uploads under way when the bucket failed may still finish; the
	// files due after that fail.
	time.Sleep(min(4*time.Second, outage/2))
	committedAtStart := parquetCommitted(t, top.kafka)
	time.Sleep(outage - time.Since(down))
	committedAtEnd := parquetCommitted(t, top.kafka)
	failures, err := weirtest.MetricValue(top.sink.URL(), "weir_parquet_upload_failures_total", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(top.bucket); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(away, top.bucket); err != nil {
		t.Fatal(err)
	}
	if failures == 0 {
		t.Fatal("no failed upload was counted while the bucket was down")
	}
	if committedBefore == 0 {
		t.Fatal("the Parquet writer committed nothing before the outage: the test cannot tell whether the outage stops its commits")
	}
	if committedAtEnd != committedAtStart {
		t.Fatalf("the Parquet writer committed offsets while nothing could be uploaded: %d, then %d", committedAtStart, committedAtEnd)
	}

	run := load.Wait(10 * time.Minute)
	requireLossCheck(t, run)
	if run.Counters == nil || !run.Counters.OK {
		t.Fatalf("weir's counters do not account for every sample: %+v", run.Counters)
	}
	want := weirtest.RecomputeRollups(t, top.kafka, tenant, rollupResolutions, rollupLateness)
	windows := weirtest.CompareRollups(t, top.bucket, want, 3*time.Minute)
	if after := parquetCommitted(t, top.kafka); after <= committedAtEnd {
		t.Fatalf("the Parquet writer's offsets did not advance after the bucket returned: %d", after)
	}
	report(t, figures{
		"outage_seconds": outage.Seconds(), "load_seconds": run.Seconds, "samples_acked": run.SamplesAcked,
		"upload_failures": failures, "rollup_windows_compared": windows, "committed_offsets_before_during_after": []int64{committedBefore, committedAtEnd, parquetCommitted(t, top.kafka)},
	})
}

// parquetCommitted sums the offsets the Parquet writer (group
// weir-parquet) committed on the tenant's rollup topic.
func parquetCommitted(t *testing.T, kafkaAddr string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, "weir-parquet")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	topic := kafka.Topic("weir", tenant, kafka.KindRollup)
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.At > 0 {
			n += o.At
		}
	})
	return n
}
