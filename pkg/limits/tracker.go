package limits

import (
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"time"
)

// Window is how long usage peaks and the ingestion rate are measured over:
// reported values cover the last one to two windows.
const Window = 15 * time.Second

// idleExpiry is how long a tenant that sends nothing is remembered; after
// it, its bucket is full again anyway and its usage series disappear.
const idleExpiry = 10 * time.Minute

// Tracker holds each tenant's ingestion token bucket and its recent usage
// of every limit. One Tracker serves one edge process; the ingestion rate
// is therefore enforced per edge. Safe for concurrent use.
type Tracker struct {
	mu      sync.Mutex
	tenants map[string]*tenantState
	now     func() time.Time
}

type tenantState struct {
	tokens  float64
	refill  time.Time
	streak  int // consecutive rate-limited requests
	limits  *Limits
	seen    time.Time
	window  int64 // index of the current usage window
	peak    [2]Usage
	samples [2]float64 // samples that reached the rate check, per window
	limited [2]int     // requests refused for the rate, per window
}

// NewTracker returns an empty tracker on the wall clock.
func NewTracker() *Tracker {
	return &Tracker{tenants: map[string]*tenantState{}, now: time.Now}
}

func (t *Tracker) state(tenant string, l *Limits, now time.Time) *tenantState {
	st := t.tenants[tenant]
	if st == nil {
		st = &tenantState{tokens: l.Burst(), refill: now}
		t.tenants[tenant] = st
	}
	st.limits = l
	st.seen = now
	if w := now.UnixNano() / int64(Window); w != st.window {
		if w == st.window+1 {
			st.peak[0], st.samples[0], st.limited[0] = st.peak[1], st.samples[1], st.limited[1]
		} else {
			st.peak[0], st.samples[0], st.limited[0] = Usage{}, 0, 0
		}
		st.peak[1], st.samples[1], st.limited[1] = Usage{}, 0, 0
		st.window = w
	}
	return st
}

// Allow takes n samples from tenant's token bucket, refilled at
// IngestionRate up to Burst. A request is admitted when the bucket holds
// its samples; one larger than the burst is admitted when the bucket is
// full and leaves it in debt, so no request size is refused forever and
// the long-run rate still holds. When refused, retryAfter is how long to
// wait: the time the bucket needs to refill, growing exponentially with
// consecutive refusals (up to a minute) and jittered by up to half, so
// that refused senders do not all come back at once.
func (t *Tracker) Allow(tenant string, l *Limits, n int) (ok bool, retryAfter time.Duration) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.state(tenant, l, now)
	st.samples[1] += float64(n)
	if l.IngestionRate <= 0 {
		// Unlimited: should a rate be set later, the bucket starts full.
		st.tokens, st.streak = math.Inf(1), 0
		return true, 0
	}
	burst := l.Burst()
	st.tokens = math.Min(burst, st.tokens+now.Sub(st.refill).Seconds()*l.IngestionRate)
	st.refill = now
	need := math.Min(float64(n), burst)
	if st.tokens >= need {
		st.tokens -= float64(n)
		st.streak = 0
		return true, 0
	}
	st.streak++
	st.limited[1]++
	refill := time.Duration((need - st.tokens) / l.IngestionRate * float64(time.Second))
	backoff := time.Second << min(st.streak-1, 6)
	wait := min(max(refill, backoff), time.Minute)
	wait += time.Duration(rand.Int64N(int64(wait)/2 + 1))
	return false, wait
}

// Observe records the usage of one request.
func (t *Tracker) Observe(tenant string, l *Limits, u Usage) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.state(tenant, l, now)
	st.peak[1].Merge(u)
}

// UsageRatio is how close one tenant came to one limit: the peak over the
// last one to two Windows divided by the limit; for the ingestion rate, the
// samples per second over the last Window divided by the rate. 1 or more
// means requests were refused for it.
type UsageRatio struct {
	Tenant, Limit string
	Ratio         float64
}

// Usage reports the usage ratio of every limit in force (non-zero) of
// every tenant seen recently, sorted, and forgets tenants idle for long.
func (t *Tracker) Usage() []UsageRatio {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []UsageRatio
	for id, st := range t.tenants {
		if now.Sub(st.seen) > idleExpiry {
			delete(t.tenants, id)
			continue
		}
		l := st.limits
		// Roll the windows forward without counting a request.
		seen := st.seen
		st = t.state(id, l, now)
		st.seen = seen
		var u Usage
		u.Merge(st.peak[0])
		u.Merge(st.peak[1])
		// Samples per second over the last Window, sliding: the current
		// window plus the part of the previous one still inside it. At
		// least the limit when requests were refused for it.
		elapsed := float64(now.UnixNano()%int64(Window)) / float64(Window)
		rate := (st.samples[0]*(1-elapsed) + st.samples[1]) / Window.Seconds()
		if st.limited[0]+st.limited[1] > 0 {
			rate = max(rate, l.IngestionRate)
		}
		add := func(limit string, used, max float64) {
			if max > 0 {
				out = append(out, UsageRatio{Tenant: id, Limit: limit, Ratio: used / max})
			}
		}
		add(IngestionRate, rate, l.IngestionRate)
		add(MaxRequestBytes, float64(u.RequestBytes), float64(l.MaxRequestBytes))
		add(MaxDecompressedBytes, float64(u.DecompressedBytes), float64(l.MaxDecompressedBytes))
		add(MaxLabelsPerSeries, float64(u.Labels), float64(l.MaxLabelsPerSeries))
		add(MaxLabelNameLength, float64(u.LabelNameLength), float64(l.MaxLabelNameLength))
		add(MaxLabelValueLength, float64(u.LabelValueLength), float64(l.MaxLabelValueLength))
		add(MaxFutureSkew, u.FutureSkew.Seconds(), l.MaxFutureSkew.Seconds())
		add(MaxExemplarsPerSeries, float64(u.Exemplars), float64(l.MaxExemplarsPerSeries))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Tenant != out[j].Tenant {
			return out[i].Tenant < out[j].Tenant
		}
		return out[i].Limit < out[j].Limit
	})
	return out
}
