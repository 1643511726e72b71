package prw

import (
	"encoding/binary"
	"math"
	"math/bits"
	"slices"
)

// Encoder builds one io.prometheus.write.v2.Request from TimeSeries: the
// symbol table (with "" at index 0, as the spec requires) followed by the
// series in Append order. Its zero value is ready to use; Reset starts a new
// request and keeps the allocated buffers, so a warmed-up Encoder does not
// allocate.
//
// The symbol table is a map keyed by the appended label, exemplar label,
// help and unit strings themselves, without copying them. Those strings must
// therefore stay valid and unmodified until the next Reset (if they alias a
// request buffer, do not recycle it before then), not just until Bytes: a
// later Append looks them up.
//
// Fields are written only when they are not zero: a sample's value (compared
// bitwise, so -0 and NaN payloads survive), timestamps and start
// timestamps, metadata type/help/unit, and the metadata message when all of
// those are zero. A MetricType outside the enum is written as unknown.
type Encoder struct {
	syms   map[string]uint32
	symBuf []byte // encoded Request.symbols entries
	series []byte // encoded Request.timeseries entries
	out    []byte
	refs   []uint32
	n      int

	// prev caches the symbol refs of the previous series' label names and
	// values by position. Consecutive series mostly share label names and
	// many values, and comparing with the string at the same position is
	// several times cheaper than a map lookup. A zero entry ("", 0) is
	// valid too: "" is always symbol 0.
	prev []cachedSymbol
}

type cachedSymbol struct {
	s   string
	ref uint32
}

// Reset empties the encoder for a new request.
func (e *Encoder) Reset() {
	if e.syms == nil {
		e.syms = make(map[string]uint32)
	} else {
		clear(e.syms)
	}
	e.syms[""] = 0
	e.symBuf = append(e.symBuf[:0], 4<<3|wtBytes, 0)
	e.series = e.series[:0]
	e.n = 0
	clear(e.prev) // refs are per request; also drops references to old strings
}

// Len returns the number of series appended since the last Reset.
func (e *Encoder) Len() int { return e.n }

// Size returns the encoded size of the request built so far, i.e.
// len(Bytes()). Together with SeriesSizeUpperBound it lets callers keep
// requests below a byte limit.
func (e *Encoder) Size() int {
	if e.syms == nil {
		return 2 // the "" symbol
	}
	return len(e.symBuf) + len(e.series)
}

// Bytes returns the encoded request. The slice aliases the encoder's buffer
// and is valid until the next Reset, Append or Bytes call.
func (e *Encoder) Bytes() []byte {
	if e.syms == nil {
		e.Reset()
	}
	e.out = append(append(e.out[:0], e.symBuf...), e.series...)
	return e.out
}

func (e *Encoder) symbol(s string) uint32 {
	if ref, ok := e.syms[s]; ok {
		return ref
	}
	ref := uint32(len(e.syms))
	e.syms[s] = ref
	e.symBuf = append(e.symBuf, 4<<3|wtBytes)
	e.symBuf = binary.AppendUvarint(e.symBuf, uint64(len(s)))
	e.symBuf = append(e.symBuf, s...)
	return ref
}

// Append adds ts to the request. It does not validate ts (see Normalize).
func (e *Encoder) Append(ts *TimeSeries) {
	if e.syms == nil {
		e.Reset()
	}
	// Symbolize first: the message is length-prefixed, so its size must be
	// known before writing, and that depends on the refs.
	refs := e.refs[:0]
	if len(e.prev) < 2*len(ts.Labels) {
		e.prev = append(e.prev, make([]cachedSymbol, 2*len(ts.Labels)-len(e.prev))...)
	}
	prev := e.prev[:2*len(ts.Labels)]
	for i, l := range ts.Labels {
		pn, pv := &prev[2*i], &prev[2*i+1]
		if pn.s != l.Name {
			pn.s, pn.ref = l.Name, e.symbol(l.Name)
		}
		if pv.s != l.Value {
			pv.s, pv.ref = l.Value, e.symbol(l.Value)
		}
		refs = append(refs, pn.ref, pv.ref)
	}
	for i := range ts.Exemplars {
		for _, l := range ts.Exemplars[i].Labels {
			refs = append(refs, e.symbol(l.Name), e.symbol(l.Value))
		}
	}
	var help, unit uint32
	if ts.Metadata.Help != "" {
		help = e.symbol(ts.Metadata.Help)
	}
	if ts.Metadata.Unit != "" {
		unit = e.symbol(ts.Metadata.Unit)
	}
	e.refs = refs
	labelRefs := refs[:2*len(ts.Labels)]

	size := 0
	if len(labelRefs) > 0 {
		size += lenFieldSize(packedSize(labelRefs))
	}
	for i := range ts.Samples {
		size += lenFieldSize(sampleSize(&ts.Samples[i]))
	}
	for i := range ts.Histograms {
		size += lenFieldSize(histogramSize(&ts.Histograms[i]))
	}
	off := len(labelRefs)
	for i := range ts.Exemplars {
		n := 2 * len(ts.Exemplars[i].Labels)
		size += lenFieldSize(exemplarSize(&ts.Exemplars[i], refs[off:off+n]))
		off += n
	}
	typ := ts.Metadata.Type
	if typ > MetricTypeStateset {
		typ = MetricTypeUnknown // not an enum value; decoders would map it so anyway
	}
	mdSize := metadataSize(typ, help, unit)
	if mdSize > 0 {
		size += lenFieldSize(mdSize)
	}

	b := slices.Grow(e.series, 1+binary.MaxVarintLen64+size)
	b = append(b, 5<<3|wtBytes)
	b = binary.AppendUvarint(b, uint64(size))
	if len(labelRefs) > 0 {
		b = appendPackedRefs(b, 1<<3|wtBytes, labelRefs)
	}
	for i := range ts.Samples {
		s := &ts.Samples[i]
		b = append(b, 2<<3|wtBytes)
		b = binary.AppendUvarint(b, uint64(sampleSize(s)))
		if v := math.Float64bits(s.Value); v != 0 {
			b = append(b, 1<<3|wtFixed64)
			b = binary.LittleEndian.AppendUint64(b, v)
		}
		if s.Timestamp != 0 {
			b = append(b, 2<<3|wtVarint)
			b = binary.AppendUvarint(b, uint64(s.Timestamp))
		}
		if s.StartTimestamp != 0 {
			b = append(b, 3<<3|wtVarint)
			b = binary.AppendUvarint(b, uint64(s.StartTimestamp))
		}
	}
	for i := range ts.Histograms {
		h := &ts.Histograms[i]
		b = append(b, 3<<3|wtBytes)
		b = binary.AppendUvarint(b, uint64(histogramSize(h)))
		b = append(b, h.Raw...)
		if h.StartTimestamp != h.rawStart {
			b = append(b, byte(17<<3|wtVarint)|0x80, byte((17<<3|wtVarint)>>7))
			b = binary.AppendUvarint(b, uint64(h.StartTimestamp))
		}
	}
	off = len(labelRefs)
	for i := range ts.Exemplars {
		x := &ts.Exemplars[i]
		n := 2 * len(x.Labels)
		xr := refs[off : off+n]
		off += n
		b = append(b, 4<<3|wtBytes)
		b = binary.AppendUvarint(b, uint64(exemplarSize(x, xr)))
		if n > 0 {
			b = appendPackedRefs(b, 1<<3|wtBytes, xr)
		}
		if v := math.Float64bits(x.Value); v != 0 {
			b = append(b, 2<<3|wtFixed64)
			b = binary.LittleEndian.AppendUint64(b, v)
		}
		if x.Timestamp != 0 {
			b = append(b, 3<<3|wtVarint)
			b = binary.AppendUvarint(b, uint64(x.Timestamp))
		}
	}
	if mdSize > 0 {
		b = append(b, 5<<3|wtBytes, byte(mdSize)) // mdSize < 128
		if typ != 0 {
			b = append(b, 1<<3|wtVarint, byte(typ))
		}
		if help != 0 {
			b = append(b, 3<<3|wtVarint)
			b = binary.AppendUvarint(b, uint64(help))
		}
		if unit != 0 {
			b = append(b, 4<<3|wtVarint)
			b = binary.AppendUvarint(b, uint64(unit))
		}
	}
	e.series = b
	e.n++
}

func varintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// lenFieldSize is the size of a length-delimited field with a one-byte tag.
func lenFieldSize(n int) int { return 1 + varintLen(uint64(n)) + n }

func packedSize(refs []uint32) int {
	n := 0
	for _, r := range refs {
		n += varintLen(uint64(r))
	}
	return n
}

func appendPackedRefs(b []byte, k uint64, refs []uint32) []byte {
	b = append(b, byte(k))
	b = binary.AppendUvarint(b, uint64(packedSize(refs)))
	for _, r := range refs {
		b = binary.AppendUvarint(b, uint64(r))
	}
	return b
}

func sampleSize(s *Sample) int {
	n := 0
	if math.Float64bits(s.Value) != 0 {
		n += 9
	}
	if s.Timestamp != 0 {
		n += 1 + varintLen(uint64(s.Timestamp))
	}
	if s.StartTimestamp != 0 {
		n += 1 + varintLen(uint64(s.StartTimestamp))
	}
	return n
}

func histogramSize(h *Histogram) int {
	n := len(h.Raw)
	if h.StartTimestamp != h.rawStart {
		n += 2 + varintLen(uint64(h.StartTimestamp))
	}
	return n
}

func exemplarSize(x *Exemplar, refs []uint32) int {
	n := 0
	if len(refs) > 0 {
		n += lenFieldSize(packedSize(refs))
	}
	if math.Float64bits(x.Value) != 0 {
		n += 9
	}
	if x.Timestamp != 0 {
		n += 1 + varintLen(uint64(x.Timestamp))
	}
	return n
}

func metadataSize(t MetricType, help, unit uint32) int {
	n := 0
	if t != 0 {
		n += 1 + varintLen(uint64(t))
	}
	if help != 0 {
		n += 1 + varintLen(uint64(help))
	}
	if unit != 0 {
		n += 1 + varintLen(uint64(unit))
	}
	return n
}

// SeriesSizeUpperBound returns an upper bound on the number of bytes
// Encoder.Append(ts) adds to the request, counting every string of ts as a
// new symbol. It does no map lookups, so callers can use it to decide
// whether ts still fits below a byte limit before appending.
func SeriesSizeUpperBound(ts *TimeSeries) int {
	const maxRef = 5 // a uint32 varint
	syms := 0
	for _, l := range ts.Labels {
		syms += lenFieldSize(len(l.Name)) + lenFieldSize(len(l.Value))
	}
	body := 0
	if len(ts.Labels) > 0 {
		body += lenFieldSize(2 * maxRef * len(ts.Labels))
	}
	// value, timestamp and start timestamp at their largest.
	body += len(ts.Samples) * lenFieldSize(9+11+11)
	for i := range ts.Histograms {
		body += lenFieldSize(len(ts.Histograms[i].Raw) + 2 + binary.MaxVarintLen64)
	}
	for i := range ts.Exemplars {
		x := &ts.Exemplars[i]
		n := 9 + 11
		if len(x.Labels) > 0 {
			n += lenFieldSize(2 * maxRef * len(x.Labels))
		}
		body += lenFieldSize(n)
		for _, l := range x.Labels {
			syms += lenFieldSize(len(l.Name)) + lenFieldSize(len(l.Value))
		}
	}
	body += lenFieldSize(2 + 2*(1+maxRef))
	syms += lenFieldSize(len(ts.Metadata.Help)) + lenFieldSize(len(ts.Metadata.Unit))
	return lenFieldSize(body) + syms
}
