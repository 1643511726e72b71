package gen

import (
	"strings"
)

// The encoders below write each body once, recording where every value,
// timestamp and churning label value sits, so Next only overwrites bytes.
// They are written by hand (rather than marshalled with the Prometheus
// protobuf types) because the protobuf libraries choose the varint widths;
// here every patched field has a fixed width.

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func varintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// appendSample appends a Sample message (value fixed64, timestamp 6-byte
// varint) as field 2 and returns the offsets of its value and timestamp.
func appendSample(b []byte) ([]byte, int, int) {
	b = append(b, 0x12, 16, 0x09)
	val := len(b)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0, 0x10)
	ts := len(b)
	b = append(b, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01) // 2^35, overwritten
	return b, val, ts
}

// seriesLabels returns __name__ followed by the sorted labels of series i
// as first written: exploding series carry the placeholder session_id.
func (b *Batch) seriesLabels(i int) []Label {
	name, ls := b.pop.Labels(b.ids[i])
	return append([]Label{{"__name__", name}}, ls...)
}

func (b *Batch) encodePRW1() {
	var body, ts []byte
	for i := range b.series {
		s := &b.series[i]
		ts = ts[:0]
		var pod, expl int = -1, -1
		for _, l := range b.seriesLabels(i) {
			n := 1 + varintLen(uint64(len(l.Name))) + len(l.Name) + 1 + varintLen(uint64(len(l.Value))) + len(l.Value)
			ts = append(ts, 0x0a)
			ts = appendVarint(ts, uint64(n))
			ts = append(ts, 0x0a)
			ts = appendVarint(ts, uint64(len(l.Name)))
			ts = append(ts, l.Name...)
			ts = append(ts, 0x12)
			ts = appendVarint(ts, uint64(len(l.Value)))
			switch l.Name {
			case PodLabel:
				pod = len(ts)
			case ExplodeLabel:
				expl = len(ts)
			}
			ts = append(ts, l.Value...)
		}
		var val, tsp int
		ts, val, tsp = appendSample(ts)
		body = append(body, 0x0a)
		body = appendVarint(body, uint64(len(ts)))
		base := len(body)
		body = append(body, ts...)
		s.valPos = int32(base + val)
		b.tsPos = append(b.tsPos, int32(base+tsp))
		b.insts[s.inst].podPos = append(b.insts[s.inst].podPos, int32(base+pod))
		if expl >= 0 {
			b.explodePos = append(b.explodePos, int32(base+expl))
		}
	}
	b.raw = body
}

func (b *Batch) encodePRW2() {
	syms := []byte{0x22, 0} // the empty string is symbol 0
	refs := map[string]uint32{"": 0}
	// symbol offsets of patched values, relative to syms
	podSym := map[int32]int{}
	explSym := -1
	symbol := func(s string) (uint32, int) {
		if r, ok := refs[s]; ok {
			return r, -1
		}
		r := uint32(len(refs))
		refs[s] = r
		syms = append(syms, 0x22)
		syms = appendVarint(syms, uint64(len(s)))
		off := len(syms)
		syms = append(syms, s...)
		return r, off
	}
	type pending struct{ val, ts int }
	var series, msg, packed []byte
	offs := make([]pending, len(b.series))
	for i := range b.series {
		s := &b.series[i]
		e := &exposition[int(s.slot)%SeriesPerInstance]
		packed = packed[:0]
		for _, l := range b.seriesLabels(i) {
			nr, _ := symbol(l.Name)
			vr, off := symbol(l.Value)
			switch {
			case l.Name == PodLabel && off >= 0:
				podSym[s.inst] = off
			case l.Name == ExplodeLabel && off >= 0:
				explSym = off
			}
			packed = appendVarint(packed, uint64(nr))
			packed = appendVarint(packed, uint64(vr))
		}
		msg = msg[:0]
		msg = append(msg, 0x0a)
		msg = appendVarint(msg, uint64(len(packed)))
		msg = append(msg, packed...)
		var val, tsp int
		msg, val, tsp = appendSample(msg)
		var meta []byte
		mt := map[Kind]uint64{Counter: 1, Gauge: 2, Bucket: 3, HistSum: 3, HistCount: 3}[s.kind]
		meta = append(meta, 0x08)
		meta = appendVarint(meta, mt)
		help, _ := symbol(e.help)
		meta = append(meta, 0x18)
		meta = appendVarint(meta, uint64(help))
		if e.unit != "" {
			unit, _ := symbol(e.unit)
			meta = append(meta, 0x20)
			meta = appendVarint(meta, uint64(unit))
		}
		msg = append(msg, 0x2a)
		msg = appendVarint(msg, uint64(len(meta)))
		msg = append(msg, meta...)
		series = append(series, 0x2a)
		series = appendVarint(series, uint64(len(msg)))
		base := len(series)
		series = append(series, msg...)
		offs[i] = pending{base + val, base + tsp}
	}
	base := len(syms)
	for i := range b.series {
		b.series[i].valPos = int32(base + offs[i].val)
		b.tsPos = append(b.tsPos, int32(base+offs[i].ts))
	}
	for ii, off := range podSym {
		b.insts[ii].podPos = append(b.insts[ii].podPos, int32(off))
	}
	if explSym >= 0 {
		b.explodePos = append(b.explodePos, int32(explSym))
	}
	b.raw = append(syms, series...)
}

// splitName maps a Prometheus metric name to a line-protocol measurement
// and field: the field is the part after the last underscore, so that
// measurement + "_" + field, the usual mapping back, is the name again.
func splitName(name string) (measurement, field string) {
	i := strings.LastIndexByte(name, '_')
	return name[:i], name[i+1:]
}

var (
	measurementEscaper = strings.NewReplacer(",", `\,`, " ", `\ `)
	tagEscaper         = strings.NewReplacer(",", `\,`, " ", `\ `, "=", `\=`)
)

func (b *Batch) encodeInflux() {
	var body []byte
	for i := 0; i < len(b.series); {
		ls := b.seriesLabels(i)
		meas, _ := splitName(ls[0].Value)
		tags := ls[1:]
		// Consecutive series of one measurement with the same tags share a
		// line, one field each (a histogram's sum and count).
		j := i + 1
		for j < len(b.series) {
			ls2 := b.seriesLabels(j)
			m2, _ := splitName(ls2[0].Value)
			if m2 != meas || !equalLabels(ls2[1:], tags) {
				break
			}
			j++
		}
		body = append(body, measurementEscaper.Replace(meas)...)
		inst := b.series[i].inst
		for _, t := range tags {
			body = append(body, ',')
			body = append(body, tagEscaper.Replace(t.Name)...)
			body = append(body, '=')
			switch t.Name {
			case PodLabel:
				b.insts[inst].podPos = append(b.insts[inst].podPos, int32(len(body)))
			case ExplodeLabel:
				b.explodePos = append(b.explodePos, int32(len(body)))
			}
			body = append(body, tagEscaper.Replace(t.Value)...)
		}
		for k := i; k < j; k++ {
			if k == i {
				body = append(body, ' ')
			} else {
				body = append(body, ',')
			}
			_, field := splitName(MetricName(int(b.series[k].slot)))
			body = append(body, tagEscaper.Replace(field)...)
			body = append(body, '=')
			b.series[k].valPos = int32(len(body))
			body = append(body, "0.000000000000000e+00"...)
		}
		body = append(body, ' ')
		b.tsPos = append(b.tsPos, int32(len(body)))
		body = append(body, "1000000000000000000\n"...)
		i = j
	}
	b.raw = body
}

func equalLabels(a, b []Label) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
