package pipeline

import (
	"encoding/binary"
	"hash/maphash"
	"strings"
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
// and one lookup, and no allocation. A Processor is used by one goroutine.
//
// Decisions are cached at two levels. The first is the Processor's own
// table of recent decisions (decisionTable): a Go map probe, with the
// output labels kept as interned strings so that they need no copying and
// equal strings share memory, which the record encoder then compares
// cheaply. The second is a fastcache (bounded memory, no GC cost, may be
// shared between Processors) that the first falls back to; it holds every
// decision until it ages out. Entries of an older Set generation are never
// served.
type Processor struct {
	cache  *fastcache.Cache
	recent decisionTable
	key    []byte
	ckey   [20]byte
	// arena and lbls back the labels of decisions read from fastcache and
	// of changed decisions from the recent table; Result labels alias
	// them. BeginBatch alternates between two of each, so a batch's labels
	// stay intact through the next batch (an encoder may hold them until
	// it is reset for the batch after).
	arena, spareArena []byte
	lbls, spareLbls   []prw.Label

	hits, misses atomic.Uint64
}

// NewProcessor returns a Processor caching in cache. Its table of recent
// decisions is bounded by half of cache's size.
func NewProcessor(cache *fastcache.Cache) *Processor {
	var st fastcache.Stats
	cache.UpdateStats(&st)
	p := &Processor{cache: cache}
	p.recent.init(int(st.MaxBytesSize / 2))
	return p
}

// keySeed seeds the second half of the 128-bit cache key, a maphash
// (hardware AES where there is, several times cheaper than a second
// xxhash). Cache keys live in this process only, and every Processor
// sharing a cache shares the seed.
var keySeed = maphash.MakeSeed()

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

// Stats returns cache hits and misses so far; a hit is a decision served
// by either level.
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
// The cache key is a 128-bit hash of tenant and labels (the series hash
// and a seeded maphash) plus the Set generation, not the labels themselves: 20 bytes
// instead of hundreds keep the cache's working set in the CPU caches,
// which made lookups several times faster. Two different series share a
// key with probability about n²/2¹²⁹ — for a billion series, 10⁻²¹.
func (p *Processor) Process(set *Set, tenant string, in []prw.Label) Result {
	k := record.AppendSeriesKey(p.key[:0], tenant, in)
	p.key = k
	raw := xxhash.Sum64(k)
	check := maphash.Bytes(keySeed, k)

	if e := p.recent.get(raw, check, set.gen); e != nil {
		p.hits.Add(1)
		return p.fromRecent(e, in, raw)
	}

	binary.LittleEndian.PutUint64(p.ckey[0:], raw)
	binary.LittleEndian.PutUint64(p.ckey[8:], check)
	binary.LittleEndian.PutUint32(p.ckey[16:], set.gen)
	k = p.ckey[:]
	start := len(p.arena)
	if v, ok := p.cache.HasGet(p.arena, k); ok && len(v) >= 2+start {
		p.hits.Add(1)
		var res Result
		if v[start]&flagChanged == 0 || v[start+1] != 0 {
			// Nothing will alias these bytes: give them back.
			p.arena = v[:start]
			res = p.decode(v[start:start+2], in, raw)
		} else {
			p.arena = v
			res = p.decode(v[start:], in, raw)
		}
		p.recent.put(raw, check, set.gen, &res)
		return res
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
	p.recent.put(raw, check, set.gen, &res)
	return res
}

// fromRecent turns an entry of the recent table into a Result.
func (p *Processor) fromRecent(e *recentEntry, in []prw.Label, raw uint64) Result {
	res := Result{RawHash: raw, OutHash: e.outHash}
	res.Drop = dropCodes[e.drop]
	res.LabelsLimited = e.flags&flagLimited != 0
	res.ValuesTruncated = e.flags&flagTruncated != 0
	if res.Drop != "" {
		return res
	}
	if e.flags&flagChanged == 0 {
		res.Labels = in
		res.Metric = MetricName(in)
		return res
	}
	res.Changed = true
	start := len(p.lbls)
	p.lbls = p.recent.appendLabels(p.lbls, e)
	res.Labels = p.lbls[start:len(p.lbls):len(p.lbls)]
	res.Metric = p.recent.cur.strs[e.metric]
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

// decisionTable holds recent decisions in two generations of about
// maxBytes/2 each: when the current one is full it becomes the previous
// one and an empty one starts, and a decision found in the previous one
// moves to the current one. Decisions of series still being written
// therefore stay, and memory stays bounded. Nothing in a generation holds
// a pointer except its interned strings, so the garbage collector does
// not walk the entries.
type decisionTable struct {
	genBytes  int
	cur, prev *decisionGen
}

type decisionGen struct {
	index   map[uint64]uint32 // raw hash → entries index
	entries []recentEntry
	labels  []uint32 // string IDs of output labels: name, value, name, …
	strs    []string // interned strings by ID
	strIDs  map[string]uint32
	bytes   int // estimated memory
}

// recentEntry is one decision. Labels of a changed decision are
// labels[labelsAt : labelsAt+2*labelsLen] of its generation.
type recentEntry struct {
	check     uint64 // second half of the 128-bit key
	outHash   uint64
	setGen    uint32
	labelsAt  uint32
	labelsLen uint32
	metric    uint32 // string ID of the output metric name
	flags     uint8
	drop      uint8
}

// entryBytes estimates the memory of one entry: the entry, and its share
// of the index map.
const entryBytes = int(unsafe.Sizeof(recentEntry{})) + 24

// minGenBytes keeps generations useful when the cache is tiny.
const minGenBytes = 1 << 20

func (t *decisionTable) init(maxBytes int) {
	t.genBytes = max(maxBytes/2, minGenBytes)
	t.cur, t.prev = newDecisionGen(), newDecisionGen()
}

func newDecisionGen() *decisionGen {
	return &decisionGen{index: map[uint64]uint32{}, strIDs: map[string]uint32{}}
}

// get returns the entry of the series with hashes raw and check for Set
// generation setGen, or nil.
func (t *decisionTable) get(raw, check uint64, setGen uint32) *recentEntry {
	if i, ok := t.cur.index[raw]; ok {
		if e := &t.cur.entries[i]; e.check == check && e.setGen == setGen {
			return e
		}
		return nil
	}
	i, ok := t.prev.index[raw]
	if !ok {
		return nil
	}
	e := &t.prev.entries[i]
	if e.check != check || e.setGen != setGen {
		return nil
	}
	// Move it to the current generation, re-interning its strings there.
	res := Result{RawHash: raw, OutHash: e.outHash}
	res.Drop = dropCodes[e.drop]
	res.Changed = e.flags&flagChanged != 0
	res.LabelsLimited = e.flags&flagLimited != 0
	res.ValuesTruncated = e.flags&flagTruncated != 0
	if res.Changed && res.Drop == "" {
		res.Labels = t.prev.appendLabels(nil, e)
		res.Metric = t.prev.strs[e.metric]
	}
	return t.put(raw, check, setGen, &res)
}

// put records res as the decision for the series with hashes raw and
// check, and returns its entry.
func (t *decisionTable) put(raw, check uint64, setGen uint32, res *Result) *recentEntry {
	if t.cur.bytes >= t.genBytes {
		t.prev, t.cur = t.cur, newDecisionGen()
	}
	g := t.cur
	e := recentEntry{check: check, outHash: res.OutHash, setGen: setGen, drop: dropCode(res.Drop)}
	if res.Changed {
		e.flags |= flagChanged
	}
	if res.LabelsLimited {
		e.flags |= flagLimited
	}
	if res.ValuesTruncated {
		e.flags |= flagTruncated
	}
	if res.Changed && res.Drop == "" {
		e.labelsAt, e.labelsLen = uint32(len(g.labels)), uint32(len(res.Labels))
		for _, l := range res.Labels {
			g.labels = append(g.labels, g.intern(l.Name), g.intern(l.Value))
		}
		e.metric = g.intern(res.Metric)
		g.bytes += 8 * len(res.Labels)
	}
	i, ok := g.index[raw]
	if ok {
		g.entries[i] = e // a stale generation of the Set, or a 64-bit collision
	} else {
		i = uint32(len(g.entries))
		g.index[raw] = i
		g.entries = append(g.entries, e)
		g.bytes += entryBytes
	}
	return &g.entries[i]
}

// intern returns the ID of s in g, copying s the first time: results
// alias the copy, never the record s came from.
func (g *decisionGen) intern(s string) uint32 {
	if id, ok := g.strIDs[s]; ok {
		return id
	}
	id := uint32(len(g.strs))
	s = strings.Clone(s)
	g.strs = append(g.strs, s)
	g.strIDs[s] = id
	g.bytes += len(s) + 48 // the string, its header and its map entry
	return id
}

// appendLabels appends the output labels of e, an entry of the current
// generation, to dst.
func (t *decisionTable) appendLabels(dst []prw.Label, e *recentEntry) []prw.Label {
	return t.cur.appendLabels(dst, e)
}

func (g *decisionGen) appendLabels(dst []prw.Label, e *recentEntry) []prw.Label {
	ids := g.labels[e.labelsAt : e.labelsAt+2*e.labelsLen]
	for i := 0; i < len(ids); i += 2 {
		dst = append(dst, prw.Label{Name: g.strs[ids[i]], Value: g.strs[ids[i+1]]})
	}
	return dst
}
