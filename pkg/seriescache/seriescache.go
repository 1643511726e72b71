// Package seriescache remembers, for series as a sender sent them, the
// work the edge does on their labels: the checks and sorting of
// prw.TimeSeries.Normalize and the series hash that picks their partition
// (record.SeriesHash). Senders send the same series every scrape, so
// after the first request that work is one hash of the series' label
// bytes and one lookup.
//
// A hit also hands back the labels as strings interned in the cache:
// equal strings then share memory across series and requests, which the
// record encoder compares and deduplicates without reading them.
//
// Keys are the label bytes as received (prw.Request.RawLabels), so two
// senders encoding a series differently get two entries, and a key
// identifies its labels exactly: it is a 128-bit hash of tenant and
// bytes (xxhash and a seeded maphash); two different series share one
// with probability about n²/2¹²⁹.
package seriescache

import (
	"hash/maphash"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/cespare/xxhash/v2"

	"github.com/weir-metrics/weir/pkg/prw"
)

// Cache is safe for concurrent use. Its memory is bounded: when full it
// stops learning, and it starts afresh once it is both full and older
// than MinAge, so that series no longer sent make room for new ones
// without a cache too small for the active series emptying itself at
// every request.
//
// Nothing in it holds a pointer but its string chunks and the index of
// interned strings, so the garbage collector does not walk its entries:
// series are slots of an open-addressing table, labels are (offset,
// length) pairs into chunks of bytes.
type Cache struct {
	maxBytes int
	seed     maphash.Seed
	now      func() time.Time

	mu     sync.RWMutex
	slots  []slot // a power of two, at most half used
	used   int
	labels []uint64 // interned strings as offset<<lenBits | length: name, value, name, …
	chunks [][]byte // interned string bytes; offset>>chunkBits picks the chunk
	strs   map[string]uint64
	bytes  int
	since  time.Time
}

// slot is one series; n == 0 marks an empty slot (a series has labels).
type slot struct {
	k1, k2 uint64
	hash   uint64 // record.SeriesHash of the labels
	at, n  uint32 // labels: labels[at : at+2n]
}

const (
	lenBits   = 24 // longer strings are not cached
	chunkBits = 20 // chunks of at most 1 MiB; longer strings get a chunk of their own
	// stringBytes accounts an interned string's index entry besides its
	// bytes.
	stringBytes = 48
	slotBytes   = int(unsafe.Sizeof(slot{}))
)

// MinAge is how long a full cache keeps its content before it starts
// afresh.
const MinAge = 10 * time.Minute

// New returns a cache of about maxBytes.
func New(maxBytes int) *Cache {
	c := &Cache{maxBytes: maxBytes, seed: maphash.MakeSeed(), now: time.Now}
	c.reset()
	return c
}

func (c *Cache) reset() {
	c.slots = make([]slot, 1024)
	c.used = 0
	c.labels = nil
	c.chunks = nil
	c.strs = map[string]uint64{}
	c.bytes = len(c.slots) * slotBytes
	c.since = c.now()
}

// Key identifies one series of one tenant as received; the zero Key
// identifies none and is never found.
type Key struct {
	k1, k2 uint64
	ok     bool
}

// Tenant is the part of the keys of one tenant's series that depends on
// the tenant only, computed once per request.
type Tenant struct{ t1, t2 uint64 }

// Tenant returns the key part of tenant.
func (c *Cache) Tenant(tenant string) Tenant {
	return Tenant{xxhash.Sum64String(tenant), maphash.String(c.seed, tenant) * 0x9e3779b97f4a7c15}
}

// Key returns the key of a series of t whose labels were received as raw.
func (c *Cache) Key(t Tenant, raw []byte) Key {
	return Key{xxhash.Sum64(raw) ^ t.t1, maphash.Bytes(c.seed, raw) ^ t.t2, true}
}

func slotIndex(k1, mask uint64) uint64 { return (k1 * 0x9e3779b97f4a7c15) >> 32 & mask }

// find returns the slot of k1 and whether it holds k1 (else it is the
// empty slot where k1 would go).
func (c *Cache) find(k1 uint64) (*slot, bool) {
	mask := uint64(len(c.slots) - 1)
	for i := slotIndex(k1, mask); ; i = (i + 1) & mask {
		s := &c.slots[i]
		if s.n == 0 {
			return s, false
		}
		if s.k1 == k1 {
			return s, true
		}
	}
}

// Get looks up series[i] for every i with a Key and known[i] false, under
// one read lock. For a series found it sets known[i] and hashes[i], and
// makes series[i].Labels its normalised labels: in place, with the
// cache's strings, shortened when normalising dropped labels with empty
// values. The labels it replaces must be those the key was made from. It
// returns the number found.
func (c *Cache) Get(keys []Key, series []prw.TimeSeries, hashes []uint64, known []bool) int {
	found := 0
	c.mu.RLock()
	defer c.mu.RUnlock()
	// Touch every series' first slot before probing: the loads do not
	// depend on each other, so the CPU overlaps their cache misses, which
	// the probes one after the other (each waiting for its slot) did not.
	// In a cache larger than the CPU caches that halves Get.
	mask := uint64(len(c.slots) - 1)
	var sink uint32
	for i := range keys {
		sink += c.slots[slotIndex(keys[i].k1, mask)].n
	}
	runtime.KeepAlive(sink) // the loads are the point
	for i := range keys {
		k := &keys[i]
		if known[i] || !k.ok {
			continue
		}
		s, ok := c.find(k.k1)
		ls := series[i].Labels
		if !ok || s.k2 != k.k2 || int(s.n) > len(ls) {
			continue
		}
		ls = ls[:s.n]
		packed := c.labels[s.at : s.at+2*s.n]
		for j := range ls {
			ls[j] = prw.Label{Name: c.str(packed[2*j]), Value: c.str(packed[2*j+1])}
		}
		series[i].Labels = ls
		hashes[i], known[i] = s.hash, true
		found++
	}
	return found
}

// str returns the interned string packed names. Chunks are never written
// again where a string was placed, so the string stays valid.
func (c *Cache) str(packed uint64) string {
	n := int(packed & (1<<lenBits - 1))
	if n == 0 {
		return ""
	}
	off := packed >> lenBits
	return unsafe.String(&c.chunks[off>>chunkBits][off&(1<<chunkBits-1)], n)
}

// Put remembers series[i] with series hash hashes[i] under keys[i] for
// every i in which, under one write lock. Their labels must be what the
// key's bytes decode to, normalised.
func (c *Cache) Put(keys []Key, series []prw.TimeSeries, hashes []uint64, which []int) {
	if len(which) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bytes >= c.maxBytes {
		if c.now().Sub(c.since) < MinAge {
			return
		}
		c.reset()
	}
next:
	for _, i := range which {
		if c.bytes >= c.maxBytes {
			return
		}
		k := &keys[i]
		ls := series[i].Labels
		if !k.ok || len(ls) == 0 {
			continue
		}
		for _, l := range ls {
			if len(l.Name) >= 1<<lenBits || len(l.Value) >= 1<<lenBits {
				continue next
			}
		}
		s, ok := c.find(k.k1)
		if ok {
			continue // another request put it, or a 64-bit collision: keep the first
		}
		at := uint32(len(c.labels))
		for _, l := range ls {
			c.labels = append(c.labels, c.intern(l.Name), c.intern(l.Value))
		}
		*s = slot{k1: k.k1, k2: k.k2, hash: hashes[i], at: at, n: uint32(len(ls))}
		c.bytes += 16 * len(ls)
		if c.used++; 2*c.used > len(c.slots) {
			c.grow()
		}
	}
}

// intern returns s packed, copying s the first time: cached labels never
// alias the request they came from.
func (c *Cache) intern(s string) uint64 {
	if s == "" {
		return 0
	}
	if p, ok := c.strs[s]; ok {
		return p
	}
	var chunk []byte
	if n := len(c.chunks); n > 0 && len(c.chunks[n-1])+len(s) <= cap(c.chunks[n-1]) {
		chunk = c.chunks[n-1]
	} else {
		// Chunks of 1 MiB, smaller in a small cache.
		chunk = make([]byte, 0, max(min(1<<chunkBits, c.maxBytes/16), len(s)))
		c.chunks = append(c.chunks, chunk)
		c.bytes += cap(chunk)
	}
	off := uint64(len(c.chunks)-1)<<chunkBits | uint64(len(chunk))
	chunk = append(chunk, s...)
	c.chunks[len(c.chunks)-1] = chunk
	interned := unsafe.String(&chunk[len(chunk)-len(s)], len(s))
	p := off<<lenBits | uint64(len(s))
	c.strs[interned] = p
	c.bytes += stringBytes
	return p
}

// grow doubles the slots.
func (c *Cache) grow() {
	old := c.slots
	c.slots = make([]slot, 2*len(old))
	c.bytes += len(old) * slotBytes
	for i := range old {
		if old[i].n != 0 {
			s, _ := c.find(old[i].k1)
			*s = old[i]
		}
	}
}

// Len returns the number of series cached.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.used
}
