package edge

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/weir-metrics/weir/pkg/influx"
	"github.com/weir-metrics/weir/pkg/limits"
	"github.com/weir-metrics/weir/pkg/prw"
)

// TestInflightBounds: a tenant over its share gets 429, the edge over its
// total 503, a request that alone exceeds either 413; what a request held
// is given back when it ends, per tenant.
func TestInflightBounds(t *testing.T) {
	f := newInflight(1000)
	lim := &limits.Limits{MaxTenantInflightBytes: 600}
	a1, a2, b1, c1 := f.reserve("a", lim), f.reserve("a", lim), f.reserve("b", lim), f.reserve("c", lim)
	if rf := a1.grow(500); rf != nil {
		t.Fatal(rf)
	}
	if rf := a2.grow(200); rf == nil || rf.status != 429 || rf.reason != limits.MaxTenantInflightBytes {
		t.Fatalf("tenant over its share: %+v", rf)
	}
	if rf := b1.grow(450); rf != nil {
		t.Fatal(rf)
	}
	if rf := c1.grow(100); rf == nil || rf.status != 503 || rf.reason != limits.MaxInflightBytes {
		t.Fatalf("edge over its total: %+v", rf)
	}
	d1 := f.reserve("d", lim)
	if rf := d1.grow(601); rf == nil || rf.status != 413 {
		t.Fatalf("a request larger than the share alone: %+v", rf)
	}
	a1.release()
	if got := f.held(); got != 450 {
		t.Fatalf("held %d after release, want 450", got)
	}
	if rf := a2.grow(550); rf != nil {
		t.Fatalf("tenant a after its first request ended: %v", rf)
	}
	a2.release()
	b1.release()
	c1.release()
	if f.held() != 0 || len(f.tenants) != 0 {
		t.Fatalf("held %d by %v after every request ended", f.held(), f.tenants)
	}
	u := newInflight(0).reserve("a", &limits.Limits{})
	if rf := u.grow(1 << 40); rf != nil {
		t.Fatalf("unlimited: %v", rf)
	}
}

// TestDecodeGate: at most half the cores (one at least) decompress one
// tenant's bodies at once, while another tenant's go through; a request
// that ends while waiting is refused.
func TestDecodeGate(t *testing.T) {
	f := newInflight(0)
	f.decoders = 2
	var running, peak atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = f.decode(context.Background(), "evil", func() *refusal {
				peak.Store(max(peak.Load(), running.Add(1)))
				<-release
				running.Add(-1)
				return nil
			})
		}()
	}
	time.Sleep(100 * time.Millisecond)
	done := make(chan struct{})
	go func() { _ = f.decode(context.Background(), "good", func() *refusal { return nil }); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("another tenant waited for evil's decompressions")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if rf := f.decode(ctx, "evil", func() *refusal { return nil }); rf == nil {
		t.Fatal("a request whose context ended while waiting was decompressed")
	}
	close(release)
	wg.Wait()
	if peak.Load() != 2 {
		t.Fatalf("%d of one tenant's bodies decompressed at once, want 2", peak.Load())
	}
	if len(f.decoding) != 0 {
		t.Fatalf("decode slots of %d tenants left behind", len(f.decoding))
	}
}

// TestDecodedMemory measures what decoding a request and building its
// records takes on the heap, per byte of decompressed body, and fails when
// it outgrows the multiple the in-flight accounting reserves: the bound on
// the edge's memory is only as good as that estimate.
func TestDecodedMemory(t *testing.T) {
	lim := &limits.Limits{MaxDecompressedBytes: 64 << 20}
	for _, n := range []int{2000, 10000} {
		req := &prompb.WriteRequest{}
		now := time.Now().UnixMilli()
		for s := range n {
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
				Labels: []prompb.Label{
					{Name: "__name__", Value: "http_requests_total"}, {Name: "container", Value: "app"},
					{Name: "instance", Value: fmt.Sprintf("10.1.%d.%d:9100", s/256, s%256)}, {Name: "job", Value: "kubernetes-pods"},
					{Name: "namespace", Value: fmt.Sprint("team-", s%17)}, {Name: "pod", Value: fmt.Sprintf("app-%08x", s*2654435761)},
				},
				Samples: []prompb.Sample{{Value: float64(s), Timestamp: now}},
			})
		}
		b, err := req.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		body := snappy.Encode(nil, b)
		grew := heapHeld(func() {
			st := &writeState{}
			rsv := unlimited.reserve("t", lim)
			if rf := decodeSnappy(body, &st.decoded, "t", lim, &rsv); rf != nil {
				t.Fatal(rf)
			}
			st.req.Reset()
			if err := st.req.Unmarshal(prw.V1, st.decoded); err != nil {
				t.Fatal(err)
			}
			for i := range st.req.Series {
				if err := st.req.Series[i].Normalize(); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := st.builder.Build("t", st.req.Series, 8, 4<<20); err != nil {
				t.Fatal(err)
			}
			runtime.KeepAlive(st)
		})
		perByte := float64(grew) / float64(len(b))
		t.Logf("remote-write, %d series: %d bytes decompressed, heap grew %d: %.1f per byte (reserved: 1 + %d)", n, len(b), grew, perByte, remoteWriteMemoryPerByte)
		if perByte > 1+remoteWriteMemoryPerByte {
			t.Errorf("remote-write takes %.1f bytes per decompressed byte, more than the %d reserved", perByte, 1+remoteWriteMemoryPerByte)
		}
	}
	for _, n := range []int{1000, 3000} {
		var body []byte
		now := time.Now().UnixNano()
		for s := range n {
			body = fmt.Appendf(body, "cpu,host=server-%d,region=eu-west-1,dc=dc%d,rack=r%d,cluster=c1,env=prod,team=t%d,service=api usage_user=%d.5,usage_system=1.25 %d\n", s, s%5, s%40, s%7, s, now)
		}
		grew := heapHeld(func() {
			st := &influxState{}
			if err := st.batch.Parse(body, &influx.Options{Now: time.Now()}); err != nil {
				t.Fatal(err)
			}
			if _, err := st.builder.Build("t", st.batch.Series, 8, 4<<20); err != nil {
				t.Fatal(err)
			}
			runtime.KeepAlive(st)
		})
		perByte := float64(grew) / float64(len(body))
		t.Logf("line protocol, %d lines: %d bytes, heap grew %d: %.1f per byte (reserved: %d)", n, len(body), grew, perByte, lineProtocolMemoryPerByte)
		if perByte > lineProtocolMemoryPerByte {
			t.Errorf("line protocol takes %.1f bytes per byte of body, more than the %d reserved", perByte, lineProtocolMemoryPerByte)
		}
	}
}

// heapHeld is how much the heap grew while fn ran, garbage included:
// what a request holds until a collection, at most.
func heapHeld(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.HeapAlloc - before.HeapAlloc
}

// unlimited accounts for tests that do not exercise the in-flight bounds.
var unlimited = newInflight(0)
