package backfill

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/weir-metrics/weir/pkg/influx"
	"github.com/weir-metrics/weir/pkg/prw"
)

func collect(t *testing.T, r Reader) map[string][]prw.Sample {
	t.Helper()
	out := map[string][]prw.Sample{}
	for {
		batch, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, ts := range batch {
			var b strings.Builder
			for _, l := range ts.Labels {
				fmt.Fprintf(&b, "%s=%s,", l.Name, l.Value)
			}
			out[b.String()] = append(out[b.String()], ts.Samples...)
		}
	}
}

func TestOpenMetrics(t *testing.T) {
	var b strings.Builder
	b.WriteString("# HELP temp_celsius Temperature.\n# TYPE temp_celsius gauge\n# UNIT temp_celsius celsius\n")
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&b, "temp_celsius{room=\"a\"} %d.5 %d\n", i, 1700000000+i*60)
		fmt.Fprintf(&b, "temp_celsius{room=\"b\"} %d %d\n", -i, 1700000000+i*60)
	}
	b.WriteString("# EOF\n")
	r := NewOpenMetricsReader([]byte(b.String()), 7)
	first, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if first[0].Metadata.Type != prw.MetricTypeGauge || first[0].Metadata.Unit != "celsius" || first[0].Metadata.Help != "Temperature." {
		t.Fatalf("metadata %+v", first[0].Metadata)
	}
	got := collect(t, NewOpenMetricsReader([]byte(b.String()), 7))
	a := got["__name__=temp_celsius,room=a,"]
	if len(a) != 100 || a[3].Value != 3.5 || a[3].Timestamp != (1700000000+180)*1000 {
		t.Fatalf("room a: %d samples, [3]=%+v", len(a), a[3])
	}
	if len(got["__name__=temp_celsius,room=b,"]) != 100 {
		t.Fatal("room b samples missing")
	}
}

func TestPromTextAndMetadata(t *testing.T) {
	data := "# TYPE req_total counter\nreq_total{code=\"200\"} 5 1700000000000\nreq_total{code=\"200\"} 7 1700000015000\n"
	r := NewOpenMetricsReader([]byte(data), 100)
	batch, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if len(batch) != 1 || len(batch[0].Samples) != 2 || batch[0].Samples[1].Timestamp != 1700000015000 {
		t.Fatalf("got %+v", batch)
	}
	if batch[0].Metadata.Type != prw.MetricTypeCounter {
		t.Fatalf("metadata %+v", batch[0].Metadata)
	}
}

func TestSampleWithoutTimestampIsRefused(t *testing.T) {
	_, err := NewOpenMetricsReader([]byte("up 1\n"), 10).Next()
	if err == nil || !strings.Contains(err.Error(), "timestamp") {
		t.Fatalf("want a timestamp error, got %v", err)
	}
}

func TestPRWFile(t *testing.T) {
	var file []byte
	for i := 0; i < 3; i++ {
		req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  []prompb.Label{{Name: "__name__", Value: "m"}, {Name: "req", Value: fmt.Sprint(i)}},
			Samples: []prompb.Sample{{Value: float64(i), Timestamp: int64(i * 1000)}, {Value: float64(i + 1), Timestamp: int64(i*1000 + 500)}},
		}}}
		body, _ := req.Marshal()
		file = AppendPRW(file, snappy.Encode(nil, body))
	}
	got := collect(t, NewPRWReader(bytes.NewReader(file), prw.V1))
	if len(got) != 3 || len(got["__name__=m,req=2,"]) != 2 {
		t.Fatalf("got %v", got)
	}
	// A truncated file is an error naming the request.
	err := drain(NewPRWReader(bytes.NewReader(file[:len(file)-3]), prw.V1))
	if err == nil || !strings.Contains(err.Error(), "request 2") {
		t.Fatalf("truncated file: %v", err)
	}
}

func drain(r Reader) error {
	for {
		_, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func TestInfluxFile(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 25; i++ {
		fmt.Fprintf(&b, "cpu,host=h%d usage_idle=%d.5,usage_user=%di %d\n", i%3, i, i, int64(1700000000+i)*1_000_000_000)
	}
	got := collect(t, NewInfluxReader(strings.NewReader(b.String()), influx.Nanosecond, 10))
	idle := got["__name__=cpu_usage_idle,host=h1,"]
	if len(idle) != 8 || idle[0].Value != 1.5 || idle[0].Timestamp != 1700000001000 {
		t.Fatalf("cpu_usage_idle{host=h1}: %+v (all: %v)", idle, got)
	}
	err := drain(NewInfluxReader(strings.NewReader("cpu v=1 1700000000000000000\ncpu v=2\n"), influx.Nanosecond, 10))
	if err == nil || !strings.Contains(err.Error(), "no timestamp") {
		t.Fatalf("line without timestamp: %v", err)
	}
	err = drain(NewInfluxReader(strings.NewReader("cpu v=1 1000000000\ncpu v=1 2000000000\ncpu,=x v=2 3000000000\n"), influx.Nanosecond, 2))
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("bad line: %v", err)
	}
}
