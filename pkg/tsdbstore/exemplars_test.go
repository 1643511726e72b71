package tsdbstore

import (
	"slices"
	"testing"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

type staticExemplars []exemplar.QueryResult

func (s staticExemplars) Select(int64, int64, ...[]*labels.Matcher) ([]exemplar.QueryResult, error) {
	return s, nil
}

func TestMergeExemplarQueriers(t *testing.T) {
	a, b := labels.FromStrings("s", "a"), labels.FromStrings("s", "b")
	ex := func(ts int64, v float64) exemplar.Exemplar {
		return exemplar.Exemplar{Labels: labels.FromStrings("trace_id", "t"), Value: v, Ts: ts, HasTs: true}
	}
	m := MergeExemplarQueriers([]storage.ExemplarQuerier{
		staticExemplars{{SeriesLabels: b, Exemplars: []exemplar.Exemplar{ex(3, 3)}}, {SeriesLabels: a, Exemplars: []exemplar.Exemplar{ex(5, 5), ex(1, 1)}}},
		staticExemplars{{SeriesLabels: a, Exemplars: []exemplar.Exemplar{ex(2, 2), ex(5, 5)}}},
	})
	got, err := m.Select(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []exemplar.QueryResult{
		{SeriesLabels: a, Exemplars: []exemplar.Exemplar{ex(1, 1), ex(2, 2), ex(5, 5)}},
		{SeriesLabels: b, Exemplars: []exemplar.Exemplar{ex(3, 3)}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if !labels.Equal(got[i].SeriesLabels, want[i].SeriesLabels) || !slices.EqualFunc(got[i].Exemplars, want[i].Exemplars, exemplar.Exemplar.Equals) {
			t.Errorf("result %d: got %v, want %v", i, got[i], want[i])
		}
	}
}
