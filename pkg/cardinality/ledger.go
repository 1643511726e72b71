package cardinality

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// LedgerEntry says that a raw series was seen and, when Out is not 0,
// admitted as output series Out of metric Metric. An active series gets
// an entry when it is first seen and then about four times per window, so
// replaying one window of the ledger rebuilds the active set.
type LedgerEntry struct {
	Raw, Out uint64
	Metric   string
}

// ledgerVersion is the first byte of every ledger record.
const ledgerVersion = 1

// MaxLedgerEntries bounds the entries of one ledger record (about 20 B
// each), well under a Kafka record.
const MaxLedgerEntries = 100000

// EncodeLedger encodes entries as one ledger record value:
//
//	version (1 byte) | metric name count (uvarint) | names (uvarint length, bytes)… |
//	entry count (uvarint) | entries: raw (8 bytes LE), out (8 bytes LE), name index+1 (uvarint; 0 = none)
//
// The record's timestamp says when the entries were seen.
func EncodeLedger(entries []LedgerEntry) []byte {
	idx := map[string]int{}
	var names []string
	for _, e := range entries {
		if e.Metric == "" {
			continue
		}
		if _, ok := idx[e.Metric]; !ok {
			idx[e.Metric] = len(names)
			names = append(names, e.Metric)
		}
	}
	b := make([]byte, 0, 1+len(entries)*20)
	b = append(b, ledgerVersion)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, n := range names {
		b = binary.AppendUvarint(b, uint64(len(n)))
		b = append(b, n...)
	}
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint64(b, e.Raw)
		b = binary.LittleEndian.AppendUint64(b, e.Out)
		ni := 0
		if e.Metric != "" {
			ni = idx[e.Metric] + 1
		}
		b = binary.AppendUvarint(b, uint64(ni))
	}
	return b
}

var errLedger = errors.New("malformed ledger record")

// DecodeLedger decodes a ledger record value.
func DecodeLedger(b []byte) ([]LedgerEntry, error) {
	if len(b) == 0 || b[0] != ledgerVersion {
		return nil, fmt.Errorf("%w: unknown version", errLedger)
	}
	b = b[1:]
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	nn, ok := uv()
	if !ok || nn > uint64(len(b)) {
		return nil, errLedger
	}
	names := make([]string, nn)
	for i := range names {
		l, ok := uv()
		if !ok || l > uint64(len(b)) {
			return nil, errLedger
		}
		names[i] = string(b[:l])
		b = b[l:]
	}
	ne, ok := uv()
	if !ok || ne > uint64(len(b))/17 {
		return nil, errLedger
	}
	out := make([]LedgerEntry, ne)
	for i := range out {
		if len(b) < 17 {
			return nil, errLedger
		}
		out[i].Raw = binary.LittleEndian.Uint64(b)
		out[i].Out = binary.LittleEndian.Uint64(b[8:])
		b = b[16:]
		ni, ok := uv()
		if !ok || ni > uint64(len(names)) {
			return nil, errLedger
		}
		if ni > 0 {
			out[i].Metric = names[ni-1]
		}
	}
	return out, nil
}

// Replay applies ledger entries seen at time at to a partition being
// loaded. Entries older than the window are skipped. Call with the lock
// held.
func (p *Partition) Replay(at time.Time, entries []LedgerEntry) {
	m := minute(at)
	if m+p.tr.window <= p.tr.now {
		return
	}
	for _, e := range entries {
		if e.Out == 0 {
			if v, ok := p.raw[e.Raw]; !ok || v&^dropBit < m {
				p.raw[e.Raw] = m | dropBit
			}
			continue
		}
		if v, ok := p.raw[e.Raw]; !ok || v&^dropBit < m {
			p.raw[e.Raw] = m
		}
		if se, ok := p.series[e.Out]; ok {
			if se.minute < m {
				se.minute = m
				p.series[e.Out] = se
			}
			continue
		}
		mt := p.t.metric(e.Metric)
		p.series[e.Out] = seriesEntry{minute: m, m: mt}
		mt.active++
		p.t.active++
		p.partMetric(mt).active++
	}
	p.version++
	p.filterVersion++
}
