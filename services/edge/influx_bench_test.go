package edge

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/influx"
	"github.com/weir-metrics/weir/pkg/limits"
)

// cpuTime is the CPU time, user and system, this process has used so far
// (all threads: the garbage collector and the Kafka client included).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchLines is a 5000-line body with 9 tags and one field per line, the
// shape of the line-protocol anchor in ANCHORS.md, in Telegraf's layout
// (tags sorted, nanosecond timestamps). round changes the values and
// timestamps.
func benchLines(round int) []byte {
	var sb strings.Builder
	ts := time.Now().Add(-time.Hour).UnixNano() + int64(round)*10_000_000_000
	for i := 0; i < 5000; i++ {
		fmt.Fprintf(&sb, "node_cpu,cluster=eu-west-1,container=node-exporter,cpu=%d,host=host-%04d,job=node,mode=idle,namespace=monitoring,pod=node-exporter-%05d,service=node seconds=%d.%03d %d\n",
			i%16, i/16, i/40, round*i, i%1000, ts)
	}
	return []byte(sb.String())
}

// BenchmarkInfluxEdgePath measures what the edge does with a line-protocol
// body apart from HTTP and Kafka: inflate (gzip variant), parse and map
// (which normalises), check the limits and the rate, partition and encode
// the records. samples/cpu-s counts every thread of the process.
func BenchmarkInfluxEdgePath(b *testing.B) {
	for _, gz := range []bool{false, true} {
		name := "plain"
		if gz {
			name = "gzip"
		}
		b.Run(name, func(b *testing.B) {
			cfg := config.Default()
			lim := limits.Defaults(&cfg)
			var bodies [4][]byte
			for i := range bodies {
				bodies[i] = benchLines(i)
				if gz {
					bodies[i] = gzipped(b, bodies[i])
				}
			}
			st := &influxState{}
			tracker := limits.NewTracker()
			samples := 0
			b.SetBytes(int64(len(bodies[0])))
			b.ReportAllocs()
			cpu0 := cpuTime()
			for i := 0; b.Loop(); i++ {
				data := bodies[i%len(bodies)]
				if gz {
					rsv := unlimited.reserve("bench", &lim)
					if rf := gunzip(data, &st.decoded, "bench", &lim, &rsv); rf != nil {
						b.Fatal(rf)
					}
					rsv.release()
					data = st.decoded
				}
				now := time.Now()
				if err := st.batch.Parse(data, &influx.Options{Now: now}); err != nil {
					b.Fatal(err)
				}
				series := st.batch.Series // normalised by Parse
				if _, v := lim.CheckSeries(series, now); v != nil {
					b.Fatal(v)
				}
				tracker.Allow("bench", &lim, len(series))
				recs, err := st.builder.Build("bench", series, cfg.Kafka.Partitions, cfg.Kafka.MaxRecordBytes)
				if err != nil || len(recs) != cfg.Kafka.Partitions {
					b.Fatal(err, len(recs))
				}
				samples += len(series)
			}
			cpu := cpuTime() - cpu0
			b.ReportMetric(float64(samples)/cpu.Seconds(), "samples/cpu-s")
			b.ReportMetric(float64(samples)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// BenchmarkInfluxEdgeKafka measures the whole edge for line protocol: the
// /api/v2/write handler from request body to Kafka's acknowledgement, with
// the broker (weir broker) in another process so that samples/cpu-s is the
// edge's own cost. Four senders keep requests in flight, as several
// Telegraf agents would.
func BenchmarkInfluxEdgeKafka(b *testing.B) {
	for _, gz := range []bool{false, true} {
		name := "plain"
		if gz {
			name = "gzip"
		}
		b.Run(name, func(b *testing.B) { benchInfluxKafka(b, gz) })
	}
}

func benchInfluxKafka(b *testing.B, gz bool) {
	e := startBenchEdge(b)
	var bodies [8][]byte
	for i := range bodies {
		bodies[i] = benchLines(i)
		if gz {
			bodies[i] = gzipped(b, bodies[i])
		}
	}
	h := e.influxWriteHandler(influxV2)
	send := func(body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/api/v2/write?org=bench&bucket=b", bytes.NewReader(body))
		if gz {
			req.Header.Set("Content-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			b.Errorf("write answered %d: %s", rec.Code, rec.Body.String())
		}
	}
	send(bodies[0]) // creates the tenant's topics
	runSenders(b, 4, 5000, func(i int) { send(bodies[i%len(bodies)]) })
}

// startBenchEdge starts an edge writing to a `weir broker` process, so
// that the edge's CPU time is measured apart from the broker's.
func startBenchEdge(b *testing.B) *Edge {
	kafkaAddr := weirtest.FreeAddr(b)
	broker := weirtest.Start(b, "broker", "broker", "--data-dir="+b.TempDir(), "--kafka.embedded.addr="+kafkaAddr, "--log.level=warn")
	broker.WaitReady(60 * time.Second)
	cfg := config.Default()
	cfg.DataDir = b.TempDir()
	cfg.Kafka.Embedded.Addr = kafkaAddr
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := New(&cfg, log, prometheus.NewRegistry(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	weirtest.Eventually(b, 30*time.Second, e.Ready)
	return e
}

// runSenders calls send(i) for i in [0, b.N) from `senders` goroutines
// and reports samples per CPU-second of the whole process (every thread:
// the Kafka client and the garbage collector included) and per second,
// for perOp samples per call.
func runSenders(b *testing.B, senders, perOp int, send func(i int)) {
	var next atomic.Int64
	b.ResetTimer()
	cpu0, wall0 := cpuTime(), time.Now()
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				send(int(i))
			}
		}()
	}
	wg.Wait()
	cpu, wall := cpuTime()-cpu0, time.Since(wall0)
	b.StopTimer()
	samples := float64(b.N * perOp)
	b.ReportMetric(samples/cpu.Seconds(), "samples/cpu-s")
	b.ReportMetric(samples/wall.Seconds(), "samples/s")
}
