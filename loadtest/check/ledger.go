// Package check proves that a target kept what it acknowledged. Senders
// record in a Ledger, per batch, which series every request carried and
// whether it was acknowledged; Verify then asks the target's Prometheus
// query API how many samples (and what sum of values) each series holds and
// compares, series by series.
package check

import (
	"github.com/weir-metrics/weir/loadtest/gen"
)

// Record is what the harness wrote to one series.
type Record struct {
	ID gen.SeriesID
	// First and Last are the rounds of the batch (1-based, inclusive) in
	// which the series was written; Last is 0 while it still is.
	First, Last uint32
	// Acked counts samples answered with 2xx.
	Acked uint32
	// Extra counts attempts whose outcome is unknown (a timeout, a 5xx, a
	// 429, a broken connection), including those retried until a 2xx: the
	// target may or may not have stored them, so the series may hold up to
	// Acked+Extra samples without anything being wrong.
	Extra uint32
	// Sum is the sum of the acknowledged values.
	Sum float64
}

// Round is the outcome of one request of a batch.
type Round struct {
	TS    int64 // sample timestamp, Unix ms
	Acked bool
	// Extra is as in Record: attempts with an unknown outcome.
	Extra uint16
}

// BatchLedger records one batch. Only the batch's sender writes it.
type BatchLedger struct {
	Batch   int
	Records []Record
	Rounds  []Round
	cur     []int32
	started bool
}

// NewBatchLedger starts the ledger of batch b.
func NewBatchLedger(b *gen.Batch) *BatchLedger {
	return &BatchLedger{Batch: b.Index(), cur: make([]int32, b.Len())}
}

// Observe notes the series identities of the body b just generated; call
// it after every gen.Batch.Next.
func (l *BatchLedger) Observe(b *gen.Batch) {
	if !b.IdentityChanged() {
		return
	}
	round := b.Round()
	for i, id := range b.IDs() {
		if l.started {
			r := &l.Records[l.cur[i]]
			if r.ID == id {
				continue
			}
			r.Last = round - 1
		}
		l.cur[i] = int32(len(l.Records))
		l.Records = append(l.Records, Record{ID: id, First: round})
	}
	l.started = true
	b.ResetChanged()
}

// Outcome records what happened to the body last observed: whether it was
// acknowledged, and how many attempts had an unknown outcome.
func (l *BatchLedger) Outcome(b *gen.Batch, ts int64, acked bool, extra int) {
	l.Rounds = append(l.Rounds, Round{TS: ts, Acked: acked, Extra: uint16(min(extra, 1<<16-1))})
	vals := b.Values()
	for i, ri := range l.cur {
		r := &l.Records[ri]
		r.Extra += uint32(extra)
		if acked {
			r.Acked++
			r.Sum += vals[i]
		}
	}
}

// Totals sums the ledger: samples acknowledged, samples with an unknown
// outcome, and series with at least one acknowledged sample.
func (l *BatchLedger) Totals() (acked, extra, series uint64) {
	for i := range l.Records {
		acked += uint64(l.Records[i].Acked)
		extra += uint64(l.Records[i].Extra)
		if l.Records[i].Acked > 0 {
			series++
		}
	}
	return
}

// timestamps returns the rounds' timestamps of record r that were
// acknowledged and those with an unknown outcome.
func (l *BatchLedger) timestamps(r *Record) (acked, unknown []int64) {
	last := r.Last
	if last == 0 {
		last = uint32(len(l.Rounds))
	}
	for round := r.First; round <= last && int(round) <= len(l.Rounds); round++ {
		rd := l.Rounds[round-1]
		switch {
		case rd.Acked:
			acked = append(acked, rd.TS)
			if rd.Extra > 0 {
				unknown = append(unknown, rd.TS)
			}
		case rd.Extra > 0:
			unknown = append(unknown, rd.TS)
		}
	}
	return
}
