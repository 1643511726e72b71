package rollup

import (
	"math"
	"strings"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/prometheus/prometheus/model/histogram"

	"github.com/weir-metrics/weir/pkg/prw"
)

// floatKind tells how float samples of a series are aggregated: counters
// (known from metadata, or from the _total, _count, _sum and _bucket
// suffixes when the metadata says nothing) get an increase, everything
// else is a gauge and gets a quantile sketch.
func floatKind(metric string, t prw.MetricType) string {
	switch t {
	case prw.MetricTypeCounter:
		return KindCounter
	case prw.MetricTypeHistogram, prw.MetricTypeSummary:
		// Classic histograms and summaries: _count, _sum and _bucket are
		// counters; a summary's quantile series are gauges.
		if hasCounterSuffix(metric) && !strings.HasSuffix(metric, "_total") {
			return KindCounter
		}
		return KindGauge
	case prw.MetricTypeUnknown:
		if hasCounterSuffix(metric) {
			return KindCounter
		}
	}
	return KindGauge
}

func hasCounterSuffix(metric string) bool {
	for _, s := range []string{"_total", "_count", "_sum", "_bucket"} {
		if strings.HasSuffix(metric, s) {
			return true
		}
	}
	return false
}

// histogramKind tells whether native histograms are counters (merged as
// their increase) or gauges (merged as their sum).
func histogramKind(h *histogram.FloatHistogram, t prw.MetricType) string {
	if h.CounterResetHint == histogram.GaugeType || t == prw.MetricTypeGaugeHistogram {
		return KindGaugeHistogram
	}
	return KindHistogram
}

// sample is one accepted sample with its record's position.
type sample struct {
	ts     int64
	v      float64
	h      *histogram.FloatHistogram // nil for a float sample
	offset int64
	mark   int64 // watermark when its record was processed
}

// memberState is what a coarsest window remembers of one series: its last
// accepted sample, to judge duplicates and to compute counter steps.
type memberState struct {
	lastTs   int64
	hasFloat bool
	lastVal  float64
	lastHist *histogram.FloatHistogram
	// offset and mark locate the record of the last float or histogram
	// sample: a step taken from it makes a window depend on that record.
	floatOffset, floatMark int64
	histOffset, histMark   int64
}

// aggregate accumulates one window.
type aggregate struct {
	kind string

	count           int64
	sum, min, max   float64
	first, last     float64
	firstTs, lastTs int64
	increase        float64
	resets          int64
	sketch          *ddsketch.DDSketch

	histCount int64
	hist      *histogram.FloatHistogram
	// histInvalid counts histogram samples that could not be merged
	// (custom bucket bounds that changed); they are reported as discarded.
	histInvalid int64
}

// addFloat adds a float sample; prev is the series' previous sample when
// known (nil otherwise). It reports whether a step from prev was taken.
func (a *aggregate) addFloat(s *sample, prev *memberState, newSketch func() *ddsketch.DDSketch) bool {
	v := s.v
	if a.count == 0 {
		a.sum, a.min, a.max = v, v, v
		a.first, a.firstTs = v, s.ts
		a.last, a.lastTs = v, s.ts
	} else {
		a.sum += v
		a.min = math.Min(a.min, v)
		a.max = math.Max(a.max, v)
		if s.ts < a.firstTs {
			a.first, a.firstTs = v, s.ts
		}
		if s.ts >= a.lastTs {
			a.last, a.lastTs = v, s.ts
		}
	}
	a.count++
	switch a.kind {
	case KindGauge:
		if a.sketch == nil {
			a.sketch = newSketch()
		}
		// Finite values only reach here; they are all indexable.
		_ = a.sketch.Add(v)
	case KindCounter:
		if prev != nil && prev.hasFloat {
			if v >= prev.lastVal {
				a.increase += v - prev.lastVal
			} else {
				a.increase += v
				a.resets++
			}
			return true
		}
	}
	return false
}

// addHistogram adds a native histogram sample; it reports whether a step
// from prev was taken, and false for ok when the sample could not be
// merged.
func (a *aggregate) addHistogram(s *sample, prev *memberState) (stepped, ok bool) {
	var delta *histogram.FloatHistogram
	switch {
	case a.kind == KindGaugeHistogram:
		delta = s.h
	case prev != nil && prev.lastHist != nil:
		stepped = true
		if s.h.DetectReset(prev.lastHist) {
			delta = s.h
			a.resets++
		} else {
			d, _, _, err := s.h.Copy().Sub(prev.lastHist)
			if err != nil {
				// Bounds changed without a reset: count it from zero.
				delta = s.h
				a.resets++
			} else {
				delta = d
			}
		}
	}
	a.histCount++
	if delta == nil {
		// The first sample of a counter histogram with no known
		// predecessor adds no increase, but the window still has one.
		if a.hist == nil {
			a.hist = &histogram.FloatHistogram{Schema: s.h.Schema, ZeroThreshold: s.h.ZeroThreshold, CustomValues: s.h.CustomValues}
		}
		return stepped, true
	}
	if a.hist == nil {
		a.hist = delta.Copy()
		return stepped, true
	}
	if _, _, _, err := a.hist.Add(delta); err != nil {
		a.histCount--
		a.histInvalid++
		return stepped, false
	}
	return stepped, true
}
