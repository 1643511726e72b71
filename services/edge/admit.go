package edge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/weir-metrics/weir/pkg/limits"
	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
)

// write is one decoded request on its way to Kafka, whatever protocol it
// arrived in.
type write struct {
	tenant   string
	source   string // record.Source*
	received time.Time
	limits   *limits.Limits
	// usage holds what the request reached before decoding (body sizes);
	// admit adds the series' peaks.
	usage  limits.Usage
	series []prw.TimeSeries
	// samples counts floats, histograms counts native histograms.
	samples, histograms, exemplars int
	builder                        *record.Builder
	// hashes are the series' record.SeriesHash when the protocol's
	// handler knows them already, else nil.
	hashes []uint64
}

// admit is the admission path every write protocol shares, for series the
// protocol's handler has normalised (prw.TimeSeries.Normalize: labels
// sorted, names unique, valid). It runs these steps in order and stops at
// the first refusal, so nothing of a refused request reaches Kafka:
//
//  1. data limits: labels, label lengths, future timestamps, exemplars
//     (400 naming the limit, its value, the tenant and a series);
//  2. series budgets;
//  3. ingestion rate (429 with Retry-After);
//  4. the tenant's topics, created on first use (503 when Kafka is down);
//  5. records: series grouped by partition and encoded;
//  6. produce and wait for Kafka's acknowledgement (503 when it does not
//     come in time);
//  7. metrics of what was written.
//
// A request with no samples, histograms or exemplars is admitted without
// writing anything.
func (e *Edge) admit(ctx context.Context, w *write) *refusal {
	total := w.samples + w.histograms
	if total == 0 && w.exemplars == 0 {
		return nil
	}

	// 1. Data limits.
	u, v := w.limits.CheckSeries(w.series, w.received)
	w.usage.Merge(u)
	e.tracker.Observe(w.tenant, w.limits, w.usage)
	if v != nil {
		return refuse(http.StatusBadRequest, v.Limit,
			"tenant %q: %v; change the series, or raise %s for the tenant (edge.%s or edge.runtime_file)", w.tenant, v, v.Limit, v.Limit)
	}

	// 2. Series budgets.
	if rf := e.checkSeriesBudget(w.tenant, w.series); rf != nil {
		return rf
	}

	// 3. Ingestion rate.
	if ok, retry := e.tracker.Allow(w.tenant, w.limits, total); !ok {
		rf := refuse(http.StatusTooManyRequests, "rate_limited",
			"tenant %q is over its ingestion_rate of %g samples/s (burst %g); retry in %ds", w.tenant, w.limits.IngestionRate, w.limits.Burst(), retrySeconds(retry))
		rf.retryAfter = retry
		return rf
	}

	// 4. Topics.
	if err := e.topics.EnsureTenant(ctx, w.tenant); err != nil {
		e.log.Warn("cannot create tenant topics", "tenant", w.tenant, "err", err)
		return refuse(http.StatusServiceUnavailable, "kafka_unavailable", "Kafka is not available: %v", err)
	}

	// 5. Records.
	var encoded []record.Encoded
	var err error
	if w.hashes != nil {
		encoded, err = w.builder.BuildHashed(w.tenant, w.series, w.hashes, e.cfg.Kafka.Partitions, e.cfg.Kafka.MaxRecordBytes)
	} else {
		encoded, err = w.builder.Build(w.tenant, w.series, e.cfg.Kafka.Partitions, e.cfg.Kafka.MaxRecordBytes)
	}
	if err != nil {
		var tooLarge *record.SeriesTooLargeError
		if errors.As(err, &tooLarge) {
			return refuse(http.StatusBadRequest, "series_too_large", "%v", err)
		}
		return refuse(http.StatusInternalServerError, "internal", "encoding records: %v", err)
	}

	// 6. Produce.
	if err := e.produce(ctx, w.tenant, e.newRecords(w.tenant, w.source, w.received, encoded)); err != nil {
		why := "Kafka refused the write"
		switch produceFailureReason(err) {
		case "timeout":
			why = "Kafka did not acknowledge the write in time"
		case "buffer_full":
			why = "Kafka is not taking writes as fast as they come (the edge's kafka.producer_max_buffered_bytes is full)"
		}
		return refuse(http.StatusServiceUnavailable, "kafka_unavailable",
			"%s, nothing of this request is acknowledged; retry: %v", why, err)
	}

	// 7. Metrics.
	e.metrics.samplesWritten.WithLabelValues(w.tenant, w.source).Add(float64(total))
	e.metrics.exemplarsWritten.WithLabelValues(w.tenant).Add(float64(w.exemplars))
	return nil
}

// refusal is a request the edge answers with an error status.
type refusal struct {
	status int
	reason string // the reason label of the refusal metrics
	msg    string
	// retryAfter is the wait to ask for with 429 and 503; 0 asks for a
	// second.
	retryAfter time.Duration
}

func (r *refusal) Error() string { return r.msg }

func refuse(status int, reason, format string, args ...any) *refusal {
	return &refusal{status: status, reason: reason, msg: fmt.Sprintf(format, args...)}
}

// retrySeconds rounds a wait up to whole seconds, as Retry-After needs.
func retrySeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// countRefusal counts a refused request and its samples, and logs it.
func (e *Edge) countRefusal(ten string, samples int, rf *refusal) {
	e.metrics.requestsRefused.WithLabelValues(ten, rf.reason).Inc()
	if samples > 0 {
		e.metrics.samplesRefused.WithLabelValues(ten, rf.reason).Add(float64(samples))
	}
	if rf.status < 500 {
		e.log.Debug("write refused", "tenant", ten, "status", rf.status, "reason", rf.reason, "err", rf.msg)
		return
	}
	// An overloaded edge refuses thousands of writes a second: one line
	// per tenant and reason every few seconds says why, the metrics count
	// them all.
	if ok, left := e.refusalLog.Admit(ten + "\xff" + rf.reason); ok {
		e.log.Warn("write refused", "tenant", ten, "status", rf.status, "reason", rf.reason, "err", rf.msg, "similar_refusals_not_logged", left)
	}
}

// setRetryAfter asks the sender of a 429 or 503 to come back later.
func setRetryAfter(h http.Header, rf *refusal) {
	if rf.status == http.StatusServiceUnavailable || rf.status == http.StatusTooManyRequests {
		h.Set("Retry-After", fmt.Sprint(retrySeconds(rf.retryAfter)))
	}
}
