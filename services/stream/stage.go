package stream

import (
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

// stage runs a tenant's pipeline over the series of one raw record: decode
// (pkg/record, pkg/prw), relabel and guard rails (pkg/pipeline, cached per
// series), series budget (pkg/cardinality), re-encode (record.Builder).
// A later stage (rollups) takes the admitted series from here. It is used
// by one goroutine.
type stage struct {
	proc       *pipeline.Processor
	track      *cardinality.Tracker
	remote     cardinality.Remote
	partitions int // of the series topics
	maxRecord  int
	req        prw.Request
	out        []prw.TimeSeries
	builder    record.Builder
	counts     *pollCounts
	// built is set when builder encoded a batch since the processor's
	// last BeginBatch (see Processor.BeginBatch).
	built bool
}

// stageResult is what one raw record becomes.
type stageResult struct {
	// passThrough: every series passed unchanged into the partition it
	// came from, so the raw value is the output as is (the common case
	// for series already seen, and the cheapest).
	passThrough bool
	records     []record.Encoded
}

// run transforms one raw record of partition part (whose ledger is
// loaded). The caller holds the tracker lock.
func (s *stage) run(set *pipeline.Set, meta record.Meta, part *cardinality.Partition, rawPartition int32, value []byte) stageResult {
	tenant := meta.Tenant
	tc := s.counts.tenant(tenant)
	if err := record.Decode(meta, value, &s.req); err != nil {
		tc.discardedRecords[reasonUndecodable]++
		return stageResult{}
	}
	pl := set.For(tenant)
	if s.built {
		// The encoders were reset by the last Build: the labels of the
		// batch before it are free to be overwritten.
		s.proc.BeginBatch()
		s.built = false
	}
	s.out = s.out[:0]
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
		s.out = append(s.out, *ts)
	}
	if pass {
		return stageResult{passThrough: len(s.out) > 0}
	}
	if len(s.out) == 0 {
		return stageResult{}
	}
	// Relabeling may have made a series too large for one record; it
	// cannot be split, so it is counted and left out.
	kept := s.out[:0]
	for i := range s.out {
		if prw.SeriesSizeUpperBound(&s.out[i])+64 > s.maxRecord {
			n := len(s.out[i].Samples) + len(s.out[i].Histograms)
			tc.discarded[reasonSeriesTooLarge] += n
			tc.admitted -= n
			continue
		}
		kept = append(kept, s.out[i])
	}
	enc, err := s.builder.Build(tenant, kept, s.partitions, s.maxRecord)
	s.built = true
	if err != nil {
		// Build fails only for a series too large, excluded above.
		tc.discardedRecords[reasonSeriesTooLarge]++
		return stageResult{}
	}
	return stageResult{records: enc}
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
