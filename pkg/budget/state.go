// Package budget is the series-budget state stream workers publish and
// edges read: for each tenant and raw partition, the active series, the
// limits, the metrics that use and grow the most, and — when the tenant
// or one of its metrics is near a limit — a Bloom filter of the raw series
// that add nothing new. An edge aggregates the partitions into a View and
// answers 429 to requests that would add series beyond the budget, before
// anything reaches Kafka.
//
// The state travels on one compacted Kafka topic, <prefix>._budget-state,
// keyed by tenant/partition, produced inside the stream workers'
// transactions; FORMAT is in docs/cardinality.md.
package budget

import (
	"encoding/json"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// Topic is the name of the state topic for a topic prefix. It matches no
// tenant topic pattern (<prefix>.<tenant>.<kind>).
func Topic(prefix string) string { return prefix + "._budget-state" }

// Key is the record key of one partition's state.
func Key(tenant string, partition int32) []byte {
	return []byte(tenant + "/" + strconv.Itoa(int(partition)))
}

// StateVersion is the version of PartitionState this code writes.
const StateVersion = 1

// PartitionState is what one stream worker knows of one raw partition of
// one tenant.
type PartitionState struct {
	Version    int    `json:"v"`
	Tenant     string `json:"tenant"`
	Partition  int32  `json:"partition"`
	Partitions int    `json:"partitions"`
	// At is when the state was taken, Unix milliseconds.
	At int64 `json:"at"`
	// WindowSeconds is stream.active_series_window.
	WindowSeconds int `json:"window_seconds"`
	// Active is the partition's active series.
	Active int `json:"active"`
	// Limit is the tenant's budget.max_series (0: none).
	Limit int `json:"limit"`
	// MetricLimit is budget.max_series_per_metric; MetricLimits the
	// per-metric overrides.
	MetricLimit  int            `json:"metric_limit,omitempty"`
	MetricLimits map[string]int `json:"metric_limits,omitempty"`
	// Metrics are the partition's largest and fastest-growing metrics.
	Metrics []MetricUsage `json:"metrics,omitempty"`
	// Filter holds the raw series hashes (record.SeriesHash) the stream
	// saw within the window and admitted or dropped by its pipeline:
	// series that add nothing to the budget. Present only near a limit.
	Filter *Filter `json:"filter,omitempty"`
}

// MetricUsage is one metric's active series and recent growth in a
// partition.
type MetricUsage struct {
	Name   string `json:"name"`
	Active int    `json:"active"`
	// New is series first admitted within the last GrowthWindow.
	New int `json:"new,omitempty"`
	// Refused is distinct series refused within the last GrowthWindow.
	Refused int `json:"refused,omitempty"`
}

// Grew is what a metric added (admitted or tried to) recently.
func (m MetricUsage) Grew() int { return m.New + m.Refused }

// GrowthWindow is the period "grew most" looks back over, in minutes.
const GrowthWindow = 5

// Marshal encodes s as the record value.
func (s *PartitionState) Marshal() ([]byte, error) { return json.Marshal(s) }

// UnmarshalState decodes a record value.
func UnmarshalState(b []byte) (*PartitionState, error) {
	var s PartitionState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decoding budget state: %w", err)
	}
	if s.Version != StateVersion {
		return nil, fmt.Errorf("budget state version %d, this weir reads %d", s.Version, StateVersion)
	}
	return &s, nil
}

// MetricLimitOf is the active-series bound of one metric; 0 is none.
func (s *PartitionState) MetricLimitOf(metric string) int {
	if n, ok := s.MetricLimits[metric]; ok {
		return n
	}
	return s.MetricLimit
}

// Filter is a Bloom filter over 64-bit series hashes. The hashes are
// already uniform (xxhash), so the probes are derived from them directly
// (double hashing) instead of hashing again, which is why this is written
// here rather than taken from a library that rehashes its input.
type Filter struct {
	K    uint8    `json:"k"`
	Bits []uint64 `json:"-"`
}

// filterBitsPerEntry and filterK give about 1% false positives.
const (
	filterBitsPerEntry = 10
	filterK            = 7
)

// NewFilter sizes a filter for n entries.
func NewFilter(n int) *Filter {
	m := max(64, n*filterBitsPerEntry)
	words := 1 << bits.Len(uint((m+63)/64-1)) // a power of two: probes mask instead of divide
	return &Filter{K: filterK, Bits: make([]uint64, words)}
}

func (f *Filter) probes(h uint64, fn func(word int, bit uint64) bool) bool {
	mask := uint64(len(f.Bits)*64 - 1)
	h2 := bits.RotateLeft64(h, 32) | 1
	for i := uint64(0); i < uint64(f.K); i++ {
		b := (h + i*h2) & mask
		if !fn(int(b>>6), 1<<(b&63)) {
			return false
		}
	}
	return true
}

// Add adds a hash.
func (f *Filter) Add(h uint64) {
	f.probes(h, func(w int, b uint64) bool { f.Bits[w] |= b; return true })
}

// Has reports whether h may have been added; false is certain.
func (f *Filter) Has(h uint64) bool {
	if f == nil || len(f.Bits) == 0 {
		return false
	}
	return f.probes(h, func(w int, b uint64) bool { return f.Bits[w]&b != 0 })
}

type filterJSON struct {
	K    uint8  `json:"k"`
	Bits []byte `json:"bits"` // little-endian words, base64 in JSON
}

// MarshalJSON implements json.Marshaler.
func (f *Filter) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(f.Bits)*8)
	for _, w := range f.Bits {
		for i := 0; i < 8; i++ {
			b = append(b, byte(w>>(8*i)))
		}
	}
	return json.Marshal(filterJSON{K: f.K, Bits: b})
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *Filter) UnmarshalJSON(data []byte) error {
	var j filterJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	if len(j.Bits)%8 != 0 || bits.OnesCount(uint(len(j.Bits)/8)) > 1 || j.K == 0 || j.K > 32 {
		return fmt.Errorf("malformed series filter: %d bytes, k=%d", len(j.Bits), j.K)
	}
	f.K = j.K
	f.Bits = make([]uint64, len(j.Bits)/8)
	for i := range f.Bits {
		for k := 0; k < 8; k++ {
			f.Bits[i] |= uint64(j.Bits[8*i+k]) << (8 * k)
		}
	}
	return nil
}

// ParseKey splits a record key into tenant and partition.
func ParseKey(key []byte) (string, int32, bool) {
	s := string(key)
	i := strings.LastIndexByte(s, '/')
	if i <= 0 {
		return "", 0, false
	}
	p, err := strconv.Atoi(s[i+1:])
	if err != nil {
		return "", 0, false
	}
	return s[:i], int32(p), true
}
