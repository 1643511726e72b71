package gen

import (
	"errors"
	"fmt"
)

// Protocol is the wire format of the generated requests.
type Protocol string

const (
	// PRW1 is Prometheus remote-write 1.0 (prometheus.WriteRequest), snappy.
	PRW1 Protocol = "prw1"
	// PRW2 is Prometheus remote-write 2.0 (io.prometheus.write.v2.Request), snappy.
	PRW2 Protocol = "prw2"
	// Influx is InfluxDB line protocol, uncompressed, nanosecond timestamps.
	Influx Protocol = "influx"
)

// Options describe the population and how requests are cut from it.
type Options struct {
	// Seed determines every label and sample value.
	Seed uint64
	// Series is the number of active series (slots).
	Series int
	// BatchSize is the number of series per request: each request carries
	// one sample of each of its series.
	BatchSize int
	// Protocol is the wire format.
	Protocol Protocol
	// RunID is the value of the loadtest_run label of every series, so a
	// run's series never mix with another run's.
	RunID string
	// ChurnFraction is the fraction of instances replaced (a new pod, so
	// 100 new series each) at every churn epoch.
	ChurnFraction float64
	// ExplodeFraction is the fraction of instances whose request counters
	// carry a session_id label that changes every round: the
	// cardinality-explosion scenario.
	ExplodeFraction float64
}

func (o Options) validate() error {
	var errs []error
	if o.Series < 1 {
		errs = append(errs, fmt.Errorf("series must be at least 1, got %d", o.Series))
	}
	if o.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("batch size must be at least 1, got %d", o.BatchSize))
	}
	switch o.Protocol {
	case PRW1, PRW2, Influx:
	default:
		errs = append(errs, fmt.Errorf("protocol %q is not one of prw1, prw2, influx", o.Protocol))
	}
	if o.RunID == "" || len(o.RunID) > 64 {
		errs = append(errs, errors.New("run ID must hold 1 to 64 characters"))
	}
	for _, r := range o.RunID {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			errs = append(errs, fmt.Errorf("run ID %q may hold only a-z, 0-9 and '-'", o.RunID))
			break
		}
	}
	if o.ChurnFraction < 0 || o.ChurnFraction > 1 {
		errs = append(errs, fmt.Errorf("churn fraction must be within [0, 1], got %g", o.ChurnFraction))
	}
	if o.ExplodeFraction < 0 || o.ExplodeFraction > 1 {
		errs = append(errs, fmt.Errorf("explode fraction must be within [0, 1], got %g", o.ExplodeFraction))
	}
	return errors.Join(errs...)
}
