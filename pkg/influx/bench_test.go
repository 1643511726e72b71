package influx

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// BenchBody is a 5000-line body with 9 tags and one field per line, the
// shape of the line-protocol anchor in ANCHORS.md (Telegraf's layout:
// tags sorted, float field, nanosecond timestamps). round changes the
// values and timestamps.
func BenchBody(round int) []byte {
	var sb strings.Builder
	ts := int64(1_700_000_000_000_000_000) + int64(round)*10_000_000_000
	for i := 0; i < 5000; i++ {
		fmt.Fprintf(&sb, "node_cpu,cluster=eu-west-1,container=node-exporter,cpu=%d,host=host-%04d,job=node,mode=idle,namespace=monitoring,pod=node-exporter-%05d,service=node seconds=%d.%03d %d\n",
			i%16, i/16, i/40, round*i, i%1000, ts)
	}
	return []byte(sb.String())
}

func BenchmarkParse(b *testing.B) {
	body := BenchBody(1)
	var batch Batch
	o := Options{Now: time.Now()}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := batch.Parse(body, &o); err != nil || len(batch.Series) != 5000 {
			b.Fatal(err, len(batch.Series))
		}
	}
	b.ReportMetric(float64(5000*b.N)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkDecoderOnly is the floor: the library decoder visiting every
// token, without building series.
func BenchmarkDecoderOnly(b *testing.B) {
	body := BenchBody(1)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		dec := lineprotocol.NewDecoderWithBytes(body)
		n := 0
		for dec.Next() {
			if _, err := dec.Measurement(); err != nil {
				b.Fatal(err)
			}
			for {
				k, _, err := dec.NextTag()
				if err != nil {
					b.Fatal(err)
				}
				if k == nil {
					break
				}
			}
			for {
				k, _, err := dec.NextField()
				if err != nil {
					b.Fatal(err)
				}
				if k == nil {
					break
				}
			}
			if _, err := dec.Time(lineprotocol.Nanosecond, time.Time{}); err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != 5000 {
			b.Fatal(n)
		}
	}
	b.ReportMetric(float64(5000*b.N)/b.Elapsed().Seconds(), "lines/s")
}
