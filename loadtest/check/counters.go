package check

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"

	"github.com/weir-metrics/weir/loadtest/query"
)

// Counters are a target's own sample counters for one tenant, summed over
// its processes, keyed "metric" or "metric{reason}".
type Counters map[string]float64

// Counter names weir exposes; see docs/http-api.md.
const (
	EdgeReceived = "weir_edge_samples_received_total"
	EdgeWritten  = "weir_edge_samples_written_total"
	EdgeRefused  = "weir_edge_samples_refused_total"
	SinkAppended = "weir_sink_samples_appended_total"
)

// downstreamDrops matches the counters of samples the stream or sink
// stages dropped on purpose (budgets, relabelling, TSDB refusals).
var downstreamDrops = regexp.MustCompile(`^weir_(stream|sink)_samples_\w*(discarded|dropped|refused|rejected|filtered)\w*_total$`)

// ReadCounters scrapes every URL and keeps weir's sample counters of
// tenant. A target that is not weir yields empty Counters.
func ReadCounters(ctx context.Context, hc *http.Client, urls []string, tenant string) (Counters, error) {
	out := Counters{}
	for _, u := range urls {
		fams, err := query.Families(ctx, hc, u)
		if err != nil {
			return nil, err
		}
		for name := range fams {
			if name != EdgeReceived && name != EdgeWritten && name != EdgeRefused && name != SinkAppended && !downstreamDrops.MatchString(name) {
				continue
			}
			for labels, v := range query.CounterValues(fams, name, map[string]string{"tenant": tenant}) {
				key := name
				if r := reasonOf(labels); r != "" {
					key += "{" + r + "}"
				}
				out[key] += v
			}
		}
	}
	return out, nil
}

func reasonOf(labels string) string {
	for _, p := range strings.Split(labels, ",") {
		if v, ok := strings.CutPrefix(p, `reason=`); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// Sub returns c - before.
func (c Counters) Sub(before Counters) Counters {
	out := Counters{}
	for k, v := range c {
		out[k] = v - before[k]
	}
	return out
}

func (c Counters) sum(prefix string) float64 {
	var s float64
	for k, v := range c {
		if k == prefix || strings.HasPrefix(k, prefix+"{") {
			s += v
		}
	}
	return s
}

// CounterCheck is the accounting of a run by the target's own counters.
type CounterCheck struct {
	OK       bool               `json:"ok"`
	Deltas   map[string]float64 `json:"deltas"`
	Problems []string           `json:"problems,omitempty"`
}

// UnacknowledgedReason is the refusal reason of writes the edge answered
// with 503 because Kafka did not acknowledge them in time. Such records
// may still reach Kafka afterwards (the edge cannot take them back), so
// the sink may store up to that many samples beyond what the edge wrote.
const UnacknowledgedReason = "kafka_unavailable"

// CheckCounters checks weir's accounting over a run (delta = after -
// before): the edge received = written + refused; what the harness saw
// acknowledged (acked, plus up to unknown) was written; and everything
// written reached the sink, appended or dropped with a reason — and
// nothing beyond that except samples of writes refused for Kafka not
// acknowledging them in time (UnacknowledgedReason), which may have
// landed. It returns nil when delta holds no weir counters (the target is
// not weir).
func CheckCounters(delta Counters, acked, unknown uint64) *CounterCheck {
	if len(delta) == 0 {
		return nil
	}
	cc := &CounterCheck{Deltas: delta}
	received, written, refused := delta.sum(EdgeReceived), delta.sum(EdgeWritten), delta.sum(EdgeRefused)
	if _, ok := delta[EdgeReceived]; ok {
		if received != written+refused {
			cc.Problems = append(cc.Problems, fmt.Sprintf("edge received %.0f samples but written + refused is %.0f + %.0f = %.0f", received, written, refused, written+refused))
		}
		if written < float64(acked) || written > float64(acked+unknown) {
			cc.Problems = append(cc.Problems, fmt.Sprintf("edge wrote %.0f samples; the harness had %d acknowledged and %d of unknown outcome", written, acked, unknown))
		}
	}
	if _, ok := delta[SinkAppended]; ok {
		var drops float64
		var keys []string
		for k := range delta {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			name, _, _ := strings.Cut(k, "{")
			if downstreamDrops.MatchString(name) {
				drops += delta[k]
			}
		}
		maybe := delta[EdgeRefused+"{"+UnacknowledgedReason+"}"]
		appended := delta.sum(SinkAppended)
		switch {
		case written > 0 && appended+drops < written:
			cc.Problems = append(cc.Problems, fmt.Sprintf("edge wrote %.0f samples; the sink appended %.0f and the stream and sink dropped %.0f (sum %.0f)", written, appended, drops, appended+drops))
		case written > 0 && appended+drops > written+maybe:
			cc.Problems = append(cc.Problems, fmt.Sprintf("edge wrote %.0f samples (and refused %.0f for Kafka not acknowledging them, which may have landed); the sink appended %.0f and the stream and sink dropped %.0f (sum %.0f)", written, maybe, appended, drops, appended+drops))
		}
	}
	cc.OK = len(cc.Problems) == 0
	return cc
}
