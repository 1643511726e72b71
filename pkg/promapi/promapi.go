// Package promapi serves the Prometheus HTTP query API (/api/v1/query,
// query_range, series, labels, …) for each tenant of weir's sink, so that
// Grafana and any other Prometheus client can use weir as a Prometheus data
// source.
//
// Rather than re-implementing the API, it mounts Prometheus' own
// implementation (github.com/prometheus/prometheus/web/api/v1) and its PromQL
// engine: parameter parsing, JSON shapes, error types and status codes are
// then exactly Prometheus', and stay so as the dependency is upgraded. Two
// things are added around it:
//
//   - every request is first bound to a tenant by Options.TenantFromRequest,
//     and the storage the API reads from resolves that tenant from the
//     context of each call and asks Source for that tenant's data only, so a
//     request can never see another tenant's series;
//   - only the read-only query routes are served: query, query_range,
//     query_exemplars, series, labels, format_query and parse_query (GET and
//     form-encoded POST), label/<name>/values and status/buildinfo (GET).
//     Prometheus' other routes (targets, metadata, rules, alerts, admin,
//     remote read and write, OTLP, TSDB and runtime status, search, …)
//     answer 404: weir has no scrape targets or rules, and those routes are
//     not tenant-aware.
package promapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"time"

	"github.com/grafana/regexp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/route"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/weir-metrics/weir/pkg/tenant"
)

// Defaults for the query engine. They are Prometheus' own defaults (the
// --query.* flags), so dashboards and alerts written against a Prometheus
// server behave the same against weir.
const (
	// DefaultMaxSamples bounds the samples one query may hold in memory
	// (Prometheus' --query.max-samples): at roughly 16 bytes a sample a
	// single query is kept below about 1 GiB.
	DefaultMaxSamples = 50_000_000
	// DefaultTimeout aborts queries that run longer (--query.timeout), so a
	// runaway query cannot hold a concurrency slot forever.
	DefaultTimeout = 2 * time.Minute
	// DefaultLookbackDelta is how far back an instant selector looks for the
	// latest sample (--query.lookback-delta); it must exceed the senders'
	// scrape interval or series flicker in and out of results.
	DefaultLookbackDelta = 5 * time.Minute
	// DefaultMaxConcurrentQueries bounds the PromQL queries evaluated at once
	// across all tenants (--query.max-concurrency); further queries wait for
	// a slot until their request is cancelled or times out.
	DefaultMaxConcurrentQueries = 20
)

// subqueryStep is the step of subqueries that name none ([30m:]), the
// default global evaluation_interval of Prometheus, which has no rule
// evaluation interval of its own here.
const subqueryStep = time.Minute

// Source gives read access to the stored samples of one tenant. The sink
// implements it by merging the queriers of that tenant's TSDB shards (see
// storage.NewMergeQuerier). It must return only tenant's data, and an empty querier
// (storage.NoopQuerier) rather than an error for a tenant that has none.
type Source interface {
	Querier(ctx context.Context, tenant string, mint, maxt int64) (storage.Querier, error)
}

// ExemplarSource is implemented by a Source that also stores exemplars;
// /api/v1/query_exemplars answers with an empty list for one that does not.
type ExemplarSource interface {
	ExemplarQuerier(ctx context.Context, tenant string) (storage.ExemplarQuerier, error)
}

// BuildInfo is what /api/v1/status/buildinfo reports. Grafana reads the
// version from it, so Version should be a semantic version.
type BuildInfo struct {
	Version   string
	Revision  string
	Branch    string
	BuildUser string
	BuildDate string
}

// Options configure an API. Source and TenantFromRequest are required;
// zero values of the others take the defaults above.
type Options struct {
	// Source reads a tenant's samples.
	Source Source

	// TenantFromRequest names the tenant a request is for, typically after
	// authenticating it. An error is answered in Prometheus' error format
	// with the status of the HTTPError it wraps (see StatusError), or 401 if
	// it wraps none. A returned ID that fails tenant.ValidateID is answered
	// with 400. There is deliberately no default, so that a server cannot
	// start without deciding how tenants are identified.
	TenantFromRequest func(*http.Request) (string, error)

	// Logger receives the API's and the engine's logs; nil discards them.
	Logger *slog.Logger

	// Registerer receives the PromQL engine's metrics
	// (prometheus_engine_*); nil registers none. Registering two APIs with
	// one Registerer panics on the duplicate metrics.
	Registerer prometheus.Registerer

	MaxSamples           int           // default DefaultMaxSamples
	Timeout              time.Duration // default DefaultTimeout
	LookbackDelta        time.Duration // default DefaultLookbackDelta
	MaxConcurrentQueries int           // default DefaultMaxConcurrentQueries

	BuildInfo BuildInfo
}

// API serves the Prometheus query API of every tenant.
type API struct {
	handler http.Handler
}

// routes are the only "METHOD /path" patterns served; they mirror what
// Prometheus registers for each (GET and form-encoded POST where it accepts
// both). Everything else Prometheus offers answers 404.
var routes = []string{
	"GET /api/v1/query",
	"POST /api/v1/query",
	"GET /api/v1/query_range",
	"POST /api/v1/query_range",
	"GET /api/v1/query_exemplars",
	"POST /api/v1/query_exemplars",
	"GET /api/v1/format_query",
	"POST /api/v1/format_query",
	"GET /api/v1/parse_query",
	"POST /api/v1/parse_query",
	"GET /api/v1/series",
	"POST /api/v1/series",
	"GET /api/v1/labels",
	"POST /api/v1/labels",
	"GET /api/v1/label/{name}/values",
	"GET /api/v1/status/buildinfo",
}

// New builds an API from opts.
func New(opts Options) (*API, error) {
	if opts.Source == nil {
		return nil, errors.New("promapi: Options.Source is required")
	}
	if opts.TenantFromRequest == nil {
		return nil, errors.New("promapi: Options.TenantFromRequest is required")
	}
	if opts.MaxSamples < 0 || opts.Timeout < 0 || opts.LookbackDelta < 0 || opts.MaxConcurrentQueries < 0 {
		return nil, errors.New("promapi: MaxSamples, Timeout, LookbackDelta and MaxConcurrentQueries must not be negative")
	}
	if opts.MaxSamples == 0 {
		opts.MaxSamples = DefaultMaxSamples
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.LookbackDelta == 0 {
		opts.LookbackDelta = DefaultLookbackDelta
	}
	if opts.MaxConcurrentQueries == 0 {
		opts.MaxConcurrentQueries = DefaultMaxConcurrentQueries
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	// One parser for the engine and the API, so that what format_query and
	// series accept is what query accepts.
	promqlParser := parser.NewParser(parser.Options{})
	engine := promql.NewEngine(promql.EngineOpts{
		Logger:             logger.With("component", "query engine"),
		Reg:                opts.Registerer,
		MaxSamples:         opts.MaxSamples,
		Timeout:            opts.Timeout,
		ActiveQueryTracker: newQueryGate(opts.MaxConcurrentQueries),
		LookbackDelta:      opts.LookbackDelta,
		NoStepSubqueryIntervalFn: func(int64) int64 {
			return subqueryStep.Milliseconds()
		},
		// Always on in Prometheus since v2.33, so queries written for it
		// may use them.
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		Parser:               promqlParser,
	})

	queryable := &tenantQueryable{src: opts.Source}
	bi := opts.BuildInfo
	api := v1.NewAPI(
		engine,
		queryable,
		nil, nil, // no remote write or OTLP appenders: those routes are not exposed
		queryable,
		// Scrape pools, targets, alertmanagers: weir has none, and the
		// routes that would call these are not exposed.
		nil, nil, nil,
		func() config.Config { return config.Config{} },
		nil, // flags
		v1.GlobalURLOptions{},
		func(f http.HandlerFunc) http.HandlerFunc { return f }, // always ready
		nil, "", // no TSDB admin/stats, no data directory
		false,    // admin API off
		false, 0, // search API off: it caches metadata across requests, which is not tenant-aware
		logger.With("component", "api"),
		nil,     // rules
		0, 0, 0, // remote read limits: remote read is not exposed
		false, // not an agent
		// CORS: grant no origin. Grafana queries server-side; a browser on
		// another origin must not be able to use a user's credentials here.
		// (Prometheus' SetCORS dereferences this, so it must not be nil.)
		regexp.MustCompile(`^$`),
		nil, // runtime info
		&v1.PrometheusVersion{
			Version:   bi.Version,
			Revision:  bi.Revision,
			Branch:    bi.Branch,
			BuildUser: bi.BuildUser,
			BuildDate: bi.BuildDate,
			GoVersion: runtime.Version(),
		},
		nil, nil, // notifications
		nil,        // gatherer: /status/self_metrics is not exposed
		nil,        // registerer: only the (unexposed) remote read handler would register here
		nil,        // default stats renderer
		false, nil, // remote write off
		false, false, false, // OTLP off
		false, // no start timestamp zero ingestion
		opts.LookbackDelta,
		false, // type and unit labels off
		false, // append metadata off
		nil,   // Prometheus' default status codes
		nil,   // feature registry
		v1.OpenAPIOptions{IncludePaths: []string{"/status/buildinfo"}}, // keep the unused spec small
		promqlParser,
	)
	router := route.New()
	api.Register(router.WithPrefix("/api/v1"))

	withTenant := tenantMiddleware(opts.TenantFromRequest, logger, router)
	mux := http.NewServeMux()
	for _, pattern := range routes {
		mux.Handle(pattern, withTenant)
	}
	return &API{handler: mux}, nil
}

// Handler returns the handler of all routes; mount it at the server's root
// (or under http.StripPrefix), as it expects paths starting with /api/v1/.
func (a *API) Handler() http.Handler { return a.handler }

// tenantMiddleware binds each request to its tenant before Prometheus' code
// sees it; the storage reads the tenant back from the request's context.
func tenantMiddleware(fromRequest func(*http.Request) (string, error), logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := fromRequest(r)
		if err == nil {
			if verr := tenant.ValidateID(id); verr != nil {
				err = &StatusError{Status: http.StatusBadRequest, Err: verr}
			}
		}
		if err != nil {
			status := http.StatusUnauthorized
			var he HTTPError
			if errors.As(err, &he) {
				status = he.HTTPStatus()
			}
			if status < 400 || status > 599 {
				// A refusal must not read as success (or panic WriteHeader).
				status = http.StatusInternalServerError
			}
			logger.Debug("request refused: no tenant", "path", r.URL.Path, "status", status, "err", err)
			writeError(w, status, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(tenant.WithID(r.Context(), id)))
	})
}

// HTTPError is an error that carries the HTTP status it should be answered
// with. TenantFromRequest returns one to choose the status of its refusal.
type HTTPError interface {
	error
	HTTPStatus() int
}

// StatusError is the ready-made HTTPError: Err with an HTTP status, e.g.
// 401 when a request has no valid credentials, 403 when they do not grant
// the tenant, 400 for a malformed tenant.
type StatusError struct {
	Status int
	Err    error
}

func (e *StatusError) Error() string   { return e.Err.Error() }
func (e *StatusError) Unwrap() error   { return e.Err }
func (e *StatusError) HTTPStatus() int { return e.Status }

// TenantFromHeader returns a TenantFromRequest that takes the tenant from
// the request header name (e.g. "X-Scope-OrgID", as Grafana, Mimir and
// Cortex call it). Only use it behind a proxy that authenticates requests
// and sets that header itself: the header alone proves nothing.
func TenantFromHeader(name string) func(*http.Request) (string, error) {
	return func(r *http.Request) (string, error) {
		switch v := r.Header.Values(name); {
		case len(v) == 0 || len(v) == 1 && v[0] == "":
			return "", &StatusError{Status: http.StatusUnauthorized, Err: fmt.Errorf("no %s header", name)}
		case len(v) == 1:
			return v[0], nil
		default:
			return "", &StatusError{Status: http.StatusBadRequest, Err: fmt.Errorf("%d %s headers; exactly one is allowed", len(v), name)}
		}
	}
}

// writeError answers like Prometheus' API does, so clients show err to the
// user rather than failing to parse the body.
func writeError(w http.ResponseWriter, status int, err error) {
	body, _ := json.Marshal(struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
	}{"error", errorType(status), err.Error()})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// errorType names a status in Prometheus' errorType vocabulary, which has
// no word for authentication failures; those get their own.
func errorType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "bad_data"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusNotAcceptable:
		return "not_acceptable"
	case http.StatusServiceUnavailable:
		return "unavailable"
	}
	if status >= 500 {
		return "internal"
	}
	return "bad_data"
}

// queryGate is the engine's ActiveQueryTracker reduced to its limit:
// Prometheus' own tracker also keeps a crash log in a file, which weir has
// no use for.
type queryGate struct{ slots chan struct{} }

func newQueryGate(n int) *queryGate { return &queryGate{slots: make(chan struct{}, n)} }

func (g *queryGate) GetMaxConcurrent() int { return cap(g.slots) }

// Insert waits for a free slot. A query whose deadline passes while it
// waits is reported as a timeout (503) and one whose client leaves as
// cancelled (499), as during evaluation; Prometheus' tracker returns the
// bare context error, which its API answers as an execution error (422).
func (g *queryGate) Insert(ctx context.Context, _ string) (int, error) {
	select {
	case g.slots <- struct{}{}:
		return 0, nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return 0, promql.ErrQueryTimeout("queueing for a concurrency slot")
		}
		return 0, promql.ErrQueryCanceled("queueing for a concurrency slot")
	}
}

func (g *queryGate) Delete(int) { <-g.slots }

func (*queryGate) Close() error { return nil }
