package pipeline

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"

	"github.com/VictoriaMetrics/fastcache"
	"github.com/cespare/xxhash/v2"

	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
)

// Result is a Decision plus what later stages need: the series hash of
// the input (record.SeriesHash, which the edge also computes) and of the
// output, and the output metric name.
type Result struct {
	Decision
	RawHash uint64
	OutHash uint64
	Metric  string
}

// Processor applies a Set's pipelines with a cache of per-series
// decisions, so a series already seen costs building its key, two hashes
// and one cache lookup, and no allocation. The cache (fastcache) has a fixed
// memory bound and no GC cost; entries of an older Set generation are
// never served and age out. A Processor is used by one goroutine; the
// cache may be shared.
type Processor struct {
	cache  *fastcache.Cache
	key    []byte
	ckey   [20]byte
	digest *xxhash.Digest
	// arena and lbls back the labels of changed decisions read from the
	// cache; Result labels alias them. BeginBatch alternates between two
	// of each, so a batch's labels stay intact through the next batch
	// (an encoder may hold them until it is reset for the batch after).
	arena, spareArena []byte
	lbls, spareLbls   []prw.Label

	hits, misses atomic.Uint64
}

// NewProcessor returns a Processor caching in cache.
func NewProcessor(cache *fastcache.Cache) *Processor {
	return &Processor{cache: cache, digest: xxhash.NewWithSeed(keySeed)}
}

// keySeed seeds the second half of the 128-bit cache key.
const keySeed = 0x9e3779b97f4a7c15

// NewCache returns a decision cache of at most maxBytes (fastcache rounds
// up to 32 MiB).
func NewCache(maxBytes int) *fastcache.Cache { return fastcache.New(maxBytes) }

// BeginBatch starts a batch. The labels of a batch's results stay valid
// until the second BeginBatch after it: they alias buffers that are
// reused then. (The stream stage encodes a batch's series before the next
// batch starts, and its encoders drop them when the one after starts.)
func (p *Processor) BeginBatch() {
	p.arena, p.spareArena = p.spareArena[:0], p.arena
	p.lbls, p.spareLbls = p.spareLbls[:0], p.lbls
}

// Stats returns cache hits and misses so far.
func (p *Processor) Stats() (hits, misses uint64) { return p.hits.Load(), p.misses.Load() }

// Decision value layout in the cache: flags, drop reason, and for changed
// labels the output hash and the labels as (uvarint length, bytes) pairs.
const (
	flagChanged = 1 << iota
	flagLimited
	flagTruncated
)

var dropCodes = []DropReason{"", DropRelabel, DropNoMetricName, DropLongValue}

func dropCode(r DropReason) byte {
	for i, d := range dropCodes {
		if d == r {
			return byte(i)
		}
	}
	return 0
}

// Process runs tenant's pipeline of set over in (sorted labels).
//
// The cache key is a 128-bit hash of tenant and labels (two seeds of
// xxhash) plus the Set generation, not the labels themselves: 20 bytes
// instead of hundreds keep the cache's working set in the CPU caches,
// which made lookups several times faster. Two different series share a
// key with probability about n²/2¹²⁹ — for a billion series, 10⁻²¹.
func (p *Processor) Process(set *Set, tenant string, in []prw.Label) Result {
	k := record.AppendSeriesKey(p.key[:0], tenant, in)
	p.key = k
	raw := xxhash.Sum64(k)
	p.digest.ResetWithSeed(keySeed)
	_, _ = p.digest.Write(k)
	binary.LittleEndian.PutUint64(p.ckey[0:], raw)
	binary.LittleEndian.PutUint64(p.ckey[8:], p.digest.Sum64())
	binary.LittleEndian.PutUint32(p.ckey[16:], set.gen)
	k = p.ckey[:]

	start := len(p.arena)
	if v, ok := p.cache.HasGet(p.arena, k); ok && len(v) >= 2+start {
		p.hits.Add(1)
		if v[start]&flagChanged == 0 || v[start+1] != 0 {
			// Nothing will alias these bytes: give them back.
			p.arena = v[:start]
			return p.decode(v[start:start+2], in, raw)
		}
		p.arena = v
		return p.decode(v[start:], in, raw)
	}
	p.misses.Add(1)
	d := set.For(tenant).Apply(tenant, in)
	res := Result{Decision: d, RawHash: raw, OutHash: raw}
	if d.Drop == "" {
		if d.Changed {
			res.OutHash = xxhash.Sum64(record.AppendSeriesKey(nil, tenant, d.Labels))
		}
		res.Metric = MetricName(d.Labels)
	}
	p.cache.Set(k, encodeDecision(&res))
	return res
}

func (p *Processor) decode(v []byte, in []prw.Label, raw uint64) Result {
	flags, drop := v[0], v[1]
	res := Result{RawHash: raw, OutHash: raw}
	if int(drop) < len(dropCodes) {
		res.Drop = dropCodes[drop]
	}
	res.LabelsLimited = flags&flagLimited != 0
	res.ValuesTruncated = flags&flagTruncated != 0
	if res.Drop != "" {
		return res
	}
	if flags&flagChanged == 0 {
		res.Labels = in
		res.Metric = MetricName(in)
		return res
	}
	res.Changed = true
	v = v[2:]
	res.OutHash = binary.LittleEndian.Uint64(v)
	v = v[8:]
	n, w := binary.Uvarint(v)
	v = v[w:]
	start := len(p.lbls)
	for i := uint64(0); i < n; i++ {
		var l prw.Label
		l.Name, v = readString(v)
		l.Value, v = readString(v)
		p.lbls = append(p.lbls, l)
	}
	res.Labels = p.lbls[start:len(p.lbls):len(p.lbls)]
	res.Metric = MetricName(res.Labels)
	return res
}

// readString returns a string aliasing b: b lives in the arena, which is
// never written again once read.
func readString(b []byte) (string, []byte) {
	n, w := binary.Uvarint(b)
	b = b[w:]
	if n == 0 {
		return "", b
	}
	return unsafe.String(&b[0], int(n)), b[n:]
}

func encodeDecision(r *Result) []byte {
	var flags byte
	if r.Changed {
		flags |= flagChanged
	}
	if r.LabelsLimited {
		flags |= flagLimited
	}
	if r.ValuesTruncated {
		flags |= flagTruncated
	}
	v := []byte{flags, dropCode(r.Drop)}
	if r.Drop != "" || !r.Changed {
		return v
	}
	v = binary.LittleEndian.AppendUint64(v, r.OutHash)
	v = binary.AppendUvarint(v, uint64(len(r.Labels)))
	for _, l := range r.Labels {
		v = binary.AppendUvarint(v, uint64(len(l.Name)))
		v = append(v, l.Name...)
		v = binary.AppendUvarint(v, uint64(len(l.Value)))
		v = append(v, l.Value...)
	}
	return v
}
