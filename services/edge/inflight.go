package edge

import (
	"context"
	"net/http"
	"runtime"
	"strconv"
	"sync"

	"github.com/weir-metrics/weir/pkg/limits"
)

// inflight bounds the request memory an edge's writes hold at once, in
// total (edge.max_inflight_bytes) and per tenant (max_tenant_inflight_bytes).
// A request reserves what it is about to hold before holding it — its
// body, its decompressed body, and what the series decoded from it and
// the records built from them take (a measured multiple of its
// decompressed size) — and is refused when a bound would be passed.
// Memory then stays bounded whatever the number of senders or the speed
// of Kafka: requests that cannot be served are refused, not queued.
type inflight struct {
	limit int64 // 0: unlimited
	// decoders is how many of one tenant's bodies may be decompressed at
	// once (see decoding).
	decoders int

	mu       sync.Mutex
	total    int64
	tenants  map[string]int64
	decoding map[string]*decodeSlots
}

type decodeSlots struct {
	ch    chan struct{}
	users int
}

func newInflight(limit int64) *inflight {
	return &inflight{limit: limit, tenants: map[string]int64{}, decoding: map[string]*decodeSlots{},
		decoders: max(1, runtime.GOMAXPROCS(0)/2)}
}

// decode runs fn, the decompression of one of tenant's bodies, once
// fewer than half the cores (one at least) are decompressing that
// tenant's bodies. Decompression is where a compression bomb spends its
// CPU (a gzip body inflates at about 1 GB/s): bounded per tenant, a
// tenant's bombs, or a flood of its large bodies, leave the other half of
// the cores to the other tenants. Memory is bounded before: a waiting
// request holds only its reserved body. It returns ctx's error if the
// request ends while waiting.
func (f *inflight) decode(ctx context.Context, tenant string, fn func() *refusal) *refusal {
	f.mu.Lock()
	s := f.decoding[tenant]
	if s == nil {
		s = &decodeSlots{ch: make(chan struct{}, f.decoders)}
		f.decoding[tenant] = s
	}
	s.users++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		if s.users--; s.users == 0 {
			delete(f.decoding, tenant)
		}
		f.mu.Unlock()
	}()
	select {
	case s.ch <- struct{}{}:
	case <-ctx.Done():
		return refuse(http.StatusServiceUnavailable, "canceled", "the request ended while waiting to be decompressed: %v", ctx.Err())
	}
	defer func() { <-s.ch }()
	return fn()
}

// held is what all writes hold now, for the gauge.
func (f *inflight) held() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.total
}

// reservation is one request's share; release it when the request ends.
type reservation struct {
	f      *inflight
	tenant string
	lim    *limits.Limits
	n      int64
}

func (f *inflight) reserve(tenant string, lim *limits.Limits) reservation {
	return reservation{f: f, tenant: tenant, lim: lim}
}

// Memory a request's decoded series and the records built from them
// take, per byte of its decompressed body: the Go heap grown by decoding a
// request and building its records, measured by TestDecodedMemory
// (remote-write 1.0, 2000 and 10,000 series: 8.4–10.2; line protocol,
// 1000 and 3000 lines: 23–28), with some headroom. Line protocol's text is
// denser than the series made of it.
const (
	remoteWriteMemoryPerByte  = 12
	lineProtocolMemoryPerByte = 32
)

// grow adds n bytes to the request's share, or refuses the request when
// the tenant's or the edge's bound would be passed: 429 for the tenant's
// (it is sending more than its share), 503 for the edge's (the edge as a
// whole is overloaded); both ask the sender to come back in a second. A
// request that alone needs more than a bound gets 413: retrying cannot
// help it, a smaller batch can.
func (r *reservation) grow(n int64) *refusal {
	if n <= 0 {
		return nil
	}
	f := r.f
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range []struct {
		limit           int64
		reason, setting string
	}{
		{r.lim.MaxTenantInflightBytes, limits.MaxTenantInflightBytes, "max_tenant_inflight_bytes of tenant " + strconv.Quote(r.tenant) + " (edge.max_tenant_inflight_bytes or edge.runtime_file)"},
		{f.limit, limits.MaxInflightBytes, "edge.max_inflight_bytes"},
	} {
		if b.limit > 0 && r.n+n > b.limit {
			return refuse(http.StatusRequestEntityTooLarge, b.reason,
				"decoding this request takes about %d bytes of memory, more than %s (%d) allows one request; send smaller batches", r.n+n, b.setting, b.limit)
		}
	}
	if tl := r.lim.MaxTenantInflightBytes; tl > 0 && f.tenants[r.tenant]+n > tl {
		return refuse(http.StatusTooManyRequests, limits.MaxTenantInflightBytes,
			"tenant %q has writes of %d bytes in flight in this edge; this one needs %d more, beyond its max_tenant_inflight_bytes (%d; edge.max_tenant_inflight_bytes or edge.runtime_file): Kafka is not taking the tenant's writes as fast as they come; retry later or send less at once",
			r.tenant, f.tenants[r.tenant], n, tl)
	}
	if f.limit > 0 && f.total+n > f.limit {
		return refuse(http.StatusServiceUnavailable, limits.MaxInflightBytes,
			"this edge holds writes of %d bytes in flight; this one needs %d more, beyond edge.max_inflight_bytes (%d): the edge is overloaded, retry later or at another edge",
			f.total, n, f.limit)
	}
	f.total += n
	f.tenants[r.tenant] += n
	r.n += n
	return nil
}

// release gives the request's share back.
func (r *reservation) release() {
	if r.n == 0 {
		return
	}
	f := r.f
	f.mu.Lock()
	defer f.mu.Unlock()
	f.total -= r.n
	if left := f.tenants[r.tenant] - r.n; left > 0 {
		f.tenants[r.tenant] = left
	} else {
		delete(f.tenants, r.tenant)
	}
	r.n = 0
}

// maxPooledBuffer is the largest request buffer kept for the next
// request: a burst of large requests must not leave its memory parked in
// the pool, outside the in-flight accounting.
const maxPooledBuffer = 4 << 20

// pooled reports whether a request's state, holding these buffers, may go
// back to its free list. A state that held a large request is dropped whole:
// besides its buffers, its decoded series and scratch slices, sized for
// that request, point into them.
func pooled(bufs ...[]byte) bool {
	for _, b := range bufs {
		if cap(b) > maxPooledBuffer {
			return false
		}
	}
	return true
}

// freeList keeps a bounded number of idle request states for reuse. A
// sync.Pool would keep one per request that ran at once, each sized for
// the largest request it served, outside the in-flight accounting: with
// hundreds of senders that is gigabytes held between requests.
type freeList[T any] struct{ ch chan *T }

// idleStates is how many idle states of each protocol an edge keeps: a
// few per core, enough for the requests that run at once on them.
var idleStates = 4 * runtime.GOMAXPROCS(0)

func newFreeList[T any](n int) *freeList[T] { return &freeList[T]{ch: make(chan *T, n)} }

func (f *freeList[T]) get() *T {
	select {
	case x := <-f.ch:
		return x
	default:
		return new(T)
	}
}

// put keeps x for reuse unless the list is full.
func (f *freeList[T]) put(x *T) {
	select {
	case f.ch <- x:
	default:
	}
}
