package record

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/prw"
)

func TestHeadersRoundTrip(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	m, err := ParseHeaders(Headers(Meta{Tenant: "team-a", Source: SourcePRW2, ReceivedAt: at}))
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != Version1 || m.Tenant != "team-a" || m.Source != SourcePRW2 || !m.ReceivedAt.Equal(at) {
		t.Fatalf("got %+v", m)
	}
}

func TestParseHeadersRefusesUnknownVersion(t *testing.T) {
	hs := Headers(Meta{Tenant: "t", Source: SourcePRW1, ReceivedAt: time.Now()})
	hs[0] = kgo.RecordHeader{Key: HeaderVersion, Value: []byte("2")}
	if _, err := ParseHeaders(hs); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("want ErrUnknownVersion, got %v", err)
	}
	if _, err := ParseHeaders(hs[1:]); !errors.Is(err, ErrMissingHeader) {
		t.Fatalf("want ErrMissingHeader, got %v", err)
	}
}

// TestPartitionIsStable pins the partitioning function: changing it would
// move existing series to other partitions and break per-series order.
func TestPartitionIsStable(t *testing.T) {
	ls := []prw.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "node"}}
	if got := SeriesHash("team-a", ls); got != 0x0bdd1711f50f9f42 {
		t.Fatalf("SeriesHash changed: %#x", got)
	}
	// The hash covers the tenant, so one series of two tenants may land
	// in different partitions.
	for ten, want := range map[string]int32{"team-a": 2, "team-b": 3, "anonymous": 0} {
		if got := Partition(ten, ls, 8); got != want {
			t.Errorf("Partition(%s) = %d, want %d", ten, got, want)
		}
	}
	if SeriesHash("a", []prw.Label{{Name: "b", Value: "c"}}) == SeriesHash("a\xffb", []prw.Label{{Name: "", Value: "c"}}) {
		t.Fatal("separator does not separate")
	}
}

func series(i, samples int) prw.TimeSeries {
	ts := prw.TimeSeries{Labels: []prw.Label{
		{Name: "__name__", Value: "metric"},
		{Name: "i", Value: fmt.Sprint(i)},
		{Name: "pad", Value: strings.Repeat("p", 200)},
	}}
	for j := 0; j < samples; j++ {
		ts.Samples = append(ts.Samples, prw.Sample{Value: float64(i*1000 + j), Timestamp: int64(j)})
	}
	return ts
}

// TestBuilderSplitsByPartitionAndSize checks that every series lands in
// its partition, no record exceeds the limit, and nothing is lost,
// duplicated or reordered.
func TestBuilderSplitsByPartitionAndSize(t *testing.T) {
	var in []prw.TimeSeries
	for i := 0; i < 500; i++ {
		in = append(in, series(i, 10))
	}
	const maxBytes = 16 << 10
	var b Builder
	recs, err := b.Build("t", in, 4, maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	perPartition := map[int32]int{}
	seen := map[string][]prw.Sample{}
	for _, r := range recs {
		perPartition[r.Partition]++
		if len(r.Value) > maxBytes {
			t.Fatalf("record of %d bytes exceeds %d", len(r.Value), maxBytes)
		}
		var req prw.Request
		if err := Decode(Meta{Version: Version1, Tenant: "t"}, r.Value, &req); err != nil {
			t.Fatal(err)
		}
		if len(req.Series) != r.Series {
			t.Fatalf("record says %d series, holds %d", r.Series, len(req.Series))
		}
		for _, ts := range req.Series {
			if p := Partition("t", ts.Labels, 4); p != r.Partition {
				t.Fatalf("series in partition %d, belongs in %d", r.Partition, p)
			}
			k := ts.Labels[1].Value
			seen[k] = append(seen[k], ts.Samples...)
		}
	}
	if len(perPartition) != 4 {
		t.Fatalf("records in %d partitions, want 4", len(perPartition))
	}
	if len(recs) <= 4 {
		t.Fatalf("%d records: the size limit did not split anything", len(recs))
	}
	if len(seen) != len(in) {
		t.Fatalf("%d series came out, %d went in", len(seen), len(in))
	}
	for i, ts := range in {
		got := seen[fmt.Sprint(i)]
		if len(got) != len(ts.Samples) {
			t.Fatalf("series %d: %d samples, want %d", i, len(got), len(ts.Samples))
		}
		for j := range got {
			if got[j].Value != ts.Samples[j].Value || got[j].Timestamp != ts.Samples[j].Timestamp {
				t.Fatalf("series %d sample %d: %+v, want %+v", i, j, got[j], ts.Samples[j])
			}
		}
	}
}

func TestBuilderRefusesSeriesLargerThanARecord(t *testing.T) {
	var b Builder
	_, err := b.Build("t", []prw.TimeSeries{series(1, 5000)}, 4, 16<<10)
	var tooLarge *SeriesTooLargeError
	if !errors.As(err, &tooLarge) {
		t.Fatalf("want SeriesTooLargeError, got %v", err)
	}
	if !strings.Contains(err.Error(), `i="1"`) {
		t.Fatalf("error does not name the series: %v", err)
	}
}
