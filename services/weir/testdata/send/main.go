// Command send writes one remote-write 1.0 sample to weir, for the README's
// tour when no Prometheus is at hand.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/prometheus/prompb"

	"github.com/weir-metrics/weir/internal/weirtest"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:9480/api/v1/write", "remote-write URL")
	tenant := flag.String("tenant", "", "tenant (X-Scope-OrgID)")
	value := flag.Float64("value", 21.5, "sample value")
	flag.Parse()
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "weir_tour_temperature_celsius"}, {Name: "room", Value: "kitchen"}},
		Samples: []prompb.Sample{{Value: *value, Timestamp: time.Now().UnixMilli()}},
	}}}
	base := (*url)[:len(*url)-len("/api/v1/write")]
	res, err := weirtest.WriteV1(base, *tenant, req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%d %s\n", res.Status, res.Body)
	if res.Status/100 != 2 {
		os.Exit(1)
	}
}
