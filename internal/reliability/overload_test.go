package reliability

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/prometheus/prompb"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/kafka"
)

// TestCompressionBombsDoNotHurtOthers — scenario: all-in-one weir with the
// default limits (max_decompressed_bytes 64 MiB, max_tenant_inflight_bytes
// 256 MiB, max_inflight_bytes 1 GiB); tenant "evil" sends 48 compression
// bombs at once, over and over — gzip line protocol inflating to 512 MiB,
// and snappy remote-write inflating to 16 MiB (below both limits, and
// with its decoding reserve, 12 bytes a byte, within evil's share, so it
// is inflated in full and decoded) — while tenant "good" writes small
// requests.
// Duration: 10 s (make soak: 2 min). Checks: every bomb is refused (413
// for what inflates beyond max_decompressed_bytes, 429 with Retry-After
// when evil's share of request memory is used up, 400 for the inflated
// garbage), none acknowledged; every one of good's writes (ten a second)
// is acknowledged, within kafka.produce_timeout; and weir's peak RSS
// stays far below what 48 bombs would take inflated (about 3 GiB).
func TestCompressionBombsDoNotHurtOthers(t *testing.T) {
	d := length(10*time.Second, 2*time.Minute)
	all := startAllInOne(t, "")
	gz := gzipZeros(t, 512<<20)
	// The same bomb claiming in its trailer to inflate to 100 bytes: it
	// can only be found out by inflating it.
	gzLying := bytes.Clone(gz)
	binary.LittleEndian.PutUint32(gzLying[len(gzLying)-4:], 100)
	snap := snappy.Encode(nil, make([]byte, 16<<20))
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: time.Minute}
	deadline := time.Now().Add(d)

	var (
		mu      sync.Mutex
		evil    = map[int]int{}
		evilBad []string
		wg      sync.WaitGroup
	)
	for i := range 48 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				url, body, h := all.URL()+"/api/v2/write?org=evil&bucket=b", gz, map[string]string{"Content-Encoding": "gzip"}
				switch i % 3 {
				case 1:
					body = gzLying
				case 2:
					url, body, h = all.URL()+"/api/v1/write", snap, map[string]string{"Content-Encoding": "snappy", "Content-Type": weirtest.ContentTypeV1, "X-Scope-OrgID": "evil"}
				}
				status, retry, msg, err := post(hc, url, body, h)
				mu.Lock()
				switch {
				case err != nil:
					evilBad = append(evilBad, err.Error())
				case status == 429 && retry == "", status/100 == 2, status != 413 && status != 429 && status != 400:
					evilBad = append(evilBad, fmt.Sprintf("%d %q %s", status, retry, msg))
				}
				evil[status]++
				mu.Unlock()
			}
		}()
	}
	var good []time.Duration
	goodFailed := 0
	for i := 0; time.Now().Before(deadline); i++ {
		start := time.Now()
		res, err := weirtest.WriteV1(all.URL(), "good", smallRequest(i))
		took := time.Since(start)
		if err := weirtest.MustWrite(res, err); err != nil {
			goodFailed++
			t.Errorf("good tenant's write %d: %v", i, err)
		}
		good = append(good, took)
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	rss := peakRSS(t, all.Pid())
	if len(evilBad) > 0 {
		t.Fatalf("%d bombs not refused as they should be, e.g. %v", len(evilBad), evilBad[:min(5, len(evilBad))])
	}
	if evil[413] == 0 || evil[400] == 0 {
		t.Fatalf("bombs were not refused for their decompressed size (413) and content (400): %v", evil)
	}
	slow := 0
	for _, d := range good {
		if d > produceTimeout {
			slow++
		}
	}
	if goodFailed > 0 || slow > 0 || len(good) < 20 {
		t.Fatalf("good tenant: %d writes, %d failed, %d slower than kafka.produce_timeout: %v", len(good), goodFailed, slow, good)
	}
	if rss > 900<<20 {
		t.Fatalf("weir's peak RSS %s under the bombs", mib(rss))
	}
	report(t, figures{"seconds": d.Seconds(), "bomb_answers": evil, "good_writes": len(good), "good_max_latency": maxDuration(good).Round(time.Millisecond).String(), "peak_rss": mib(rss)})
}

// TestFasterThanKafka — scenario: an edge process writing to a
// Kafka-protocol broker inside the test whose every produce request is
// held for a second through kfake's control hooks, so Kafka takes far
// less than is sent; 200 senders of four tenants post remote-write
// requests of 10,000 series (about 0.4 MB each, 1.7 MB decoded) as fast
// as they are answered. The edge runs with edge.max_inflight_bytes
// 128 MiB, max_tenant_inflight_bytes 28 MiB and
// kafka.producer_max_buffered_bytes 64 MiB. Duration: 10 s (make soak: 2 min). Checks: the edge refuses
// with 429 (a tenant's share used up) and 503 (Kafka behind) with
// Retry-After rather than buffering: its peak RSS stays under 640 MiB
// (twice what the bounds let it hold, plus 256 MiB) where the senders
// hold over 2 GiB of requests in decoded form; writes are still
// acknowledged (the slow broker takes some); and every answer comes
// within kafka.produce_timeout.
func TestFasterThanKafka(t *testing.T) {
	d := length(10*time.Second, 2*time.Minute)
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
	var slow atomic.Bool
	slow.Store(true)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if slow.Load() {
			c.SleepControl(func() { time.Sleep(time.Second) })
		}
		return nil, nil, false
	})
	t.Cleanup(func() { slow.Store(false) })
	conf := writeFile(t, filepath.Join(dir, "weir.yaml"), `
kafka:
  partitions: 4
  produce_timeout: 2s
  producer_max_buffered_bytes: 67108864
edge:
  max_request_bytes: 4194304
  max_decompressed_bytes: 8388608
  max_inflight_bytes: 134217728
  max_tenant_inflight_bytes: 29360128
`)
	edge := weirtest.Start(t, "edge", "edge", "--config="+conf, "--data-dir="+filepath.Join(dir, "edge"), "--kafka.embedded.addr="+b.Addr())
	edge.WaitReady(30 * time.Second)
	// Topics first, so the flood measures produce, not topic creation.
	for ten := range 4 {
		if err := weirtest.MustWrite(weirtest.WriteV1(edge.URL(), "t"+strconv.Itoa(ten), smallRequest(0))); err != nil {
			t.Fatal(err)
		}
	}

	bodies := make([][]byte, 4)
	for i := range bodies {
		bodies[i] = bigRequest(t, i, 10000)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: time.Minute}
	deadline := time.Now().Add(d)
	var (
		mu       sync.Mutex
		statuses = map[int]int{}
		problems []string
		slowest  time.Duration
		wg       sync.WaitGroup
	)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ten := i % 4
			for time.Now().Before(deadline) {
				start := time.Now()
				status, retry, msg, err := post(hc, edge.URL()+"/api/v1/write", bodies[ten], map[string]string{
					"Content-Encoding": "snappy", "Content-Type": weirtest.ContentTypeV1, "X-Scope-OrgID": "t" + strconv.Itoa(ten)})
				took := time.Since(start)
				mu.Lock()
				slowest = max(slowest, took)
				statuses[status]++
				switch {
				case err != nil:
					problems = append(problems, err.Error())
				case (status == 429 || status == 503) && retry == "":
					problems = append(problems, fmt.Sprintf("%d without Retry-After: %s", status, msg))
				case status != 204 && status != 429 && status != 503:
					problems = append(problems, fmt.Sprintf("%d %s", status, msg))
				}
				mu.Unlock()
				if status == 429 || status == 503 {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	rss := peakRSS(t, edge.Pid())
	if len(problems) > 0 {
		t.Fatalf("%d unexpected answers, e.g. %v", len(problems), problems[:min(5, len(problems))])
	}
	if statuses[204] == 0 || statuses[429] == 0 || statuses[503] == 0 {
		t.Fatalf("want acknowledgements and both refusals, got %v", statuses)
	}
	if slowest > produceTimeout+2*time.Second {
		t.Fatalf("an answer took %s, beyond kafka.produce_timeout", slowest)
	}
	// What the bounds allow to be held (in-flight requests, the
	// producer's buffer), twice for the collector's headroom (GOGC=100),
	// and the process' own 256 MiB; the senders hold over 2 GiB of
	// requests, which an edge that buffered them would take many times.
	if bound := int64(2*(128<<20+64<<20) + 256<<20); rss > bound {
		t.Fatalf("edge peak RSS %s, above %s", mib(rss), mib(bound))
	}
	report(t, figures{"seconds": d.Seconds(), "statuses": statuses, "slowest_answer": slowest.Round(time.Millisecond).String(), "edge_peak_rss": mib(rss),
		"request_bytes": len(bodies[0])})
}

// startAllInOne runs `weir all` with baseConfig plus extra YAML.
func startAllInOne(t *testing.T, extra string) *weirtest.Process {
	t.Helper()
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "weir.yaml"), baseConfig+"bucket:\n  dir: "+filepath.Join(dir, "bucket")+"\n"+extra)
	all := weirtest.Start(t, "all", "all", "--config="+cfg, "--data-dir="+filepath.Join(dir, "data"), "--kafka.embedded.addr="+weirtest.FreeAddr(t))
	all.WaitReady(time.Minute)
	return all
}

// post sends body and returns the status, Retry-After and the start of
// the answer.
func post(hc *http.Client, url string, body []byte, headers map[string]string) (int, string, string, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", "", err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(msg), nil
}

// smallRequest is one sample of each of 20 series.
func smallRequest(i int) *prompb.WriteRequest {
	req := &prompb.WriteRequest{}
	for s := range 20 {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: "good_requests_total"}, {Name: "s", Value: strconv.Itoa(s)}},
			Samples: []prompb.Sample{{Value: float64(i), Timestamp: time.Now().UnixMilli()}},
		})
	}
	return req
}

// bigRequest is a snappy remote-write 1.0 body of n series with
// Kubernetes-like labels, one sample each.
func bigRequest(t *testing.T, seed, n int) []byte {
	t.Helper()
	req := &prompb.WriteRequest{}
	now := time.Now().UnixMilli()
	for s := range n {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
			Labels: []prompb.Label{
				{Name: "__name__", Value: "flood_requests_total"}, {Name: "container", Value: "app"},
				{Name: "instance", Value: fmt.Sprintf("10.%d.%d.%d:9100", seed, s/256, s%256)}, {Name: "job", Value: "kubernetes-pods"},
				{Name: "namespace", Value: "team-" + strconv.Itoa(s%17)}, {Name: "pod", Value: fmt.Sprintf("app-%d-%08x", seed, s*2654435761)},
			},
			Samples: []prompb.Sample{{Value: float64(s), Timestamp: now}},
		})
	}
	b, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, b)
}

// gzipZeros is a gzip body inflating to n zero bytes.
func gzipZeros(t *testing.T, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for range n >> 20 {
		if _, err := zw.Write(zeros); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func maxDuration(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}
