package record

import (
	"fmt"
	"slices"

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
	enc    prw.Encoder
	// part[i] is the partition of series i; order lists the series
	// grouped by partition, in their order within each; start[p] is
	// where partition p's run begins in order.
	part  []int32
	order []int32
	start []int
	out   []Encoded
}

// Build encodes series (labels sorted) into records for a topic with
// partitions partitions. Each record value is a fresh slice the caller
// owns. Samples keep their order within a series; a series always lands in
// the partition Partition gives for it.
func (b *Builder) Build(tenant string, series []prw.TimeSeries, partitions, maxBytes int) ([]Encoded, error) {
	return b.build(tenant, series, nil, partitions, maxBytes)
}

// BuildHashed is Build for callers that already know each series'
// SeriesHash: hashes[i] must be SeriesHash(tenant, series[i].Labels).
func (b *Builder) BuildHashed(tenant string, series []prw.TimeSeries, hashes []uint64, partitions, maxBytes int) ([]Encoded, error) {
	if len(hashes) != len(series) {
		return nil, fmt.Errorf("%d hashes for %d series", len(hashes), len(series))
	}
	return b.build(tenant, series, hashes, partitions, maxBytes)
}

// build groups the series by partition first and then encodes one
// partition's series after the other with one encoder: its symbol table
// and buffers stay in the CPU caches, where interleaving a request's
// series over an encoder per partition kept missing them.
func (b *Builder) build(tenant string, series []prw.TimeSeries, hashes []uint64, partitions, maxBytes int) ([]Encoded, error) {
	b.out = b.out[:0]
	b.part = slices.Grow(b.part[:0], len(series))[:len(series)]
	b.start = slices.Grow(b.start[:0], partitions+1)[:partitions+1]
	clear(b.start)
	for i := range series {
		var h uint64
		if hashes != nil {
			h = hashes[i]
		} else {
			h = b.hasher.Hash(tenant, series[i].Labels)
		}
		p := int32(h % uint64(partitions))
		b.part[i] = p
		b.start[p+1]++
	}
	for p := 1; p <= partitions; p++ {
		b.start[p] += b.start[p-1]
	}
	b.order = slices.Grow(b.order[:0], len(series))[:len(series)]
	next := b.start[:partitions] // advanced while filling, restored below
	for i, p := range b.part {
		b.order[next[p]] = int32(i)
		next[p]++
	}
	// next[p] is now the end of p's run, i.e. the start of p+1's.
	copy(b.start[1:], next)
	b.start[0] = 0

	enc := &b.enc
	for p := 0; p < partitions; p++ {
		enc.Reset()
		for _, i := range b.order[b.start[p]:b.start[p+1]] {
			ts := &series[i]
			if size := appendSeries(enc, ts, int32(p), maxBytes, &b.out); size > 0 {
				return nil, &SeriesTooLargeError{Series: prw.Selector(ts.Labels), Size: size, MaxBytes: maxBytes}
			}
		}
		if enc.Len() > 0 {
			b.out = completeRecord(b.out, enc, int32(p))
		}
	}
	return b.out, nil
}

// appendSeries appends ts to enc, the record of partition p, first
// completing that record into *out when ts does not fit beside what it
// holds. Appending first and undoing the rare series that overflows costs
// less than bounding every series beforehand. When ts does not fit in a
// record alone it is left out and its size returned; otherwise 0.
func appendSeries(enc *prw.Encoder, ts *prw.TimeSeries, p int32, maxBytes int, out *[]Encoded) (tooLarge int) {
	m := enc.Mark()
	enc.Append(ts)
	size := enc.Size()
	if size <= maxBytes {
		return 0
	}
	enc.Rollback(m)
	if enc.Len() == 0 {
		return size
	}
	*out = completeRecord(*out, enc, p)
	enc.Append(ts)
	if size = enc.Size(); size <= maxBytes {
		return 0
	}
	enc.Reset()
	return size
}

// completeRecord appends enc's record of partition p to out and resets enc.
func completeRecord(out []Encoded, enc *prw.Encoder, p int32) []Encoded {
	val := enc.AppendTo(make([]byte, 0, enc.Size()))
	out = append(out, Encoded{Partition: p, Value: val, Series: enc.Len()})
	enc.Reset()
	return out
}
