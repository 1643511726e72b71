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
	"github.com/weir-metrics/weir/pkg/record"
)

// The backfill fuzz targets feed arbitrary files to the readers of `weir
// backfill`. For any input a reader never panics, ends (an error or
// io.EOF) after at most a few calls per input byte, and every series it
// yields either passes Normalize and encodes into records that decode to
// the same number of samples, or is refused by Normalize — what Produce
// does with it.

func FuzzOpenMetricsReader(f *testing.F) {
	var b strings.Builder
	b.WriteString("# HELP temp_celsius Temperature.\n# TYPE temp_celsius gauge\n# UNIT temp_celsius celsius\n")
	for i := 0; i < 5; i++ {
		fmt.Fprintf(&b, "temp_celsius{room=\"a\"} %d.5 %d\n", i, 1700000000+i*60)
	}
	f.Add([]byte(b.String()+"# EOF\n"), 3)
	f.Add([]byte("# TYPE http_requests counter\nhttp_requests_total{code=\"200\"} 1027 1700000000000\nhttp_requests_total{code=\"400\"} 3 1700000000000\n"), 1)
	f.Add([]byte("x 1\n"), 10)
	f.Add([]byte("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1 1\nh_count 1 1\nh_sum 2 1\n# EOF\n"), 2)
	f.Fuzz(func(t *testing.T, data []byte, batch int) {
		readAll(t, NewOpenMetricsReader(data, batch%100), len(data))
	})
}

func FuzzPRWReader(f *testing.F) {
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "a"}},
		Samples: []prompb.Sample{{Value: 1, Timestamp: 1_700_000_000_000}, {Value: 0, Timestamp: 1_700_000_060_000}},
	}}}
	body, err := req.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	file := AppendPRW(nil, snappy.Encode(nil, body))
	f.Add(AppendPRW(file, snappy.Encode(nil, body)), false)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x7f}, false)
	f.Add(AppendPRW(nil, []byte{0x80, 0x80, 0x80, 0x80, 0x01}), true)
	f.Fuzz(func(t *testing.T, data []byte, v2 bool) {
		v := prw.V1
		if v2 {
			v = prw.V2
		}
		readAll(t, NewPRWReader(bytes.NewReader(data), v), len(data))
	})
}

func FuzzInfluxReader(f *testing.F) {
	f.Add([]byte("weather,city=Oslo temperature=3.5,humidity=81i 1700000000000000000\nweather,city=Bergen temperature=7 1700000000000000000\n"), uint8(0), 2)
	f.Add([]byte("m v=1\n\n# comment\nm v=2 1\n"), uint8(2), 1)
	f.Add([]byte("m,t=\"x\" s=\"str\" 1\n"), uint8(1), 5)
	precisions := []influx.Precision{influx.Nanosecond, influx.Microsecond, influx.Millisecond, influx.Second}
	f.Fuzz(func(t *testing.T, data []byte, precision uint8, batch int) {
		p := precisions[int(precision)%len(precisions)]
		readAll(t, NewInfluxReader(bytes.NewReader(data), p, batch%100), len(data))
	})
}

// readAll reads r to its end as Produce does.
func readAll(t *testing.T, r Reader, inputLen int) {
	t.Helper()
	var builder record.Builder
	for calls := 0; ; calls++ {
		if calls > 2*inputLen+2 {
			t.Fatalf("reader still yields batches after %d calls for %d input bytes", calls, inputLen)
		}
		batch, err := r.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			return
		}
		var valid []prw.TimeSeries
		want := 0
		for i := range batch {
			if batch[i].Normalize() == nil {
				valid = append(valid, batch[i])
				want += len(batch[i].Samples) + len(batch[i].Histograms)
			}
		}
		recs, err := builder.Build("t1", valid, 4, 4<<20)
		if err != nil {
			var tooLarge *record.SeriesTooLargeError
			if errors.As(err, &tooLarge) {
				continue
			}
			t.Fatalf("encoding valid series: %v", err)
		}
		got := 0
		for _, rec := range recs {
			var req prw.Request
			if err := record.Decode(record.Meta{Version: record.Version1, Tenant: "t1"}, rec.Value, &req); err != nil {
				t.Fatalf("a record of backfilled series does not decode: %v", err)
			}
			s, h, _ := req.Counts()
			got += s + h
		}
		if got != want {
			t.Fatalf("%d samples in the records, %d in the batch", got, want)
		}
	}
}
