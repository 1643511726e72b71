package cardinality

import (
	"reflect"
	"testing"
)

// FuzzLedger feeds arbitrary values of a tenant's ledger topic to the
// decoder a stream worker runs when it takes a partition over: it never
// panics nor allocates beyond what the value can hold, and what it decodes
// encodes and decodes back to the same entries.
func FuzzLedger(f *testing.F) {
	f.Add(EncodeLedger([]LedgerEntry{{Raw: 1, Out: 2, Metric: "up"}, {Raw: 3}, {Raw: 4, Out: 5, Metric: "up"}, {Raw: 6, Out: 7, Metric: "http_requests_total"}}))
	f.Add(EncodeLedger(nil))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := DecodeLedger(b)
		if err != nil {
			return
		}
		if len(entries) > len(b) {
			t.Fatalf("%d entries from %d bytes", len(entries), len(b))
		}
		back, err := DecodeLedger(EncodeLedger(entries))
		if err != nil {
			t.Fatalf("re-encoded entries do not decode: %v", err)
		}
		if len(back) == 0 && len(entries) == 0 {
			return
		}
		if !reflect.DeepEqual(back, entries) {
			t.Fatalf("entries changed through encoding:\n%v\n%v", entries, back)
		}
	})
}
