package limits

import (
	"math"
	"testing"
	"time"
)

// FuzzRuntimeFile feeds arbitrary runtime files to the loader every edge
// and sink reloads: it never panics, a refused file leaves the limits in
// force unchanged, and an accepted one gives every tenant limits that
// pass Validate.
func FuzzRuntimeFile(f *testing.F) {
	f.Add([]byte("defaults:\n  ingestion_rate: 200000\ntenants:\n  team-a:\n    ingestion_rate: 1000000\n    ingestion_burst: 2000000\n    max_request_bytes: 33554432\n  telegraf-fleet:\n    influx_string_fields: info\n    influx_database_label: db\n"))
	f.Add([]byte("tenants:\n  team-a:\n    max_future_skew: 1h\n    out_of_order_window: 10m\n    max_labels_per_series: 0\n"))
	f.Add([]byte("tenants:\n  a.b:\n    ingestion_rate: -1\n"))
	f.Add([]byte("defaults: [1, 2]\n"))
	f.Add([]byte(""))
	static := Limits{
		MaxRequestBytes: 10 << 20, MaxDecompressedBytes: 64 << 20, MaxLabelsPerSeries: 30,
		MaxLabelNameLength: 1024, MaxLabelValueLength: 2048, MaxFutureSkew: 10 * time.Minute,
		MaxBackfillAge: 720 * time.Hour, InfluxStringFields: "drop",
	}
	if err := static.Validate(); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		o := NewOverrides(static)
		before := *o.For("team-a")
		if err := o.Load(data); err != nil {
			if *o.For("team-a") != before {
				t.Fatal("a refused file changed the limits in force")
			}
			return
		}
		for _, ten := range append(o.Tenants(), "anonymous") {
			l := o.For(ten)
			if l == nil {
				t.Fatalf("no limits for tenant %q", ten)
			}
			if err := l.Validate(); err != nil {
				t.Fatalf("accepted limits of %q that do not validate: %v", ten, err)
			}
			if math.IsNaN(l.IngestionRate) || math.IsInf(l.IngestionRate, 0) {
				t.Fatalf("accepted ingestion_rate %v of %q: a token bucket cannot work with it", l.IngestionRate, ten)
			}
		}
	})
}
