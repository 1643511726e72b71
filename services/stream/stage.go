package stream

import (
	"time"

	"github.com/weir-metrics/weir/pkg/cardinality"
	"github.com/weir-metrics/weir/pkg/pipeline"
	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
)

// Discard and modification reasons counted by the stage, besides the
// pipeline's drop reasons and the budget's refusal reasons.
const (
	reasonUndecodable     = "undecodable"
	reasonSeriesTooLarge  = "series_too_large"
	reasonLabelsLimited   = "labels_limited"
	reasonValuesTruncated = "value_truncated"
)

// stage runs a tenant's pipeline over the series of raw records: decode
// (pkg/record, pkg/prw), relabel and guard rails (pkg/pipeline, cached per
// series), series budget (pkg/cardinality), re-encode (record.Batch).
// It is used by one goroutine.
//
// A record whose series all pass unchanged into the partition they came
// from is passed through as it is. The admitted series of the other
// records are encoded as they come into records per tenant and source
// that span many raw records, completed by flush: one raw record spreads
// its series over every partition of the series topic, and encoding each
// record on its own made records of a few dozen series, each with its own
// symbol table, which cost more than all the other work of the stage
// together.
type stage struct {
	proc       *pipeline.Processor
	track      *cardinality.Tracker
	remote     cardinality.Remote
	partitions int // of the series topics
	maxRecord  int
	req        prw.Request
	results    []admitted // of the record being run
	counts     *pollCounts
	// emit receives the records flush completed, with the meta and the
	// timestamp to give them.
	emit func(meta record.Meta, timestamp time.Time, records []record.Encoded)

	batches []*outBatch // open, one per tenant and source
	spare   []*outBatch // flushed, for reuse
	pending int         // series in open batches
}

// outBatch is the records being built for one tenant and source.
type outBatch struct {
	meta      record.Meta // ReceivedAt: the earliest of its raw records
	timestamp time.Time   // the earliest of its raw records
	records   *record.Batch
}

// maxPendingSeries bounds the series encoded into open batches before
// flush completes their records; enough for records of a few thousand
// series per partition.
const maxPendingSeries = 1 << 11

// maxSpareBatches bounds the flushed batches kept for reuse.
const maxSpareBatches = 16

// run transforms one raw record of partition part (whose ledger is
// loaded), with Kafka timestamp ts, and reports whether the record passes
// through as it is. The admitted series of other records go into open
// batches; call flush when full reports so, and at the end of the poll.
// Their strings alias value, which must stay unchanged until then. The
// caller holds the tracker lock.
func (s *stage) run(set *pipeline.Set, meta record.Meta, part *cardinality.Partition, rawPartition int32, value []byte, ts time.Time) (passThrough bool) {
	tenant := meta.Tenant
	tc := s.counts.tenant(tenant)
	if err := record.Decode(meta, value, &s.req); err != nil {
		tc.discardedRecords[reasonUndecodable]++
		return false
	}
	pl := set.For(tenant)
	// A first pass decides; series are encoded in a second one only when
	// the record cannot pass through as it is.
	s.results = s.results[:0]
	pass := true
	for i := range s.req.Series {
		ts := &s.req.Series[i]
		n := len(ts.Samples) + len(ts.Histograms)
		res := s.proc.Process(set, tenant, ts.Labels)
		if res.Drop != "" {
			part.ObserveDropped(res.RawHash)
			tc.discarded[string(res.Drop)] += n
			pass = false
			continue
		}
		if v := part.Admit(&res, pl.Budget, s.remote); v != cardinality.Admitted {
			tc.discarded[v.Reason()] += n
			pass = false
			continue
		}
		if res.LabelsLimited {
			tc.modified[reasonLabelsLimited] += n
		}
		if res.ValuesTruncated {
			tc.modified[reasonValuesTruncated] += n
		}
		tc.admitted += n
		if res.Changed {
			ts.Labels = res.Labels
			pass = false
		} else if pass && int32(res.RawHash%uint64(s.partitions)) != rawPartition {
			pass = false // the series topic has another partition count
		}
		s.results = append(s.results, admitted{series: int32(i), hash: res.OutHash})
	}
	if pass {
		return len(s.results) > 0
	}
	if len(s.results) == 0 {
		return false
	}
	b := s.batch(meta, ts)
	for _, a := range s.results {
		ts := &s.req.Series[a.series]
		if err := b.records.Add(ts, a.hash); err != nil {
			// Relabeling made a series too large for one record; it
			// cannot be split, so it is counted and left out.
			n := len(ts.Samples) + len(ts.Histograms)
			tc.discarded[reasonSeriesTooLarge] += n
			tc.admitted -= n
		}
	}
	s.pending += len(s.results)
	return false
}

// admitted is a series of the record being run that the stage admitted,
// with its output SeriesHash.
type admitted struct {
	series int32
	hash   uint64
}

// holds reports whether an open batch holds series of tenant: from
// another source than source when other is set, of any source otherwise.
// A series keeps its order only if its samples leave in the order they
// came: before a record of the tenant passes through as it is, or goes
// into the batch of another source, the open batches must be flushed.
func (s *stage) holds(tenant, source string, other bool) bool {
	for _, b := range s.batches {
		if b.meta.Tenant == tenant && (!other || b.meta.Source != source) {
			return true
		}
	}
	return false
}

// full reports that enough series wait to flush them now.
func (s *stage) full() bool { return s.pending >= maxPendingSeries }

// batch returns the open batch of meta's tenant and source, noting a raw
// record of it with timestamp ts.
func (s *stage) batch(meta record.Meta, ts time.Time) *outBatch {
	var b *outBatch
	for _, o := range s.batches {
		if o.meta.Tenant == meta.Tenant && o.meta.Source == meta.Source {
			b = o
			break
		}
	}
	if b == nil {
		if n := len(s.spare); n > 0 {
			b, s.spare = s.spare[n-1], s.spare[:n-1]
		} else {
			b = &outBatch{records: record.NewBatch(s.partitions, s.maxRecord)}
		}
		b.meta = record.Meta{Version: record.Version1, Tenant: meta.Tenant, Source: meta.Source, ReceivedAt: meta.ReceivedAt}
		b.timestamp = ts
		s.batches = append(s.batches, b)
	}
	if meta.ReceivedAt.Before(b.meta.ReceivedAt) {
		b.meta.ReceivedAt = meta.ReceivedAt
	}
	if ts.Before(b.timestamp) {
		b.timestamp = ts
	}
	return b
}

// flush completes the records of the open batches and hands them to
// emit. It needs no tracker lock.
func (s *stage) flush() {
	for _, b := range s.batches {
		if recs := b.records.Flush(); len(recs) > 0 {
			s.emit(b.meta, b.timestamp, recs)
		}
	}
	// Keep a few batches (each holds an encoder per partition) for the
	// next poll; a poll that touched many tenants must not leave them all.
	s.spare = append(s.spare, s.batches...)
	if len(s.spare) > maxSpareBatches {
		clear(s.spare[maxSpareBatches:])
		s.spare = s.spare[:maxSpareBatches]
	}
	clear(s.batches)
	s.batches = s.batches[:0]
	s.pending = 0
	// The records are complete, so the labels of the processor's results
	// may be overwritten (see Processor.BeginBatch).
	s.proc.BeginBatch()
}

// pollCounts accumulates what one poll did, to be added to the metrics
// only when its transaction commits (an aborted poll is processed again).
type pollCounts struct {
	tenants map[string]*tenantCounts
}

type tenantCounts struct {
	admitted         int
	discarded        map[string]int
	modified         map[string]int
	discardedRecords map[string]int
	recordsProduced  int
}

func (c *pollCounts) tenant(t string) *tenantCounts {
	if c.tenants == nil {
		c.tenants = map[string]*tenantCounts{}
	}
	tc := c.tenants[t]
	if tc == nil {
		tc = &tenantCounts{discarded: map[string]int{}, modified: map[string]int{}, discardedRecords: map[string]int{}}
		c.tenants[t] = tc
	}
	return tc
}

func (c *pollCounts) reset() { clear(c.tenants) }
