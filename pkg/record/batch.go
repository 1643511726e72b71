package record

import (
	"github.com/weir-metrics/weir/pkg/prw"
)

// Batch encodes series into records one series at a time, as they come,
// with an encoder per partition that stays open across Add calls: unlike
// Builder, which encodes one request's series at once, it suits a stream
// of series from many small inputs (the stream stage re-partitions the
// series of many raw records). Each series is encoded while its labels
// are still in the CPU caches, and a record's symbol table serves every
// series added to it before Flush. A Batch is not safe for concurrent
// use; its zero value is not usable, see NewBatch.
type Batch struct {
	partitions, maxBytes int
	encs                 []prw.Encoder
	out                  []Encoded
}

// NewBatch returns a Batch of records for a topic of partitions
// partitions, each record at most maxBytes.
func NewBatch(partitions, maxBytes int) *Batch {
	b := &Batch{partitions: partitions, maxBytes: maxBytes, encs: make([]prw.Encoder, partitions)}
	for i := range b.encs {
		b.encs[i].Reset()
	}
	return b
}

// Add encodes ts, whose SeriesHash is hash, into its partition's record,
// completing that record first when ts does not fit in it. A series that
// does not fit in a record alone is left out with a *SeriesTooLargeError.
//
// The strings of ts must stay valid and unchanged until Flush (see
// prw.Encoder).
func (b *Batch) Add(ts *prw.TimeSeries, hash uint64) error {
	p := int32(hash % uint64(b.partitions))
	if size := appendSeries(&b.encs[p], ts, p, b.maxBytes, &b.out); size > 0 {
		return &SeriesTooLargeError{Series: prw.Selector(ts.Labels), Size: size, MaxBytes: b.maxBytes}
	}
	return nil
}

// Flush completes every record and returns all records completed since
// the last Flush. Their values are fresh slices the caller owns; the
// returned slice itself is reused by the next Add or Flush.
func (b *Batch) Flush() []Encoded {
	for p := range b.encs {
		if b.encs[p].Len() > 0 {
			b.out = completeRecord(b.out, &b.encs[p], int32(p))
		}
	}
	out := b.out
	b.out = b.out[:0]
	return out
}
