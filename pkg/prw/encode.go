package prw

import (
	"encoding/binary"
	"math"
	"math/bits"
	"unsafe"
)

// Encoder builds one io.prometheus.write.v2.Request from TimeSeries: the
// symbol table (with "" at index 0, as the spec requires) followed by the
// series in Append order. Its zero value is ready to use; Reset starts a new
// request and keeps the allocated buffers, so a warmed-up Encoder does not
// allocate.
//
// The symbol table keeps the appended label, exemplar label, help and unit
// strings themselves, without copying them. Those strings must
// therefore stay valid and unmodified until the next Reset (if they alias a
// request buffer, do not recycle it before then), not just until Bytes: a
// later Append looks them up.
//
// Fields are written only when they are not zero: a sample's value (compared
// bitwise, so -0 and NaN payloads survive), timestamps and start
// timestamps, metadata type/help/unit, and the metadata message when all of
// those are zero. A MetricType outside the enum is written as unknown.
type Encoder struct {
	syms   symbolTable
	symBuf []byte // encoded Request.symbols entries
	series []byte // encoded Request.timeseries entries
	out    []byte
	n      int

	// prev holds the symbol refs of the previous series' label names and
	// values by position. Consecutive series mostly share label names and
	// many values, and comparing with the string at the same position is
	// several times cheaper than a table lookup. A zero entry is valid
	// too: "" is always symbol 0.
	prev []uint32
}

// Reset empties the encoder for a new request.
func (e *Encoder) Reset() {
	e.syms.reset()
	e.symBuf = append(e.symBuf[:0], 4<<3|wtBytes, 0)
	e.series = e.series[:0]
	e.n = 0
	clear(e.prev) // refs are per request
}

// Mark is the state of an Encoder at one moment, to return to with
// Rollback.
type Mark struct{ series, symBuf, syms, n int }

// Mark returns the encoder's current state.
func (e *Encoder) Mark() Mark {
	if e.syms.slots == nil {
		e.Reset()
	}
	return Mark{series: len(e.series), symBuf: len(e.symBuf), syms: len(e.syms.strs), n: e.n}
}

// Rollback undoes every Append since m was taken, symbols included, as if
// they had not happened. It lets a caller append first and check the
// size after, instead of bounding every series beforehand; it is meant
// for the rare series that does not fit and costs a walk over the symbols
// it removes.
func (e *Encoder) Rollback(m Mark) {
	e.series = e.series[:m.series]
	e.symBuf = e.symBuf[:m.symBuf]
	e.n = m.n
	e.syms.truncate(m.syms)
	for i, ref := range e.prev {
		if int(ref) >= m.syms {
			e.prev[i] = 0
		}
	}
}

// Len returns the number of series appended since the last Reset.
func (e *Encoder) Len() int { return e.n }

// Size returns the encoded size of the request built so far, i.e.
// len(Bytes()). Together with SeriesSizeUpperBound it lets callers keep
// requests below a byte limit.
func (e *Encoder) Size() int {
	if e.syms.slots == nil {
		return 2 // the "" symbol
	}
	return len(e.symBuf) + len(e.series)
}

// Bytes returns the encoded request. The slice aliases the encoder's buffer
// and is valid until the next Reset, Append or Bytes call.
func (e *Encoder) Bytes() []byte {
	if e.syms.slots == nil {
		e.Reset()
	}
	e.out = append(append(e.out[:0], e.symBuf...), e.series...)
	return e.out
}

// AppendTo appends the encoded request to b: Bytes without the
// intermediate copy, for callers that keep the request.
func (e *Encoder) AppendTo(b []byte) []byte {
	if e.syms.slots == nil {
		e.Reset()
	}
	return append(append(b, e.symBuf...), e.series...)
}

func (e *Encoder) symbol(s string) uint32 {
	ref, isNew := e.syms.ref(s)
	if isNew {
		e.symBuf = append(e.symBuf, 4<<3|wtBytes)
		e.symBuf = binary.AppendUvarint(e.symBuf, uint64(len(s)))
		e.symBuf = append(e.symBuf, s...)
	}
	return ref
}

// Append adds ts to the request. It does not validate ts (see Normalize).
//
// The series is written in one pass: length prefixes get one byte, which
// fits nearly every series and label list, and are widened afterwards in
// the rare case they do not (patchLen). Computing every size first, as
// the generated marshallers do, walked each series twice and cost a
// quarter of Append's time.
func (e *Encoder) Append(ts *TimeSeries) {
	if e.syms.slots == nil {
		e.Reset()
	}
	b := append(e.series, 5<<3|wtBytes, 0)
	start := len(b)
	if len(ts.Labels) > 0 {
		if len(e.prev) < 2*len(ts.Labels) {
			e.prev = append(e.prev, make([]uint32, 2*len(ts.Labels)-len(e.prev))...)
		}
		prev := e.prev[:2*len(ts.Labels)]
		strs := e.syms.strs
		b = append(b, 1<<3|wtBytes, 0)
		refsStart := len(b)
		for i := range ts.Labels {
			l := &ts.Labels[i]
			pn, pv := &prev[2*i], &prev[2*i+1]
			if !sameString(strs[*pn], l.Name) {
				*pn = e.symbol(l.Name)
				strs = e.syms.strs
			}
			if !sameString(strs[*pv], l.Value) {
				*pv = e.symbol(l.Value)
				strs = e.syms.strs
			}
			b = appendRef(appendRef(b, *pn), *pv)
		}
		b = patchLen(b, refsStart)
	}
	for i := range ts.Samples {
		s := &ts.Samples[i]
		b = append(b, 2<<3|wtBytes, byte(sampleSize(s))) // at most 31 bytes
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
	for i := range ts.Exemplars {
		x := &ts.Exemplars[i]
		b = append(b, 4<<3|wtBytes, 0)
		xStart := len(b)
		if len(x.Labels) > 0 {
			b = append(b, 1<<3|wtBytes, 0)
			refsStart := len(b)
			for _, l := range x.Labels {
				b = appendRef(b, e.symbol(l.Name))
				b = appendRef(b, e.symbol(l.Value))
			}
			b = patchLen(b, refsStart)
		}
		if v := math.Float64bits(x.Value); v != 0 {
			b = append(b, 2<<3|wtFixed64)
			b = binary.LittleEndian.AppendUint64(b, v)
		}
		if x.Timestamp != 0 {
			b = append(b, 3<<3|wtVarint)
			b = binary.AppendUvarint(b, uint64(x.Timestamp))
		}
		b = patchLen(b, xStart)
	}
	var help, unit uint32
	if ts.Metadata.Help != "" {
		help = e.symbol(ts.Metadata.Help)
	}
	if ts.Metadata.Unit != "" {
		unit = e.symbol(ts.Metadata.Unit)
	}
	typ := ts.Metadata.Type
	if typ > MetricTypeStateset {
		typ = MetricTypeUnknown // not an enum value; decoders would map it so anyway
	}
	if typ != 0 || help != 0 || unit != 0 {
		b = append(b, 5<<3|wtBytes, 0)
		mdStart := len(b)
		if typ != 0 {
			b = append(b, 1<<3|wtVarint, byte(typ))
		}
		if help != 0 {
			b = append(b, 3<<3|wtVarint)
			b = appendRef(b, help)
		}
		if unit != 0 {
			b = append(b, 4<<3|wtVarint)
			b = appendRef(b, unit)
		}
		b[mdStart-1] = byte(len(b) - mdStart) // at most 13 bytes
	}
	e.series = patchLen(b, start)
	e.n++
}

// sameString is a == b, comparing addresses first, then the last word:
// strings that alias one buffer repeat the same address, and at one label
// position consecutive series often hold values of the same length that
// differ only at the end (counters, IDs, addresses), which a plain
// comparison finds only after reading both strings whole.
func sameString(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	if unsafe.StringData(a) == unsafe.StringData(b) {
		return true // without touching the bytes
	}
	if n := len(a); n >= 8 {
		x := unsafe.Slice(unsafe.StringData(a), n)
		y := unsafe.Slice(unsafe.StringData(b), n)
		if binary.LittleEndian.Uint64(x[n-8:]) != binary.LittleEndian.Uint64(y[n-8:]) {
			return false
		}
	}
	return a == b
}

// appendRef appends a symbol ref as a varint, with the one- and two-byte
// cases (refs below 16384, nearly all) inline.
func appendRef(b []byte, r uint32) []byte {
	if r < 0x80 {
		return append(b, byte(r))
	}
	if r < 0x4000 {
		return append(b, byte(r)|0x80, byte(r>>7))
	}
	return binary.AppendUvarint(b, uint64(r))
}

// patchLen sets the length prefix of the field whose payload runs from
// start to the end of b and whose one-byte length placeholder is
// b[start-1], moving the payload when the length needs more bytes.
func patchLen(b []byte, start int) []byte {
	n := len(b) - start
	if n < 0x80 {
		b[start-1] = byte(n)
		return b
	}
	extra := varintLen(uint64(n)) - 1
	b = append(b, make([]byte, extra)...)
	copy(b[start+extra:], b[start:len(b)-extra])
	binary.PutUvarint(b[start-1:], uint64(n))
	return b
}

func varintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// lenFieldSize is the size of a length-delimited field with a one-byte tag.
func lenFieldSize(n int) int { return 1 + varintLen(uint64(n)) + n }

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

// SeriesSizeUpperBound returns an upper bound on the number of bytes
// Encoder.Append(ts) adds to the request, counting every string of ts as a
// new symbol. It does no map lookups, so callers can use it to decide
// whether ts still fits below a byte limit before appending.
func SeriesSizeUpperBound(ts *TimeSeries) int {
	const maxRef = 5 // a uint32 varint
	// Every label string as a new symbol: its bytes plus a tag and a
	// length prefix no longer than the longest string's. Summing first
	// and sizing once keeps this cheap; it runs for every series.
	strs, longest := 0, 0
	for i := range ts.Labels {
		l := &ts.Labels[i]
		strs += len(l.Name) + len(l.Value)
		longest = max(longest, len(l.Name), len(l.Value))
	}
	syms := strs + 2*len(ts.Labels)*(1+varintLen(uint64(longest)))
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
	if ts.Metadata.Help != "" || ts.Metadata.Unit != "" {
		syms += lenFieldSize(len(ts.Metadata.Help)) + lenFieldSize(len(ts.Metadata.Unit))
	}
	return lenFieldSize(body) + syms
}
