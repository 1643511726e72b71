package gen

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/golang/snappy"
)

// Timestamps are written as 6-byte varints (remote-write) or 19 decimal
// digits of nanoseconds (line protocol); both hold every millisecond from
// 1971 (2^35 ms) until 2109 (2^42 ms), so they are patched in place.
const (
	MinTimestamp = int64(1) << 35
	MaxTimestamp = int64(1)<<42 - 1
)

// valueWidth is the width of a line-protocol float: 16 significant digits
// in e-notation ("1.234500000000000e+04") is 21 characters for every
// non-negative value below 1e100, and exact for the generator's values
// (integers and sixteenths below 1e10).
const valueWidth = 21

// Batch is one request's worth of series with a pre-encoded body. A Batch
// is not safe for concurrent use: one sender owns it, which is also what
// keeps every series' samples in order.
type Batch struct {
	pop    *Population
	index  int
	proto  Protocol
	raw    []byte // the uncompressed body, patched in place
	out    []byte // the body as sent
	tsPos  []int32
	series []series
	hists  []histGroup
	insts  []instState
	// explodePos are the offsets of the session_id values.
	explodePos []int32
	round      uint32
	values     []float64
	ids        []SeriesID
	changed    bool
	epoch      uint32
}

type series struct {
	slot    int32
	inst    int32 // index into Batch.insts
	hist    int32 // index into Batch.hists, or -1
	kind    Kind
	bucket  int16
	explode bool
	valPos  int32
	v       float64
	step    float64
	rng     uint64
}

type histGroup struct {
	inst    int32
	round   uint32
	rng     uint64
	bounds  []int64
	buckets []float64 // cumulative counts, +Inf last
	sum     float64   // in seconds, a multiple of 1/16
	count   float64
}

type instState struct {
	inst   int
	gen    uint32
	podPos []int32
}

// Batches cuts the population into batches of Options.BatchSize series.
func (p *Population) Batches() []*Batch {
	var bs []*Batch
	for start := 0; start < p.opts.Series; start += p.opts.BatchSize {
		end := min(start+p.opts.BatchSize, p.opts.Series)
		bs = append(bs, p.newBatch(len(bs), start, end))
	}
	return bs
}

func (p *Population) newBatch(index, start, end int) *Batch {
	b := &Batch{pop: p, index: index, proto: p.opts.Protocol}
	instIdx := map[int]int32{}
	histIdx := map[[2]int]int32{}
	for slot := start; slot < end; slot++ {
		inst := slot / SeriesPerInstance
		ii, ok := instIdx[inst]
		if !ok {
			ii = int32(len(b.insts))
			instIdx[inst] = ii
			b.insts = append(b.insts, instState{inst: inst})
		}
		e := &exposition[slot%SeriesPerInstance]
		s := series{slot: int32(slot), inst: ii, hist: -1, kind: e.kind, bucket: int16(e.bucket), explode: p.Exploding(slot)}
		if e.hist >= 0 {
			key := [2]int{inst, e.hist}
			hi, ok := histIdx[key]
			if !ok {
				hi = int32(len(b.hists))
				histIdx[key] = hi
				b.hists = append(b.hists, histGroup{inst: ii, bounds: e.bounds, buckets: make([]float64, len(e.bounds)+1)})
			}
			s.hist = hi
		}
		b.series = append(b.series, s)
	}
	b.values = make([]float64, len(b.series))
	b.ids = make([]SeriesID, len(b.series))
	for i := range b.insts {
		b.resetInstance(int32(i))
	}
	switch b.proto {
	case PRW1:
		b.encodePRW1()
	case PRW2:
		b.encodePRW2()
	case Influx:
		b.encodeInflux()
	}
	return b
}

// Index is the batch's position in Population.Batches.
func (b *Batch) Index() int { return b.index }

// Len is the number of series (samples per request).
func (b *Batch) Len() int { return len(b.series) }

// Round is the number of bodies generated so far.
func (b *Batch) Round() uint32 { return b.round }

// Values are the sample values of the last body, by series.
func (b *Batch) Values() []float64 { return b.values }

// IDs are the identities of the series of the last body.
func (b *Batch) IDs() []SeriesID { return b.ids }

// IdentityChanged reports whether any series of the last body differs from
// the body before (churn or explosion).
func (b *Batch) IdentityChanged() bool { return b.changed }

// Churn replaces the instances that churn at every epoch up to epoch:
// their pod label changes (a new generation) and their counters restart,
// as when a pod is rescheduled. It takes effect with the next body.
func (b *Batch) Churn(epoch uint32) {
	for ; b.epoch < epoch; b.epoch++ {
		for i := range b.insts {
			if b.pop.Churns(b.epoch+1, b.insts[i].inst) {
				b.insts[i].gen++
				b.resetInstance(int32(i))
				b.patchPod(int32(i))
				b.changed = true
			}
		}
	}
}

// resetInstance starts the instance's values afresh for its generation.
func (b *Batch) resetInstance(ii int32) {
	st := &b.insts[ii]
	seed := b.pop.opts.Seed
	for i := range b.series {
		s := &b.series[i]
		if s.inst != ii {
			continue
		}
		s.rng = mix(seed, 0x5e, uint64(s.slot)<<24|uint64(st.gen)) | 1
		b.ids[i] = SeriesID{Slot: s.slot, Gen: st.gen}
		name := exposition[int(s.slot)%SeriesPerInstance].name
		switch s.kind {
		case Counter:
			if st.gen == 0 {
				s.v = float64(next(&s.rng) % 1_000_000) // a counter that was already running
			} else {
				s.v = 0
			}
			s.step = float64(1 + next(&s.rng)%1000)
		case Gauge:
			switch {
			case name == "target_up":
				s.v, s.step = 1, 0
			case strings.HasSuffix(name, "_bytes"):
				s.v, s.step = float64(1<<28+next(&s.rng)%(1<<32)), 4096
			default:
				s.v, s.step = float64(next(&s.rng)%1000), 1.0/16
			}
		}
	}
	for i := range b.hists {
		h := &b.hists[i]
		if h.inst != ii {
			continue
		}
		h.rng = mix(seed, 0x41, uint64(st.inst)<<24|uint64(i)<<8|uint64(st.gen)) | 1
		clear(h.buckets)
		h.sum, h.count = 0, 0
	}
}

// next is xorshift64*.
func next(x *uint64) uint64 {
	*x ^= *x >> 12
	*x ^= *x << 25
	*x ^= *x >> 27
	return *x * 2685821657736338717
}

func (h *histGroup) advance() {
	running := 0.0
	for j := range h.buckets {
		inc := float64(next(&h.rng) % 4)
		running += inc
		h.buckets[j] += running
		bound := h.bounds[len(h.bounds)-1] * 2
		if j < len(h.bounds) {
			bound = h.bounds[j]
		}
		h.sum += inc * float64(bound) / 16
	}
	h.count += running
}

// Next advances every series by one sample at timestamp ts (Unix
// milliseconds) and returns the request body. The body stays valid until
// the next call.
func (b *Batch) Next(ts int64) ([]byte, error) {
	if ts < MinTimestamp || ts > MaxTimestamp {
		return nil, fmt.Errorf("timestamp %d ms is outside the years 1971-2109 the generator encodes", ts)
	}
	b.round++
	b.changed = b.changed || b.round == 1
	if len(b.explodePos) > 0 {
		v := explodeValue(b.round)
		for _, pos := range b.explodePos {
			copy(b.raw[pos:], v)
		}
		for i := range b.series {
			if b.series[i].explode {
				b.ids[i].Explode = b.round
			}
		}
		b.changed = true
	}
	for i := range b.hists {
		b.hists[i].advance()
	}
	for i := range b.series {
		s := &b.series[i]
		switch s.kind {
		case Counter:
			s.v += s.step * float64(next(&s.rng)%4)
		case Gauge:
			d := float64(int64(next(&s.rng)%33)-16) * s.step
			s.v = max(0, s.v+d)
		case Bucket:
			s.v = b.hists[s.hist].buckets[s.bucket]
		case HistSum:
			s.v = b.hists[s.hist].sum
		case HistCount:
			s.v = b.hists[s.hist].count
		}
		b.values[i] = s.v
	}
	switch b.proto {
	case PRW1, PRW2:
		var tsb [6]byte
		putVarint6(tsb[:], uint64(ts))
		for i := range b.series {
			binary.LittleEndian.PutUint64(b.raw[b.series[i].valPos:], math.Float64bits(b.values[i]))
		}
		for _, pos := range b.tsPos {
			copy(b.raw[pos:pos+6], tsb[:])
		}
		b.out = snappy.Encode(b.out[:cap(b.out)], b.raw)
	case Influx:
		var tsb [19]byte
		strconv.AppendInt(tsb[:0], ts*1_000_000, 10)
		var vb [32]byte
		for i := range b.series {
			v := strconv.AppendFloat(vb[:0], b.values[i], 'e', 15, 64)
			if len(v) != valueWidth {
				return nil, fmt.Errorf("value %g does not fit the line-protocol slot", b.values[i])
			}
			copy(b.raw[b.series[i].valPos:], v)
		}
		for _, pos := range b.tsPos {
			copy(b.raw[pos:pos+19], tsb[:])
		}
		b.out = b.raw
	}
	return b.out, nil
}

// ResetChanged is called once the identities of the last body were read.
func (b *Batch) ResetChanged() { b.changed = false }

func (b *Batch) patchPod(ii int32) {
	st := &b.insts[ii]
	v := b.pop.podValue(st.inst, st.gen)
	for _, pos := range st.podPos {
		copy(b.raw[pos:], v)
	}
}

// putVarint6 writes v as a protobuf varint of exactly 6 bytes, which is its
// shortest encoding for 2^35 <= v < 2^42.
func putVarint6(b []byte, v uint64) {
	for i := 0; i < 5; i++ {
		b[i] = byte(v) | 0x80
		v >>= 7
	}
	b[5] = byte(v)
}
