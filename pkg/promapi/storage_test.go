package promapi

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/storage"

	"github.com/weir-metrics/weir/pkg/tenant"
)

// recordingSource answers every tenant with an empty querier and records
// which tenants it was asked for.
type recordingSource struct{ asked []string }

func (s *recordingSource) Querier(_ context.Context, id string, _, _ int64) (storage.Querier, error) {
	s.asked = append(s.asked, id)
	return storage.NoopQuerier(), nil
}

// TestQuerierStaysWithItsTenant checks the storage's side of isolation
// directly: no tenant in the context is an error, not a default, and a
// querier opened for one tenant refuses calls made for another.
func TestQuerierStaysWithItsTenant(t *testing.T) {
	src := &recordingSource{}
	q, err := (&tenantQueryable{src: src}).Querier(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := q.LabelNames(ctx, nil); err == nil {
		t.Error("LabelNames without a tenant succeeded")
	}
	if ss := q.Select(ctx, false, nil); ss.Next() || ss.Err() == nil {
		t.Error("Select without a tenant succeeded")
	}
	alpha, beta := tenant.WithID(ctx, "alpha"), tenant.WithID(ctx, "beta")
	if _, _, err := q.LabelNames(alpha, nil); err != nil {
		t.Fatal(err)
	}
	if ss := q.Select(beta, false, nil); ss.Err() == nil {
		t.Error("Select for beta on alpha's querier succeeded")
	}
	if _, _, err := q.LabelValues(beta, "job", nil); err == nil {
		t.Error("LabelValues for beta on alpha's querier succeeded")
	}
	if _, _, err := q.LabelValues(alpha, "job", nil); err != nil {
		t.Error(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := q.LabelNames(alpha, nil); err == nil {
		t.Error("querier usable after Close")
	}
	if !slices.Equal(src.asked, []string{"alpha"}) {
		t.Errorf("source asked for %v, want only alpha", src.asked)
	}

	// Without an ExemplarSource, exemplar queries answer an empty list.
	eq, err := (&tenantQueryable{src: src}).ExemplarQuerier(alpha)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := eq.Select(0, 1); err != nil || res == nil || len(res) != 0 {
		t.Errorf("got %v, %v", res, err)
	}
	if _, err := (&tenantQueryable{src: src}).ExemplarQuerier(ctx); err == nil {
		t.Error("ExemplarQuerier without a tenant succeeded")
	}
}

func TestQueryGate(t *testing.T) {
	g := newQueryGate(2)
	ctx := context.Background()
	for range 2 {
		if _, err := g.Insert(ctx, "q"); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := g.Insert(short, "q"); err == nil {
		t.Fatal("third query admitted past a limit of 2")
	}
	g.Delete(0)
	if _, err := g.Insert(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	if g.GetMaxConcurrent() != 2 {
		t.Error(g.GetMaxConcurrent())
	}
}
