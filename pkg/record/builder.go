package record

import (
	"fmt"

	"github.com/weir-metrics/weir/pkg/prw"
)

// SeriesTooLargeError is returned when one series alone exceeds the record
// size limit, so no split can make it fit.
type SeriesTooLargeError struct {
	Series   string
	Size     int
	MaxBytes int
}

func (e *SeriesTooLargeError) Error() string {
	return fmt.Sprintf("series %s needs about %d bytes, more than the %d bytes one Kafka record may hold; send fewer samples of it per request", e.Series, e.Size, e.MaxBytes)
}

// Encoded is one record value and the partition it belongs to.
type Encoded struct {
	Partition int32
	Value     []byte
	Series    int
}

// Builder groups series by partition and encodes each group as records no
// larger than a limit, splitting a group by series when needed. A Builder
// reuses its buffers; it is not safe for concurrent use.
type Builder struct {
	hasher Hasher
	encs   []prw.Encoder
	sizes  []int
	out    []Encoded
}

// Build encodes series (labels sorted) into records for a topic with
// partitions partitions. Each record value is a fresh slice the caller
// owns. Samples keep their order within a series; a series always lands in
// the partition Partition gives for it.
func (b *Builder) Build(tenant string, series []prw.TimeSeries, partitions, maxBytes int) ([]Encoded, error) {
	if cap(b.encs) < partitions {
		b.encs = make([]prw.Encoder, partitions)
		b.sizes = make([]int, partitions)
	}
	b.encs, b.sizes = b.encs[:partitions], b.sizes[:partitions]
	for i := range b.encs {
		b.encs[i].Reset()
		b.sizes[i] = requestOverhead
	}
	b.out = b.out[:0]
	for i := range series {
		ts := &series[i]
		size := prw.SeriesSizeUpperBound(ts)
		if size+requestOverhead > maxBytes {
			return nil, &SeriesTooLargeError{Series: prw.Selector(ts.Labels), Size: size, MaxBytes: maxBytes}
		}
		p := int(b.hasher.Hash(tenant, ts.Labels) % uint64(partitions))
		if b.sizes[p]+size > maxBytes && b.encs[p].Len() > 0 {
			b.flush(p)
		}
		b.encs[p].Append(ts)
		b.sizes[p] += size
	}
	for p := range b.encs {
		if b.encs[p].Len() > 0 {
			b.flush(p)
		}
	}
	return b.out, nil
}

// requestOverhead covers the symbol table's leading empty string and
// field tags of a request.
const requestOverhead = 16

func (b *Builder) flush(p int) {
	enc := &b.encs[p]
	v := enc.Bytes()
	val := make([]byte, len(v))
	copy(val, v)
	b.out = append(b.out, Encoded{Partition: int32(p), Value: val, Series: enc.Len()})
	enc.Reset()
	b.sizes[p] = requestOverhead
}
