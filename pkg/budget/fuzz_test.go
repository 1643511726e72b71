package budget

import (
	"reflect"
	"testing"

	"github.com/weir-metrics/weir/pkg/prw"
)

// FuzzState feeds arbitrary records of <prefix>._budget-state to what an
// edge does with them: decoding never panics; a state that decodes
// encodes and decodes back to itself; and applying it to a View and
// checking requests against it never panics, whatever its partition
// counts, filter or limits say.
func FuzzState(f *testing.F) {
	good := &PartitionState{Version: StateVersion, Tenant: "team-a", Partition: 3, Partitions: 8, At: 1_700_000_000_000,
		WindowSeconds: 1200, Active: 90, Limit: 100, MetricLimit: 50, MetricLimits: map[string]int{"up": 10},
		Metrics: []MetricUsage{{Name: "up", Active: 9, New: 2, Refused: 1}}, Filter: NewFilter(100)}
	good.Filter.Add(42)
	b, err := good.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b, []byte("team-a/3"))
	f.Add([]byte(`{"v":1,"tenant":"t","partition":-1,"partitions":0,"filter":{"k":7,"bits":""}}`), []byte("t/-1"))
	f.Add([]byte(`{"v":1,"tenant":"t","partitions":-3,"limit":1,"filter":{"k":32,"bits":"AAAAAAAAAAA="}}`), []byte("/x"))
	f.Add([]byte(`{"v":2}`), []byte("t/99999999999"))
	series := []prw.TimeSeries{
		{Labels: []prw.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "a"}}},
		{Labels: []prw.Label{{Name: "__name__", Value: "other"}}},
	}
	f.Fuzz(func(t *testing.T, value, key []byte) {
		if ten, p, ok := ParseKey(key); ok {
			if ten2, p2, ok2 := ParseKey(Key(ten, p)); !ok2 || ten2 != ten || p2 != p {
				t.Fatalf("key %q: parsed %q/%d, which round-trips to %q/%d %v", key, ten, p, ten2, p2, ok2)
			}
		}
		s, err := UnmarshalState(value)
		if err != nil {
			return
		}
		again, err := s.Marshal()
		if err != nil {
			t.Fatalf("a decoded state does not encode: %v", err)
		}
		s2, err := UnmarshalState(again)
		if err != nil {
			t.Fatalf("an encoded state does not decode: %v", err)
		}
		if !reflect.DeepEqual(s, s2) {
			t.Fatalf("state changed through encoding:\n%+v\n%+v", s, s2)
		}
		v := NewView()
		v.Apply(s)
		for _, ten := range []string{s.Tenant, "other"} {
			_ = v.Check(ten, series)
		}
		if u := v.Tenant(s.Tenant); u != nil {
			_ = u.Partition(s.Partition)
		}
	})
}
