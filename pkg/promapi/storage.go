package promapi

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/weir-metrics/weir/pkg/tenant"
)

// tenantQueryable is the storage Prometheus' API and engine read from. They
// open queriers without a context (Querier(mint, maxt)) and only pass one to
// Select, LabelValues and LabelNames, so the tenant is resolved there, from
// the request context that tenantMiddleware filled.
type tenantQueryable struct{ src Source }

var (
	_ storage.SampleAndChunkQueryable = (*tenantQueryable)(nil)
	_ storage.ExemplarQueryable       = (*tenantQueryable)(nil)
)

func (q *tenantQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	return &tenantQuerier{src: q.src, mint: mint, maxt: maxt}, nil
}

// errNoChunks answers chunk queries, which only remote read makes and which
// is not exposed.
var errNoChunks = errors.New("promapi: chunk queries are not supported")

func (*tenantQueryable) ChunkQuerier(int64, int64) (storage.ChunkQuerier, error) {
	return nil, errNoChunks
}

func (q *tenantQueryable) ExemplarQuerier(ctx context.Context) (storage.ExemplarQuerier, error) {
	id, err := tenant.FromContext(ctx)
	if err != nil {
		return nil, err
	}
	if es, ok := q.src.(ExemplarSource); ok {
		return es.ExemplarQuerier(ctx, id)
	}
	return noExemplars{}, nil
}

type noExemplars struct{}

func (noExemplars) Select(int64, int64, ...[]*labels.Matcher) ([]exemplar.QueryResult, error) {
	return []exemplar.QueryResult{}, nil
}

// tenantQuerier opens the Source's querier for the tenant of the first call
// that carries one, and refuses calls for any other tenant, so that it can
// never hand one tenant's data to another.
type tenantQuerier struct {
	src        Source
	mint, maxt int64

	mu     sync.Mutex
	tenant string
	q      storage.Querier
	closed bool
}

func (q *tenantQuerier) open(ctx context.Context) (storage.Querier, error) {
	id, err := tenant.FromContext(ctx)
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return nil, errors.New("promapi: querier used after Close")
	case q.q != nil && q.tenant != id:
		return nil, fmt.Errorf("promapi: querier of tenant %q used for tenant %q", q.tenant, id)
	case q.q != nil:
		return q.q, nil
	}
	inner, err := q.src.Querier(ctx, id, q.mint, q.maxt)
	if err != nil {
		return nil, err
	}
	q.tenant, q.q = id, inner
	return inner, nil
}

func (q *tenantQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, matchers ...*labels.Matcher) storage.SeriesSet {
	inner, err := q.open(ctx)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	return inner.Select(ctx, sortSeries, hints, matchers...)
}

func (q *tenantQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	inner, err := q.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	return inner.LabelValues(ctx, name, hints, matchers...)
}

func (q *tenantQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	inner, err := q.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	return inner.LabelNames(ctx, hints, matchers...)
}

func (q *tenantQuerier) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	if q.q == nil {
		return nil
	}
	inner := q.q
	q.q = nil
	return inner.Close()
}
