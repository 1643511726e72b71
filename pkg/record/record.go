// Package record is weir's Kafka record format: what one record holds,
// which headers describe it, and which partition it goes to. FORMAT.md
// beside this file specifies it for readers in other languages.
package record

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/prw"
)

// Header keys of every weir record.
const (
	HeaderVersion    = "weir-version"
	HeaderTenant     = "weir-tenant"
	HeaderSource     = "weir-source"
	HeaderReceivedAt = "weir-received-at"
	// HeaderReplay marks series records produced by `weir replay`, with
	// the replay's ID; it is absent from live records.
	HeaderReplay = "weir-replay"
)

// Version1 is the record format this code writes: the value is an
// io.prometheus.write.v2.Request.
const Version1 = 1

// Sources of data, as carried in the weir-source header.
const (
	SourcePRW1   = "prw1"
	SourcePRW2   = "prw2"
	SourceInflux = "influx"
	// SourceOpenMetrics marks data backfilled from OpenMetrics files.
	SourceOpenMetrics = "openmetrics"
)

// Meta is what a record's headers say about it.
type Meta struct {
	Version    int
	Tenant     string
	Source     string
	ReceivedAt time.Time
	// Replay is the ID of the replay that produced the record, or empty.
	Replay string
}

var (
	// ErrUnknownVersion means a record was written by a newer weir.
	ErrUnknownVersion = errors.New("unknown record version")
	// ErrMissingHeader means a record lacks a header weir always writes.
	ErrMissingHeader = errors.New("missing record header")
)

var versionValue = []byte(strconv.Itoa(Version1))

// Headers returns the headers of a record with meta; the version is
// always Version1.
func Headers(m Meta) []kgo.RecordHeader {
	return []kgo.RecordHeader{
		{Key: HeaderVersion, Value: versionValue},
		{Key: HeaderTenant, Value: []byte(m.Tenant)},
		{Key: HeaderSource, Value: []byte(m.Source)},
		{Key: HeaderReceivedAt, Value: strconv.AppendInt(nil, m.ReceivedAt.UnixMilli(), 10)},
	}
}

// ParseHeaders reads the headers of a record. A version this code does not
// know is an error: the reader must be upgraded, not guess.
func ParseHeaders(hs []kgo.RecordHeader) (Meta, error) {
	var m Meta
	var haveVersion bool
	for _, h := range hs {
		switch h.Key {
		case HeaderVersion:
			v, err := strconv.Atoi(string(h.Value))
			if err != nil {
				return m, fmt.Errorf("header %s=%q: %w", HeaderVersion, h.Value, err)
			}
			m.Version, haveVersion = v, true
		case HeaderTenant:
			m.Tenant = string(h.Value)
		case HeaderReplay:
			m.Replay = string(h.Value)
		case HeaderSource:
			m.Source = string(h.Value)
		case HeaderReceivedAt:
			ms, err := strconv.ParseInt(string(h.Value), 10, 64)
			if err != nil {
				return m, fmt.Errorf("header %s=%q: %w", HeaderReceivedAt, h.Value, err)
			}
			m.ReceivedAt = time.UnixMilli(ms)
		}
	}
	if !haveVersion {
		return m, fmt.Errorf("%w %s", ErrMissingHeader, HeaderVersion)
	}
	if m.Version != Version1 {
		return m, fmt.Errorf("%w %d (this weir reads up to %d)", ErrUnknownVersion, m.Version, Version1)
	}
	if m.Tenant == "" {
		return m, fmt.Errorf("%w %s", ErrMissingHeader, HeaderTenant)
	}
	return m, nil
}

// Decode decodes a record value of the given version into req. Strings in
// req alias value.
func Decode(m Meta, value []byte, req *prw.Request) error {
	switch m.Version {
	case Version1:
		if err := req.Unmarshal(prw.V2, value); err != nil {
			return fmt.Errorf("decoding record of tenant %s: %w", m.Tenant, err)
		}
		return nil
	}
	return fmt.Errorf("%w %d", ErrUnknownVersion, m.Version)
}

// SeriesHash is the stable hash of a series: xxhash64 over the tenant and
// the sorted label pairs, each string followed by 0xff (a byte that never
// occurs in UTF-8). Changing it would move series between partitions.
func SeriesHash(tenant string, labels []prw.Label) uint64 {
	var h Hasher
	return h.Hash(tenant, labels)
}

// Hasher computes SeriesHash with a reused buffer: hashing one contiguous
// buffer is about three times faster than feeding xxhash string by string,
// and this runs for every series the edge receives.
type Hasher struct{ buf []byte }

// Hash returns SeriesHash(tenant, labels).
func (h *Hasher) Hash(tenant string, labels []prw.Label) uint64 {
	h.buf = AppendSeriesKey(h.buf[:0], tenant, labels)
	return xxhash.Sum64(h.buf)
}

// AppendSeriesKey appends the bytes SeriesHash hashes: the tenant, then
// each label name and value, each followed by 0xff.
func AppendSeriesKey(b []byte, tenant string, labels []prw.Label) []byte {
	// Sized once and filled by index rather than appended piece by piece.
	n := len(tenant) + 1
	for i := range labels {
		n += len(labels[i].Name) + len(labels[i].Value) + 2
	}
	b = slices.Grow(b, n)
	i := len(b)
	b = b[:i+n]
	i += copy(b[i:], tenant)
	b[i] = 0xff
	i++
	for j := range labels {
		l := &labels[j]
		i += copy(b[i:], l.Name)
		b[i] = 0xff
		i += copy(b[i+1:], l.Value) + 1
		b[i] = 0xff
		i++
	}
	return b
}

// Partition is the partition a series goes to, of a topic with n
// partitions. labels must be sorted by name.
func Partition(tenant string, labels []prw.Label, n int) int32 {
	return int32(SeriesHash(tenant, labels) % uint64(n))
}
