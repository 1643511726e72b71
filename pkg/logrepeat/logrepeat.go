// Package logrepeat keeps a log readable when one thing fails thousands of
// times a second (a full disk, an overloaded edge refusing writes): one
// line of a kind goes through every interval, with how many were held
// back since, and the metrics count every occurrence.
package logrepeat

import (
	"sync"
	"time"
)

// maxKinds bounds the kinds remembered; beyond it they are forgotten at
// once, which at worst lets a few more lines through.
const maxKinds = 10000

// Limiter lets one line of each kind through every interval. It is safe
// for concurrent use.
type Limiter struct {
	every time.Duration
	// Now is the clock, time.Now unless a test sets it.
	Now func() time.Time

	mu    sync.Mutex
	kinds map[string]*kind
}

type kind struct {
	last time.Time
	held int
}

// New returns a Limiter letting one line of a kind through every every.
func New(every time.Duration) *Limiter {
	return &Limiter{every: every, Now: time.Now, kinds: map[string]*kind{}}
}

// Admit reports whether a line of kind may be logged now and, when it
// may, how many lines of its kind were held back since the last one.
func (l *Limiter) Admit(k string) (bool, int) {
	now := l.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.kinds[k]
	if r == nil {
		if len(l.kinds) >= maxKinds {
			clear(l.kinds)
		}
		r = &kind{}
		l.kinds[k] = r
	}
	if !r.last.IsZero() && now.Sub(r.last) < l.every {
		r.held++
		return false, 0
	}
	n := r.held
	r.last, r.held = now, 0
	return true, n
}
