package limits

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/weir-metrics/weir/pkg/prw"
)

// Violation is data that breaks a limit. Its message names the limit, its
// value and an offending series, for a 400 answer.
type Violation struct {
	// Limit is the setting, e.g. max_labels_per_series.
	Limit string
	// Value is the limit in force, as the runtime file would spell it.
	Value string
	// Found is what the series has, e.g. "35 labels".
	Found string
	// Series is the offending series as a selector.
	Series string
}

func (v *Violation) Error() string {
	return fmt.Sprintf("series %s has %s, more than %s (%s)", v.Series, v.Found, v.Limit, v.Value)
}

// Usage is the largest value a request reached for each data limit; the
// Tracker keeps the peaks so tenants can see how close they come.
type Usage struct {
	Labels, LabelNameLength, LabelValueLength, Exemplars int
	// FutureSkew is how far the newest sample is ahead of the clock (0
	// when none is).
	FutureSkew time.Duration
	// RequestBytes and DecompressedBytes are the body sizes.
	RequestBytes, DecompressedBytes int64
}

// Merge keeps the larger of each value.
func (u *Usage) Merge(o Usage) {
	u.Labels = max(u.Labels, o.Labels)
	u.LabelNameLength = max(u.LabelNameLength, o.LabelNameLength)
	u.LabelValueLength = max(u.LabelValueLength, o.LabelValueLength)
	u.Exemplars = max(u.Exemplars, o.Exemplars)
	u.FutureSkew = max(u.FutureSkew, o.FutureSkew)
	u.RequestBytes = max(u.RequestBytes, o.RequestBytes)
	u.DecompressedBytes = max(u.DecompressedBytes, o.DecompressedBytes)
}

// CheckSeries checks series (normalised) against l's data limits at the
// time now, and returns the peaks it saw. It stops at the first series
// that breaks a limit.
func (l *Limits) CheckSeries(series []prw.TimeSeries, now time.Time) (Usage, *Violation) {
	var u Usage
	nowMs := now.UnixMilli()
	for i := range series {
		ts := &series[i]
		if n := len(ts.Labels); n > u.Labels {
			u.Labels = n
			if l.MaxLabelsPerSeries > 0 && n > l.MaxLabelsPerSeries {
				return u, l.violation(MaxLabelsPerSeries, strconv.Itoa(l.MaxLabelsPerSeries), fmt.Sprintf("%d labels", n), ts)
			}
		}
		for _, lb := range ts.Labels {
			if n := len(lb.Name); n > u.LabelNameLength {
				u.LabelNameLength = n
				if l.MaxLabelNameLength > 0 && n > l.MaxLabelNameLength {
					return u, l.violation(MaxLabelNameLength, strconv.Itoa(l.MaxLabelNameLength),
						fmt.Sprintf("a label name of %d bytes (%.40q…)", n, lb.Name), ts)
				}
			}
			if n := len(lb.Value); n > u.LabelValueLength {
				u.LabelValueLength = n
				if l.MaxLabelValueLength > 0 && n > l.MaxLabelValueLength {
					return u, l.violation(MaxLabelValueLength, strconv.Itoa(l.MaxLabelValueLength),
						fmt.Sprintf("a value of %d bytes for label %q", n, lb.Name), ts)
				}
			}
		}
		if n := len(ts.Exemplars); n > u.Exemplars {
			u.Exemplars = n
			if l.MaxExemplarsPerSeries > 0 && n > l.MaxExemplarsPerSeries {
				return u, l.violation(MaxExemplarsPerSeries, strconv.Itoa(l.MaxExemplarsPerSeries), fmt.Sprintf("%d exemplars", n), ts)
			}
		}
		newest := int64(0)
		for _, s := range ts.Samples {
			newest = max(newest, s.Timestamp)
		}
		for _, h := range ts.Histograms {
			newest = max(newest, h.Timestamp)
		}
		if skew := time.Duration(newest-nowMs) * time.Millisecond; skew > u.FutureSkew {
			u.FutureSkew = skew
			if l.MaxFutureSkew > 0 && skew > l.MaxFutureSkew {
				return u, l.violation(MaxFutureSkew, l.MaxFutureSkew.String(),
					fmt.Sprintf("a sample at %s, %s ahead of the edge's clock", time.UnixMilli(newest).UTC().Format(time.RFC3339Nano), skew.Round(time.Millisecond)), ts)
			}
		}
	}
	return u, nil
}

func (l *Limits) violation(limit, value, found string, ts *prw.TimeSeries) *Violation {
	return &Violation{Limit: limit, Value: value, Found: found, Series: selector(ts.Labels)}
}

// maxSelector bounds the series in a message; the offending label may be
// the long one.
const maxSelector = 512

func selector(ls []prw.Label) string {
	var b strings.Builder
	name := ""
	for _, l := range ls {
		if l.Name == "__name__" {
			name = l.Value
		}
	}
	if len(name) > 128 {
		name = name[:128] + "…"
	}
	b.WriteString(name)
	b.WriteByte('{')
	n := 0
	for _, l := range ls {
		if l.Name == "__name__" {
			continue
		}
		if b.Len() > maxSelector {
			b.WriteString(", …")
			break
		}
		if n > 0 {
			b.WriteString(", ")
		}
		n++
		k, v := l.Name, l.Value
		if len(k) > 64 {
			k = k[:64] + "…"
		}
		if len(v) > 64 {
			v = v[:64] + "…"
		}
		fmt.Fprintf(&b, "%s=%q", k, v)
	}
	b.WriteByte('}')
	return b.String()
}
