package rollup

import (
	"encoding/binary"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
)

// FuzzRows feeds arbitrary records of a weir.<tenant>.rollup topic to the
// decoder the Parquet writer runs: headers and rows never panic, and rows
// that decode encode and decode back to the same rows.
func FuzzRows(f *testing.F) {
	inc := 3.5
	rows := []Row{
		{Tenant: "t1", Rollup: "default", Partition: 3, Metric: "up", Labels: map[string]string{"job": "a"}, SeriesHash: 42,
			ResolutionMs: 300_000, WindowStartMs: 1_700_000_100_000, AllowedLatenessMs: 60_000, Kind: KindCounter,
			Count: 2, Sum: 3, Min: 1, Max: 2, First: 1, FirstTimestampMs: 1, Last: 2, LastTimestampMs: 2, Increase: &inc, Resets: 1},
		{Tenant: "t1", Rollup: "default", Metric: "g", Kind: KindGauge, Sketch: []byte{1, 2, 3}, Histogram: []byte{4}},
	}
	values, err := EncodeRows(rows, 1<<20)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(values[0], "1", "t1", "1700000000000", "")
	f.Add([]byte("{}\n\n{\"count\":1e400}\n"), "1", "t1", "1", "2")
	f.Add([]byte("not json"), "2", "", "x", "-1")
	f.Fuzz(func(t *testing.T, value []byte, version, tenant, watermark, generation string) {
		hs := []kgo.RecordHeader{
			{Key: record.HeaderVersion, Value: []byte(version)},
			{Key: record.HeaderTenant, Value: []byte(tenant)},
			{Key: HeaderWatermark, Value: []byte(watermark)},
		}
		if generation != "" {
			hs = append(hs, kgo.RecordHeader{Key: HeaderGeneration, Value: []byte(generation)})
		}
		if m, err := ParseHeaders(hs); err == nil && (m.Tenant == "" || m.Tenant != tenant) {
			t.Fatalf("accepted headers %+v", m)
		}
		rows, err := DecodeRows(value, nil)
		if err != nil {
			return
		}
		enc, err := EncodeRows(rows, 4096)
		if err != nil {
			t.Fatalf("decoded rows do not encode: %v", err)
		}
		var back []Row
		for _, v := range enc {
			if back, err = DecodeRows(v, back); err != nil {
				t.Fatalf("encoded rows do not decode: %v", err)
			}
		}
		if len(back) != len(rows) {
			t.Fatalf("%d rows became %d", len(rows), len(back))
		}
		// Compared as JSON lines: NaN never equals itself, and JSON keeps
		// no difference between an empty and a missing collection.
		for i := range rows {
			a, errA := rows[i].MarshalJSON()
			b, errB := back[i].MarshalJSON()
			if errA != nil || errB != nil || string(a) != string(b) {
				t.Fatalf("row %d changed through encoding:\n%s\n%s", i, a, b)
			}
		}
	})
}

// FuzzSketch feeds arbitrary bytes to the DDSketch decoder the Parquet
// writer runs on every gauge row: it never panics, and a sketch that
// decodes and explodes into bins encodes to bytes that decode to the same
// bins.
func FuzzSketch(f *testing.F) {
	s, err := NewSketch(0.01)
	if err != nil {
		f.Fatal(err)
	}
	for _, v := range []float64{-3, 0, 0.5, 1, 2, 1000, 1e-9} {
		_ = s.Add(v)
	}
	b, err := EncodeSketch(s)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x09, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		sk, err := DecodeSketch(b)
		if err != nil {
			return
		}
		bins, err := SketchBins(sk)
		if err != nil {
			return
		}
		enc, err := EncodeSketch(sk)
		if err != nil {
			t.Fatalf("a decoded sketch does not encode: %v", err)
		}
		sk2, err := DecodeSketch(enc)
		if err != nil {
			t.Fatalf("an encoded sketch does not decode: %v", err)
		}
		bins2, err := SketchBins(sk2)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(bins, bins2) && !(math.IsNaN(bins.Gamma) || math.IsNaN(bins.ZeroCount)) {
			t.Fatalf("bins changed through encoding:\n%+v\n%+v", bins, bins2)
		}
	})
}

// FuzzCheckpoint feeds arbitrary commit metadata (which any Kafka client
// may commit for the group) to the checkpoint parser: it never panics,
// never places a restart after the committed offset's position, and a
// checkpoint's own metadata parses back to it.
func FuzzCheckpoint(f *testing.F) {
	f.Add(int64(10), Checkpoint{Offset: 10, OffsetWatermark: 5, Position: 12, Watermark: 7}.Metadata())
	f.Add(int64(10), `{"weir_rollup":1,"p":3}`)
	f.Add(int64(-1), "")
	f.Fuzz(func(t *testing.T, offset int64, metadata string) {
		cp := ParseCheckpoint(offset, metadata)
		if cp.Offset != offset || cp.Position < offset {
			t.Fatalf("checkpoint %+v from offset %d", cp, offset)
		}
		if back := ParseCheckpoint(offset, cp.Metadata()); back != cp {
			t.Fatalf("checkpoint %+v came back as %+v", cp, back)
		}
	})
}

// FuzzPartition runs arbitrary float samples — any finite value, any
// timestamp and receive time — of a counter and a gauge through a
// partition's windows: every row it closes must be one the rollup topic
// can carry (EncodeRows succeeds), or rows would be lost on the way to
// the Parquet files.
func FuzzPartition(f *testing.F) {
	put := func(vals ...float64) []byte {
		var b []byte
		for _, v := range vals {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		}
		return b
	}
	f.Add(put(1, 2, 3, 1, 5), int64(1_700_000_000_000))
	f.Add(put(1e308, 1e308, -1e308), int64(1_700_000_000_000))
	f.Add(put(math.MaxFloat64, 0, math.MaxFloat64), int64(0))
	f.Add(put(math.SmallestNonzeroFloat64, -0.0), int64(-5000))
	specs, err := DefaultSpecs([]time.Duration{5 * time.Second, time.Minute}, time.Second)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, start int64) {
		if len(data) > 8*64 || start < -(1<<50) || start > 1<<50 {
			return
		}
		p, err := NewPartition(Options{Tenant: "t1", Partition: 0, Specs: specs, SketchRelativeAccuracy: 0.01}, nil)
		if err != nil {
			t.Fatal(err)
		}
		counter := labels("__name__", "c_total", "job", "x")
		gauge := labels("__name__", "g", "job", "x")
		for i := 0; i+8 <= len(data); i += 8 {
			v := math.Float64frombits(binary.LittleEndian.Uint64(data[i:]))
			ts := start + int64(i)*250
			p.Process(int64(i/8), ts, []prw.TimeSeries{
				floatSeries(counter, prw.MetricTypeCounter, prw.Sample{Value: v, Timestamp: ts}),
				floatSeries(gauge, prw.MetricTypeGauge, prw.Sample{Value: v, Timestamp: ts}),
			})
		}
		p.Flush()
		rows := p.TakeRows()
		if _, err := EncodeRows(rows, 1<<20); err != nil {
			t.Fatalf("closed windows whose rows cannot be written: %v", err)
		}
	})
}
