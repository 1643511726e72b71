package tsdbstore

import (
	"slices"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// MergeExemplarQueriers presents the exemplars of a tenant's shards as
// one: results of the same series are combined, their exemplars ordered by
// timestamp and deduplicated; series are ordered by labels.
func MergeExemplarQueriers(qs []storage.ExemplarQuerier) storage.ExemplarQuerier {
	if len(qs) == 1 {
		return qs[0]
	}
	return mergeExemplarQuerier(qs)
}

type mergeExemplarQuerier []storage.ExemplarQuerier

func (m mergeExemplarQuerier) Select(start, end int64, matchers ...[]*labels.Matcher) ([]exemplar.QueryResult, error) {
	var all []exemplar.QueryResult
	for _, q := range m {
		res, err := q.Select(start, end, matchers...)
		if err != nil {
			return nil, err
		}
		all = append(all, res...)
	}
	slices.SortStableFunc(all, func(a, b exemplar.QueryResult) int {
		return labels.Compare(a.SeriesLabels, b.SeriesLabels)
	})
	out := []exemplar.QueryResult{}
	for _, r := range all {
		if n := len(out); n > 0 && labels.Equal(out[n-1].SeriesLabels, r.SeriesLabels) {
			out[n-1].Exemplars = append(out[n-1].Exemplars, r.Exemplars...)
			continue
		}
		out = append(out, exemplar.QueryResult{SeriesLabels: r.SeriesLabels, Exemplars: slices.Clone(r.Exemplars)})
	}
	for i := range out {
		es := out[i].Exemplars
		slices.SortFunc(es, exemplar.Compare)
		out[i].Exemplars = slices.CompactFunc(es, func(a, b exemplar.Exemplar) bool { return a.Equals(b) })
	}
	return out, nil
}
