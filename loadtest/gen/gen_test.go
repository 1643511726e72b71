package gen

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	lp "github.com/influxdata/line-protocol/v2/lineprotocol"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

const ts0 = int64(1_795_000_000_000) // 2026-11-18, even

func newPop(t testing.TB, o Options) *Population {
	t.Helper()
	if o.RunID == "" {
		o.RunID = "test"
	}
	if o.Protocol == "" {
		o.Protocol = PRW1
	}
	p, err := NewPopulation(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// bodies generates rounds bodies of every batch, churning at every round
// from churnFrom on.
func bodies(t testing.TB, p *Population, rounds int, churnFrom int) [][]byte {
	t.Helper()
	var out [][]byte
	bs := p.Batches()
	for r := 0; r < rounds; r++ {
		for _, b := range bs {
			if churnFrom > 0 && r >= churnFrom {
				b.Churn(uint32(r - churnFrom + 1))
			}
			body, err := b.Next(ts0 + int64(r)*2000)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, bytes.Clone(body))
		}
	}
	return out
}

func TestSameSeedSameBodies(t *testing.T) {
	for _, proto := range []Protocol{PRW1, PRW2, Influx} {
		t.Run(string(proto), func(t *testing.T) {
			o := Options{Seed: 42, Series: 750, BatchSize: 300, Protocol: proto, ChurnFraction: 0.3, ExplodeFraction: 0.5}
			a := bodies(t, newPop(t, o), 6, 2)
			b := bodies(t, newPop(t, o), 6, 2)
			if len(a) != 18 {
				t.Fatalf("got %d bodies, want 3 batches × 6 rounds", len(a))
			}
			for i := range a {
				if !bytes.Equal(a[i], b[i]) {
					t.Fatalf("body %d differs between two populations with the same seed", i)
				}
			}
			o.Seed = 43
			c := bodies(t, newPop(t, o), 6, 2)
			same := 0
			for i := range a {
				if bytes.Equal(a[i], c[i]) {
					same++
				}
			}
			if same > 0 {
				t.Fatalf("%d of %d bodies are identical with another seed", same, len(a))
			}
		})
	}
}

type decoded struct {
	name   string
	labels []Label // without __name__, sorted
	value  float64
	ts     int64
}

func decodePRW1(t *testing.T, body []byte) []decoded {
	t.Helper()
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		t.Fatalf("Prometheus cannot decode the remote-write 1.0 body: %v", err)
	}
	var out []decoded
	for _, ts := range req.Timeseries {
		var d decoded
		if !slices.IsSortedFunc(ts.Labels, func(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) }) {
			t.Fatalf("labels not sorted: %v", ts.Labels)
		}
		for _, l := range ts.Labels {
			if l.Name == "__name__" {
				d.name = l.Value
			} else {
				d.labels = append(d.labels, Label{l.Name, l.Value})
			}
		}
		if len(ts.Samples) != 1 {
			t.Fatalf("series has %d samples, want 1", len(ts.Samples))
		}
		d.value, d.ts = ts.Samples[0].Value, ts.Samples[0].Timestamp
		out = append(out, d)
	}
	return out
}

func decodePRW2(t *testing.T, body []byte) ([]decoded, []writev2.Metadata_MetricType) {
	t.Helper()
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	var req writev2.Request
	if err := req.Unmarshal(raw); err != nil {
		t.Fatalf("Prometheus cannot decode the remote-write 2.0 body: %v", err)
	}
	var out []decoded
	var types []writev2.Metadata_MetricType
	for _, ts := range req.Timeseries {
		var d decoded
		refs := ts.LabelsRefs
		for i := 0; i+1 < len(refs); i += 2 {
			n, v := req.Symbols[refs[i]], req.Symbols[refs[i+1]]
			if n == "__name__" {
				d.name = v
			} else {
				d.labels = append(d.labels, Label{n, v})
			}
		}
		d.value, d.ts = ts.Samples[0].Value, ts.Samples[0].Timestamp
		out = append(out, d)
		types = append(types, ts.Metadata.Type)
	}
	return out, types
}

func decodeInflux(t *testing.T, body []byte) []decoded {
	t.Helper()
	dec := lp.NewDecoderWithBytes(body)
	var out []decoded
	for dec.Next() {
		m, err := dec.Measurement()
		if err != nil {
			t.Fatal(err)
		}
		var tags []Label
		for {
			k, v, err := dec.NextTag()
			if err != nil {
				t.Fatal(err)
			}
			if k == nil {
				break
			}
			tags = append(tags, Label{string(k), string(v)})
		}
		var fields []decoded
		for {
			k, v, err := dec.NextField()
			if err != nil {
				t.Fatalf("the line-protocol decoder refuses a field: %v", err)
			}
			if k == nil {
				break
			}
			if v.Kind() != lp.Float {
				t.Fatalf("field %s is %v, want float", k, v.Kind())
			}
			fields = append(fields, decoded{name: string(m) + "_" + string(k), labels: tags, value: v.FloatV()})
		}
		tm, err := dec.Time(lp.Nanosecond, time.UnixMilli(ts0))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fields {
			f.ts = tm.UnixMilli()
			out = append(out, f)
		}
	}
	return out
}

func decode(t *testing.T, proto Protocol, body []byte) []decoded {
	switch proto {
	case PRW1:
		return decodePRW1(t, body)
	case PRW2:
		d, _ := decodePRW2(t, body)
		return d
	default:
		return decodeInflux(t, body)
	}
}

// TestBodiesDecodeToTheModel decodes generated bodies with the reference
// decoders (Prometheus' protobuf types, InfluxData's line-protocol parser)
// and compares every series, value and timestamp with what the batch
// reports, across rounds with churn and explosion.
func TestBodiesDecodeToTheModel(t *testing.T) {
	for _, proto := range []Protocol{PRW1, PRW2, Influx} {
		t.Run(string(proto), func(t *testing.T) {
			p := newPop(t, Options{Seed: 7, Series: 450, BatchSize: 200, Protocol: proto, ChurnFraction: 0.5, ExplodeFraction: 0.5})
			bs := p.Batches()
			if len(bs) != 3 || bs[2].Len() != 50 {
				t.Fatalf("450 series in batches of 200: got %d batches, last of %d", len(bs), bs[len(bs)-1].Len())
			}
			labelCount := 0
			kinds := map[Kind]int{}
			for round := 0; round < 4; round++ {
				ts := ts0 + int64(round)*15000
				for _, b := range bs {
					b.Churn(uint32(round))
					body, err := b.Next(ts)
					if err != nil {
						t.Fatal(err)
					}
					got := decode(t, proto, body)
					if len(got) != b.Len() {
						t.Fatalf("decoded %d series, batch has %d", len(got), b.Len())
					}
					for i, d := range got {
						id := b.IDs()[i]
						name, labels := p.Labels(id)
						if d.name != name || !slices.Equal(d.labels, labels) {
							t.Fatalf("series %d is %s%v, the batch says %s%v", i, d.name, d.labels, name, labels)
						}
						if d.value != b.Values()[i] || d.ts != ts {
							t.Fatalf("series %d: value %v at %d, want %v at %d", i, d.value, d.ts, b.Values()[i], ts)
						}
						labelCount += len(labels) + 1
						kinds[KindOf(int(id.Slot))]++
						if p.Exploding(int(id.Slot)) && id.Explode != uint32(round+1) {
							t.Fatalf("exploding series %v in round %d", id, round+1)
						}
					}
				}
			}
			avg := float64(labelCount) / float64(4*450)
			if avg < 10 || avg > 13 {
				t.Errorf("series carry %.1f labels on average, want about 11", avg)
			}
			for _, k := range []Kind{Counter, Gauge, Bucket, HistSum, HistCount} {
				if kinds[k] == 0 {
					t.Errorf("no series of kind %d", k)
				}
			}
		})
	}
}

func TestRemoteWrite2Metadata(t *testing.T) {
	p := newPop(t, Options{Seed: 1, Series: 100, BatchSize: 100, Protocol: PRW2})
	b := p.Batches()[0]
	body, err := b.Next(ts0)
	if err != nil {
		t.Fatal(err)
	}
	got, types := decodePRW2(t, body)
	want := map[Kind]writev2.Metadata_MetricType{
		Counter: writev2.Metadata_METRIC_TYPE_COUNTER, Gauge: writev2.Metadata_METRIC_TYPE_GAUGE,
		Bucket: writev2.Metadata_METRIC_TYPE_HISTOGRAM, HistSum: writev2.Metadata_METRIC_TYPE_HISTOGRAM, HistCount: writev2.Metadata_METRIC_TYPE_HISTOGRAM,
	}
	for i := range got {
		if k := KindOf(i); types[i] != want[k] {
			t.Errorf("%s has metadata type %v, want %v", got[i].name, types[i], want[k])
		}
	}
}

// TestValuesBehaveLikeTheirKind: counters never decrease (until their pod
// restarts), histogram buckets are cumulative and +Inf equals _count.
func TestValuesBehaveLikeTheirKind(t *testing.T) {
	p := newPop(t, Options{Seed: 3, Series: 200, BatchSize: 200})
	b := p.Batches()[0]
	prev := make([]float64, b.Len())
	for round := 0; round < 50; round++ {
		if _, err := b.Next(ts0 + int64(round)*2); err != nil {
			t.Fatal(err)
		}
		v := b.Values()
		for i := range v {
			switch KindOf(i) {
			case Counter, Bucket, HistCount, HistSum:
				if round > 0 && v[i] < prev[i] {
					t.Fatalf("round %d: %s went down from %v to %v", round, MetricName(i), prev[i], v[i])
				}
			}
			if v[i] < 0 || v[i] != math.Trunc(v[i]*16)/16 {
				t.Fatalf("%s = %v is not a non-negative multiple of 1/16", MetricName(i), v[i])
			}
		}
		// In each histogram: buckets rise with le, +Inf bucket == count.
		for i := 0; i < b.Len(); i++ {
			if KindOf(i) == HistCount {
				j := i - 2 // +Inf bucket precedes _sum, _count
				if KindOf(j) != Bucket || v[j] != v[i] {
					t.Fatalf("%s = %v but its +Inf bucket is %v", MetricName(i), v[i], v[j])
				}
				for k := j; k > 0 && KindOf(k-1) == Bucket; k-- {
					if v[k-1] > v[k] {
						t.Fatalf("bucket %d of %s above the next one", k-1, MetricName(i))
					}
				}
			}
		}
		copy(prev, v)
	}
}

func TestChurnReplacesPodsAndRestartsCounters(t *testing.T) {
	p := newPop(t, Options{Seed: 5, Series: 300, BatchSize: 300, ChurnFraction: 1})
	b := p.Batches()[0]
	before, _ := b.Next(ts0)
	before = bytes.Clone(before)
	old := decodePRW1(t, before)
	b.Churn(1)
	after, _ := b.Next(ts0 + 2)
	now := decodePRW1(t, after)
	for i := range now {
		if b.IDs()[i].Gen != 1 {
			t.Fatalf("series %d has generation %d after one churn of every instance", i, b.IDs()[i].Gen)
		}
		op, np := labelValue(old[i].labels, PodLabel), labelValue(now[i].labels, PodLabel)
		if op == np || len(op) != len(np) {
			t.Fatalf("pod %q became %q; want a new name of the same width", op, np)
		}
		if KindOf(i) == Counter && now[i].value > 3*1000 {
			t.Fatalf("counter %s did not restart: %v", now[i].name, now[i].value)
		}
	}
	if !b.IdentityChanged() {
		t.Fatal("IdentityChanged is false after churn")
	}
}

func labelValue(ls []Label, name string) string {
	for _, l := range ls {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

func TestOptionsValidated(t *testing.T) {
	for _, o := range []Options{
		{Series: 0, BatchSize: 1, Protocol: PRW1, RunID: "x"},
		{Series: 1, BatchSize: 0, Protocol: PRW1, RunID: "x"},
		{Series: 1, BatchSize: 1, Protocol: "otlp", RunID: "x"},
		{Series: 1, BatchSize: 1, Protocol: PRW1, RunID: "Bad Run"},
		{Series: 1, BatchSize: 1, Protocol: PRW1, RunID: "x", ChurnFraction: 2},
	} {
		if _, err := NewPopulation(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	p := newPop(t, Options{Series: 1, BatchSize: 1})
	if _, err := p.Batches()[0].Next(1 << 50); err == nil {
		t.Error("a timestamp beyond 2109 was accepted")
	}
}

func TestMarkerDecodes(t *testing.T) {
	for _, proto := range []Protocol{PRW1, PRW2, Influx} {
		body := MarkerBody(proto, "run-1", 17, ts0)
		got := decode(t, proto, body)
		if len(got) != 1 || got[0].name != MarkerName || got[0].value != 17 || got[0].ts != ts0 ||
			!slices.Equal(got[0].labels, []Label{{"job", "loadtest"}, {RunLabel, "run-1"}}) {
			t.Errorf("%s marker decodes to %+v", proto, got)
		}
	}
}

// BenchmarkNext measures the generator's cost per sample: patching values
// and timestamps plus compression, for a 2000-series request.
func BenchmarkNext(b *testing.B) {
	for _, proto := range []Protocol{PRW1, PRW2, Influx} {
		b.Run(string(proto), func(b *testing.B) {
			p := newPop(b, Options{Seed: 1, Series: 2000, BatchSize: 2000, Protocol: proto})
			batch := p.Batches()[0]
			b.ResetTimer()
			var size int
			for i := 0; i < b.N; i++ {
				body, err := batch.Next(ts0 + int64(i)*2)
				if err != nil {
					b.Fatal(err)
				}
				size = len(body)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/2000, "ns/sample")
			b.ReportMetric(float64(size), "bytes/request")
		})
	}
}
