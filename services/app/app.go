// Package app runs a weir process: the chosen targets, one HTTP server
// they share, the operational endpoints, and an orderly shutdown.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/statuspage"
)

// Service is one target of a process (edge, stream, sink).
type Service interface {
	// Name names the target in logs and metrics.
	Name() string
	// RegisterRoutes adds the target's HTTP endpoints to mux.
	RegisterRoutes(mux *Mux)
	// Run works until ctx is done, then flushes and releases everything
	// before returning.
	Run(ctx context.Context) error
	// Ready returns nil once the target can do its job.
	Ready() error
}

// Mux is the HTTP router of a process. Handle wraps every handler with the
// request metrics of its route.
type Mux struct {
	mux      *http.ServeMux
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight *prometheus.GaugeVec
}

func newMux(reg prometheus.Registerer) *Mux {
	m := &Mux{
		mux: http.NewServeMux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_http_requests_total",
			Help: "HTTP requests by route, method and status code.",
		}, []string{"handler", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                        "weir_http_request_duration_seconds",
			Help:                        "HTTP request latency by route.",
			Buckets:                     []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
			NativeHistogramBucketFactor: 1.1,
		}, []string{"handler"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weir_http_requests_in_flight",
			Help: "HTTP requests being served, by route.",
		}, []string{"handler"}),
	}
	reg.MustRegister(m.requests, m.duration, m.inflight)
	return m
}

// Handle serves pattern (http.ServeMux syntax) with h, measured under
// the handler label name.
func (m *Mux) Handle(pattern, name string, h http.Handler) {
	h = promhttp.InstrumentHandlerInFlight(m.inflight.WithLabelValues(name),
		promhttp.InstrumentHandlerDuration(m.duration.MustCurryWith(prometheus.Labels{"handler": name}),
			promhttp.InstrumentHandlerCounter(m.requests.MustCurryWith(prometheus.Labels{"handler": name}), h)))
	m.mux.Handle(pattern, h)
}

// ServeHTTP routes a request.
func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.mux.ServeHTTP(w, r) }

// Process is a running weir process.
type Process struct {
	cfg      *config.Config
	log      *slog.Logger
	reg      *prometheus.Registry
	mux      *Mux
	services []Service
	ln       net.Listener
	certs    *certReloader // nil when serving plain HTTP
	srv      *http.Server
	closers  []func()
	status   *statuspage.Page
}

// New prepares a process. Services are added with Add; extra is closed
// last, after every service stopped (the embedded broker, for example).
func New(cfg *config.Config, log *slog.Logger, reg *prometheus.Registry) *Process {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p := &Process{cfg: cfg, log: log, reg: reg, mux: newMux(reg)}
	p.mux.Handle("GET /metrics", "metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true}))
	p.mux.Handle("GET /-/healthy", "healthy", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "weir is healthy.")
	}))
	p.mux.Handle("GET /-/ready", "ready", http.HandlerFunc(p.serveReady))
	// The status page asks the stream's cardinality explorer through the
	// bare router, so its own calls are not counted as HTTP requests.
	so := statuspage.Options{Gatherer: reg, Explorer: p.mux.mux, Targets: p.names, Logger: log}
	if cfg.Auth.TenantsFile != "" {
		so.ExplorerHidden = "Authentication is on: this page, which needs no credentials, does not show the explorer, as it would name every tenant's metrics. Ask /api/v1/cardinality/… with a tenant's credentials."
	}
	p.status = statuspage.New(so)
	p.mux.Handle("GET /{$}", "status", p.status)
	if cfg.HTTP.Pprof {
		p.mux.Handle("GET /debug/pprof/", "pprof", http.HandlerFunc(pprof.Index))
		p.mux.Handle("GET /debug/pprof/cmdline", "pprof", http.HandlerFunc(pprof.Cmdline))
		p.mux.Handle("GET /debug/pprof/profile", "pprof", http.HandlerFunc(pprof.Profile))
		p.mux.Handle("GET /debug/pprof/symbol", "pprof", http.HandlerFunc(pprof.Symbol))
		p.mux.Handle("POST /debug/pprof/symbol", "pprof", http.HandlerFunc(pprof.Symbol))
		p.mux.Handle("GET /debug/pprof/trace", "pprof", http.HandlerFunc(pprof.Trace))
	}
	return p
}

// Add adds a service; services stop in the order they were added.
func (p *Process) Add(s Service) {
	p.services = append(p.services, s)
	s.RegisterRoutes(p.mux)
}

// OnClose registers fn to run after every service has stopped.
func (p *Process) OnClose(fn func()) { p.closers = append(p.closers, fn) }

// Mux is the process' router, for routes that belong to no service.
func (p *Process) Mux() *Mux { return p.mux }

func (p *Process) serveReady(w http.ResponseWriter, _ *http.Request) {
	var errs []error
	for _, s := range p.services {
		if err := s.Ready(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Name(), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = fmt.Fprintln(w, "weir is ready.")
}

// Listen binds the HTTP address, so callers know the port before Run, and
// loads the TLS certificate when http.tls is set.
func (p *Process) Listen() (net.Addr, error) {
	if p.cfg.HTTP.TLS.CertFile != "" && p.certs == nil {
		c, err := newCertReloader(p.cfg.HTTP.TLS, p.log, p.reg)
		if err != nil {
			return nil, err
		}
		p.certs = c
	}
	ln, err := net.Listen("tcp", p.cfg.HTTP.Addr)
	if err != nil {
		return nil, fmt.Errorf("listening on http.addr %s: %w", p.cfg.HTTP.Addr, err)
	}
	p.ln = ln
	return ln.Addr(), nil
}

// Run serves HTTP and runs every service until ctx is done, then shuts
// down in order: stop accepting requests and finish those in flight (their
// records reach Kafka or they fail), stop the services one by one (the edge
// flushes its producer, the stream ends its transaction, the sink commits
// and closes its TSDBs), and close what was registered with OnClose.
func (p *Process) Run(ctx context.Context) error {
	if p.ln == nil {
		if _, err := p.Listen(); err != nil {
			return err
		}
	}
	h := p.cfg.HTTP
	p.srv = &http.Server{
		Handler:           p.mux,
		ReadHeaderTimeout: h.ReadHeaderTimeout,
		ReadTimeout:       h.ReadTimeout,
		WriteTimeout:      h.WriteTimeout,
		IdleTimeout:       h.IdleTimeout,
		MaxHeaderBytes:    h.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	serve, scheme := p.srv.Serve, "http"
	if p.certs != nil {
		p.srv.TLSConfig = p.certs.tlsConfig()
		serve, scheme = func(ln net.Listener) error { return p.srv.ServeTLS(ln, "", "") }, "https"
		certsCtx, stopCerts := context.WithCancel(context.Background())
		defer stopCerts()
		go p.certs.watcher.Run(certsCtx)
	}
	statusDone := make(chan struct{})
	defer close(statusDone)
	go p.status.Run(statusDone)
	serveErr := make(chan error, 1)
	go func() {
		if err := serve(p.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- err
		}
		close(serveErr)
	}()
	p.log.Info("weir started", scheme, p.ln.Addr().String(), "targets", p.names())

	type running struct {
		cancel context.CancelFunc
		done   chan error
	}
	runs := make([]running, len(p.services))
	failed := make(chan error, len(p.services))
	var wg sync.WaitGroup
	for i, s := range p.services {
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan error, 1)
		runs[i] = running{cancel, done}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Run(sctx)
			if err != nil && sctx.Err() == nil {
				failed <- fmt.Errorf("%s: %w", s.Name(), err)
			}
			done <- err
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
		p.log.Info("shutting down", "reason", context.Cause(ctx))
	case err := <-serveErr:
		runErr = fmt.Errorf("HTTP server: %w", err)
	case err := <-failed:
		runErr = err
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.srv.Shutdown(shutdownCtx); err != nil {
		p.log.Warn("HTTP server did not finish in-flight requests in time", "err", err)
		_ = p.srv.Close()
	}
	for i, s := range p.services {
		runs[i].cancel()
		if err := <-runs[i].done; err != nil && !errors.Is(err, context.Canceled) {
			p.log.Error("service stopped with an error", "service", s.Name(), "err", err)
			if runErr == nil {
				runErr = fmt.Errorf("%s: %w", s.Name(), err)
			}
		}
		p.log.Info("service stopped", "service", s.Name())
	}
	wg.Wait()
	for _, c := range p.closers {
		c()
	}
	p.log.Info("weir stopped")
	return runErr
}

func (p *Process) names() []string {
	var ns []string
	for _, s := range p.services {
		ns = append(ns, s.Name())
	}
	return ns
}
