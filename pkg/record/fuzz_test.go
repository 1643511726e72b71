package record

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/prw"
)

// FuzzRecord feeds arbitrary headers and values to what a stream or sink
// worker does with a record it fetched. Raw topics are ordinary Kafka
// topics any client can write to, so for any input:
//
//  1. ParseHeaders and Decode never panic; ParseHeaders accepts only
//     version 1 with a tenant.
//  2. The series of a decoded value that pass Normalize (the edge's own
//     checks) re-encode with Builder into records that decode again to the
//     same series, samples, histograms and exemplars, each series in the
//     partition Partition gives it and no record above the size limit.
func FuzzRecord(f *testing.F) {
	var b Builder
	at := strconv.FormatInt(time.UnixMilli(1_700_000_000_000).UnixMilli(), 10)
	for _, n := range []int{1, 3} {
		var ss []prw.TimeSeries
		for i := range n {
			ss = append(ss, series(i, 2))
		}
		recs, err := b.Build("team-a", ss, 2, 1<<20)
		if err != nil {
			f.Fatal(err)
		}
		for _, r := range recs {
			f.Add("1", "team-a", SourcePRW1, at, slices.Clone(r.Value))
		}
	}
	f.Add("1", "team-a", SourceInflux, at, []byte{})
	f.Add("2", "team-a", SourcePRW2, at, []byte{0x0a, 0x00})
	f.Add("1", "", SourcePRW2, "x", []byte{0xff})
	f.Fuzz(func(t *testing.T, version, tenant, source, received string, value []byte) {
		hs := []kgo.RecordHeader{
			{Key: HeaderVersion, Value: []byte(version)},
			{Key: HeaderTenant, Value: []byte(tenant)},
			{Key: HeaderSource, Value: []byte(source)},
			{Key: HeaderReceivedAt, Value: []byte(received)},
		}
		m, err := ParseHeaders(hs)
		if err != nil {
			return
		}
		if m.Version != Version1 || m.Tenant == "" || m.Tenant != tenant || m.Source != source {
			t.Fatalf("accepted headers %+v from %q %q %q", m, version, tenant, source)
		}
		var req prw.Request
		if err := Decode(m, value, &req); err != nil {
			return
		}
		var valid []prw.TimeSeries
		for i := range req.Series {
			if req.Series[i].Normalize() == nil {
				valid = append(valid, req.Series[i])
			}
		}
		const partitions, maxBytes = 3, 64 << 10
		var rb Builder
		recs, err := rb.Build(m.Tenant, valid, partitions, maxBytes)
		if err != nil {
			var tooLarge *SeriesTooLargeError
			if errors.As(err, &tooLarge) {
				return
			}
			t.Fatalf("building records of valid series: %v", err)
		}
		want := map[string]int{}
		for i := range valid {
			want[fingerprint(&valid[i])]++
		}
		got := map[string]int{}
		for _, r := range recs {
			if len(r.Value) > maxBytes {
				t.Fatalf("record of %d bytes above the limit %d", len(r.Value), maxBytes)
			}
			var back prw.Request
			if err := Decode(m, r.Value, &back); err != nil {
				t.Fatalf("a record weir wrote does not decode: %v", err)
			}
			if len(back.Series) != r.Series {
				t.Fatalf("record says %d series, holds %d", r.Series, len(back.Series))
			}
			for i := range back.Series {
				s := &back.Series[i]
				if p := Partition(m.Tenant, s.Labels, partitions); p != r.Partition {
					t.Fatalf("series %s in partition %d, belongs in %d", prw.Selector(s.Labels), r.Partition, p)
				}
				got[fingerprint(s)]++
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%d distinct series after re-encoding, %d before", len(got), len(want))
		}
		for k, n := range want {
			if got[k] != n {
				t.Fatalf("series %q: %d times after re-encoding, %d before", k, got[k], n)
			}
		}
	})
}

// fingerprint is a series' labels and data points as one comparable
// string (metadata aside: it travels per series but is not data).
func fingerprint(s *prw.TimeSeries) string {
	b := []byte(prw.Selector(s.Labels))
	for _, x := range s.Samples {
		b = strconv.AppendUint(append(b, " s"...), math.Float64bits(x.Value), 16)
		b = strconv.AppendInt(append(b, '@'), x.Timestamp, 10)
		b = strconv.AppendInt(append(b, '^'), x.StartTimestamp, 10)
	}
	for _, h := range s.Histograms {
		b = strconv.AppendInt(append(b, " h@"...), h.Timestamp, 10)
		b = strconv.AppendInt(append(b, '^'), h.StartTimestamp, 10)
	}
	for _, x := range s.Exemplars {
		b = append(b, " x"...)
		b = append(b, prw.Selector(x.Labels)...)
		b = strconv.AppendUint(b, math.Float64bits(x.Value), 16)
		b = strconv.AppendInt(append(b, '@'), x.Timestamp, 10)
	}
	return string(b)
}
