package seriescache

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/weir-metrics/weir/pkg/prw"
)

// request is series as a decoder leaves them: labels aliasing raw, a
// buffer the test overwrites afterwards as a reused request buffer is.
func request(n int, tag string) (raws [][]byte, series []prw.TimeSeries) {
	for i := 0; i < n; i++ {
		raw := []byte(fmt.Sprintf("__name__up%s%dinstance", tag, i))
		name := len("__name__")
		val := len(raw) - len("instance")
		series = append(series, prw.TimeSeries{Labels: []prw.Label{
			{Name: string(raw[:name]), Value: string(raw[name:val])},
			{Name: string(raw[val:]), Value: fmt.Sprintf("host-%d:9100", i%7)},
		}})
		raws = append(raws, raw)
	}
	return raws, series
}

func keys(c *Cache, tenant string, raws [][]byte) []Key {
	t := c.Tenant(tenant)
	out := make([]Key, len(raws))
	for i, r := range raws {
		out[i] = c.Key(t, r)
	}
	return out
}

func all(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func TestPutThenGet(t *testing.T) {
	c := New(64 << 20)
	raws, series := request(3000, "a") // enough to grow the table
	want := make([][]prw.Label, len(series))
	hashes := make([]uint64, len(series))
	for i := range series {
		want[i] = slices.Clone(series[i].Labels)
		hashes[i] = uint64(i)*7 + 1
	}
	ks := keys(c, "t1", raws)
	c.Put(ks, series, hashes, all(len(series)))
	if c.Len() != len(series) {
		t.Fatalf("Len() = %d, want %d", c.Len(), len(series))
	}

	// A second request with the same bytes: labels and hashes come back.
	_, again := request(3000, "a")
	got := make([]uint64, len(again))
	known := make([]bool, len(again))
	if n := c.Get(ks, again, got, known); n != len(again) {
		t.Fatalf("found %d of %d", n, len(again))
	}
	for i := range again {
		if !slices.Equal(again[i].Labels, want[i]) || got[i] != hashes[i] || !known[i] {
			t.Fatalf("series %d: %v hash %d, want %v hash %d", i, again[i].Labels, got[i], want[i], hashes[i])
		}
	}
	// Interned: equal strings share memory, across series.
	if unsafeData(again[0].Labels[0].Name) != unsafeData(again[1].Labels[0].Name) {
		t.Fatal("equal label names of two series do not share memory")
	}
}

func TestCachedLabelsOutliveTheRequest(t *testing.T) {
	c := New(64 << 20)
	raws, series := request(10, "b")
	ks := keys(c, "t1", raws)
	c.Put(ks, series, make([]uint64, 10), all(10))
	// The request buffers are reused: the decoded strings change.
	for _, r := range raws {
		for j := range r {
			r[j] = 'x'
		}
	}
	_, fresh := request(10, "b")
	known := make([]bool, 10)
	c.Get(ks, fresh, make([]uint64, 10), known)
	if fresh[3].Labels[0].Value != "upb3" {
		t.Fatalf("cached label changed with the request buffer: %q", fresh[3].Labels[0].Value)
	}
}

func TestKeysSeparateTenantsAndBytes(t *testing.T) {
	c := New(64 << 20)
	raws, series := request(5, "c")
	c.Put(keys(c, "t1", raws), series, []uint64{1, 2, 3, 4, 5}, all(5))

	_, other := request(5, "c")
	known := make([]bool, 5)
	if n := c.Get(keys(c, "t2", raws), other, make([]uint64, 5), known); n != 0 {
		t.Fatalf("another tenant found %d series", n)
	}
	raws[2] = append(raws[2], 'z')
	if n := c.Get(keys(c, "t1", raws), other, make([]uint64, 5), known); n != 4 {
		t.Fatalf("found %d, want 4 (one series' bytes changed)", n)
	}
	if known[2] {
		t.Fatal("series with other bytes found")
	}
	var zero []Key = make([]Key, 5)
	known = make([]bool, 5)
	if n := c.Get(zero, other, make([]uint64, 5), known); n != 0 {
		t.Fatal("zero keys found")
	}
}

// TestNormalisedLabelsReplaceDecoded: normalising may drop labels with
// empty values; a hit gives the shortened labels.
func TestNormalisedLabelsReplaceDecoded(t *testing.T) {
	c := New(64 << 20)
	raw := []byte("raw-bytes-of-three-labels")
	norm := []prw.TimeSeries{{Labels: []prw.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "a"}}}}
	ks := keys(c, "t", [][]byte{raw})
	c.Put(ks, norm, []uint64{9}, []int{0})
	decoded := []prw.TimeSeries{{Labels: []prw.Label{{Name: "job", Value: "a"}, {Name: "__name__", Value: "up"}, {Name: "zone", Value: ""}}}}
	hashes, known := make([]uint64, 1), make([]bool, 1)
	c.Get(ks, decoded, hashes, known)
	if !known[0] || hashes[0] != 9 || !slices.Equal(decoded[0].Labels, norm[0].Labels) {
		t.Fatalf("got %v %d", decoded[0].Labels, hashes[0])
	}
}

func TestBoundedAndRenewed(t *testing.T) {
	c := New(200 << 10)
	now := time.Unix(1_700_000_000, 0)
	c.now = func() time.Time { return now }
	c.reset()
	raws, series := request(20000, "d")
	ks := keys(c, "t", raws)
	c.Put(ks, series, make([]uint64, len(series)), all(len(series)))
	full := c.Len()
	if full == 0 || full == len(series) {
		t.Fatalf("%d series cached in 200 KiB", full)
	}
	if c.bytes > 200<<10+(1<<chunkBits)+64<<10 {
		t.Fatalf("cache holds %d bytes, bound 200 KiB", c.bytes)
	}
	raws2, series2 := request(100, "e")
	ks2 := keys(c, "t", raws2)
	c.Put(ks2, series2, make([]uint64, 100), all(100))
	if c.Len() != full {
		t.Fatal("a full cache learned more")
	}
	now = now.Add(MinAge + time.Second)
	c.Put(ks2, series2, make([]uint64, 100), all(100))
	if c.Len() != 100 {
		t.Fatalf("after MinAge a full cache holds %d series, want the 100 new ones", c.Len())
	}
}

func TestConcurrentUse(t *testing.T) {
	c := New(1 << 20)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < 50; r++ {
				raws, series := request(200, fmt.Sprint(r%5))
				ks := keys(c, "t", raws)
				hashes, known := make([]uint64, len(series)), make([]bool, len(series))
				c.Get(ks, series, hashes, known)
				var learn []int
				for i := range series {
					if !known[i] {
						hashes[i] = uint64(i)
						learn = append(learn, i)
					} else if hashes[i] != uint64(i) {
						t.Errorf("series %d: hash %d", i, hashes[i])
						return
					}
				}
				c.Put(ks, series, hashes, learn)
			}
		}()
	}
	wg.Wait()
}

func unsafeData(s string) *byte { return unsafe.StringData(s) }
