package edge

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/budget"
	"github.com/weir-metrics/weir/pkg/prw"
)

// budgetRetryAfter is the wait a sender refused for its series budget is
// asked for: new series are admitted again only when active ones expire
// or the limit is raised, so retrying every second only adds load.
const budgetRetryAfter = 10 * time.Second

// budgetState follows the series-budget state the stream workers publish
// (pkg/budget) so the edge can refuse, before Kafka, requests that would
// add series beyond a tenant's budget. It lags the stream workers by
// about stream.budget_publish_interval plus a fetch; docs/cardinality.md
// describes its accuracy.
type budgetState struct {
	reader *budget.Reader
}

func newBudgetState(opts []kgo.Opt, prefix string, log *slog.Logger) *budgetState {
	return &budgetState{reader: budget.NewReader(opts, budget.Topic(prefix), log)}
}

// run follows the state topic until ctx is done.
func (b *budgetState) run(ctx context.Context) { b.reader.Run(ctx) }

// checkSeriesBudget refuses with 429 a request whose series not active yet
// would take the tenant, or one of its metrics, beyond its series budget.
// The message names the tenant, the limit, the current usage and the
// metric that grew most. Series already active always pass.
func (e *Edge) checkSeriesBudget(tenant string, series []prw.TimeSeries) *refusal {
	ex := e.budget.reader.View().Check(tenant, series)
	if ex == nil {
		return nil
	}
	reason := "tenant_series_limit"
	if ex.Metric != "" {
		reason = "metric_series_limit"
	}
	rf := refuse(http.StatusTooManyRequests, reason, "%v", ex)
	rf.retryAfter = budgetRetryAfter
	return rf
}
