package gen

import (
	"encoding/binary"
	"math"
	"strconv"

	"github.com/golang/snappy"
)

// MarkerBody encodes the one-sample request of the end-to-end latency
// marker: weir_loadtest_marker{job="loadtest",loadtest_run=<run>} = seq at
// ts. The harness polls the query API until it sees seq.
func MarkerBody(proto Protocol, runID string, seq uint64, ts int64) []byte {
	labels := []Label{{"__name__", MarkerName}, {"job", "loadtest"}, {RunLabel, runID}}
	switch proto {
	case Influx:
		meas, field := splitName(MarkerName)
		b := []byte(meas + ",job=loadtest," + RunLabel + "=" + runID + " " + field + "=")
		b = strconv.AppendUint(b, seq, 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, ts*1_000_000, 10)
		return append(b, '\n')
	case PRW2:
		var syms, refs []byte
		syms = append(syms, 0x22, 0)
		for i, l := range labels {
			for j, s := range []string{l.Name, l.Value} {
				syms = append(syms, 0x22)
				syms = appendVarint(syms, uint64(len(s)))
				syms = append(syms, s...)
				refs = appendVarint(refs, uint64(1+2*i+j))
			}
		}
		var ts2 []byte
		ts2 = append(ts2, 0x0a)
		ts2 = appendVarint(ts2, uint64(len(refs)))
		ts2 = append(ts2, refs...)
		ts2 = appendMarkerSample(ts2, float64(seq), ts)
		body := append(syms, 0x2a)
		body = appendVarint(body, uint64(len(ts2)))
		return snappy.Encode(nil, append(body, ts2...))
	default:
		var ts1 []byte
		for _, l := range labels {
			n := 2 + len(l.Name) + 2 + len(l.Value)
			ts1 = append(ts1, 0x0a)
			ts1 = appendVarint(ts1, uint64(n))
			ts1 = append(ts1, 0x0a, byte(len(l.Name)))
			ts1 = append(ts1, l.Name...)
			ts1 = append(ts1, 0x12, byte(len(l.Value)))
			ts1 = append(ts1, l.Value...)
		}
		ts1 = appendMarkerSample(ts1, float64(seq), ts)
		body := []byte{0x0a}
		body = appendVarint(body, uint64(len(ts1)))
		return snappy.Encode(nil, append(body, ts1...))
	}
}

func appendMarkerSample(b []byte, v float64, ts int64) []byte {
	b, val, tsp := appendSample(b)
	binary.LittleEndian.PutUint64(b[val:], math.Float64bits(v))
	putVarint6(b[tsp:], uint64(ts))
	return b
}
