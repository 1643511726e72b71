// Package statuspage serves a weir process' status page: one HTML page,
// with no external assets, that tells an operator per tenant what comes
// in, what is refused and why, how many series are active against the
// budget, which metrics and labels drive that (the cardinality explorer),
// how far behind Kafka's consumers are, and which build runs.
//
// Everything comes from the process itself: its Prometheus registry —
// rates are computed from counters sampled in memory, so the page needs no
// Prometheus — and, in a process running a stream worker, the cardinality
// explorer API answered in process. A process shows what its targets know:
// an edge its ingest and refusals, a stream worker the budgets and the
// explorer, a sink its stored series and lag.
package statuspage

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Options configure a Page.
type Options struct {
	// Gatherer is the process' registry.
	Gatherer prometheus.Gatherer
	// Explorer answers the cardinality explorer API
	// (GET /api/v1/cardinality/…) in process. It is asked only when
	// Targets includes "stream".
	Explorer http.Handler
	// ExplorerHidden, when set, is why the page does not show the
	// explorer (authentication is on, and the page would name every
	// tenant's metrics to whoever reaches it); it shows this instead.
	ExplorerHidden string
	// Targets names the targets the process runs.
	Targets func() []string
	// SampleInterval is how often counters are sampled for rates.
	// Default 5s.
	SampleInterval time.Duration
	// RateWindow is the span rates are averaged over. Default 1m.
	RateWindow time.Duration
	// ExplorerTenants is how many tenants (most active series first) the
	// explorer section shows. Default 5.
	ExplorerTenants int
	// ExplorerMetrics is how many metrics per tenant the explorer section
	// breaks down by label. Default 5.
	ExplorerMetrics int
	Logger          *slog.Logger
}

// Page is the status page of one process.
type Page struct {
	o Options

	mu      sync.Mutex
	samples []snapshot // oldest first, within RateWindow plus one interval
}

// snapshot is the value of every sampled counter series at one time.
type snapshot struct {
	at     time.Time
	values map[string]float64 // seriesKey → value
}

// MetricNames are the metrics the page reads from the registry, as the
// services register them.
var MetricNames = []string{
	"weir_build_info", "go_info", "process_start_time_seconds",
	"weir_edge_samples_received_total", "weir_edge_samples_written_total", "weir_edge_samples_refused_total",
	"weir_stream_samples_admitted_total", "weir_stream_samples_discarded_total",
	"weir_stream_active_series", "weir_stream_series_limit",
	"weir_sink_samples_appended_total", "weir_sink_samples_discarded_total", "weir_sink_head_series",
	"weir_kafka_consumer_lag_records",
}

// counters whose rates the page shows.
var rateFamilies = map[string]bool{
	"weir_edge_samples_received_total":    true,
	"weir_edge_samples_written_total":     true,
	"weir_edge_samples_refused_total":     true,
	"weir_stream_samples_admitted_total":  true,
	"weir_stream_samples_discarded_total": true,
	"weir_sink_samples_appended_total":    true,
	"weir_sink_samples_discarded_total":   true,
}

// New returns a page; Run must sample for rates to appear.
func New(o Options) *Page {
	if o.SampleInterval <= 0 {
		o.SampleInterval = 5 * time.Second
	}
	if o.RateWindow <= 0 {
		o.RateWindow = time.Minute
	}
	if o.ExplorerTenants <= 0 {
		o.ExplorerTenants = 5
	}
	if o.ExplorerMetrics <= 0 {
		o.ExplorerMetrics = 5
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Targets == nil {
		o.Targets = func() []string { return nil }
	}
	return &Page{o: o}
}

// Run samples the counters every SampleInterval until done is closed.
func (p *Page) Run(done <-chan struct{}) {
	t := time.NewTicker(p.o.SampleInterval)
	defer t.Stop()
	p.Sample()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			p.Sample()
		}
	}
}

// Sample records the counters now. Run calls it; tests call it to control
// time.
func (p *Page) Sample() {
	series, err := p.gather()
	if err != nil {
		p.o.Logger.Warn("status page: gathering metrics", "err", err)
		return
	}
	p.record(time.Now(), series)
}

func (p *Page) record(at time.Time, series []sample) {
	snap := snapshot{at: at, values: map[string]float64{}}
	for _, s := range series {
		if rateFamilies[s.name] {
			snap.values[s.key()] = s.value
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.samples = append(p.samples, snap)
	// Samples beyond the window (and the interval that may separate the
	// last one inside it) can no longer be a rate's baseline.
	cut := 0
	for cut < len(p.samples) && at.Sub(p.samples[cut].at) > p.o.RateWindow+p.o.SampleInterval {
		cut++
	}
	p.samples = p.samples[cut:]
}

// sample is one series of the registry.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

func (s sample) key() string {
	names := make([]string, 0, len(s.labels))
	for n := range s.labels {
		names = append(names, n)
	}
	sort.Strings(names)
	k := s.name
	for _, n := range names {
		k += "\xff" + n + "\xfe" + s.labels[n]
	}
	return k
}

func (p *Page) gather() ([]sample, error) {
	mfs, err := p.o.Gatherer.Gather()
	if err != nil && len(mfs) == 0 {
		return nil, err
	}
	var out []sample
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var v float64
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				v = m.GetUntyped().GetValue()
			default:
				continue
			}
			ls := make(map[string]string, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = l.GetValue()
			}
			out = append(out, sample{name: mf.GetName(), labels: ls, value: v})
		}
	}
	return out, nil
}

// Status is what the page shows; ?format=json serves it as JSON.
type Status struct {
	Build      Build          `json:"build"`
	Targets    []string       `json:"targets"`
	Now        time.Time      `json:"now"`
	RateWindow string         `json:"rate_window"`
	RatesKnown bool           `json:"rates_known"`
	Tenants    []TenantStatus `json:"tenants"`
	Refusals   []Refusal      `json:"refusals"`
	Lag        []Lag          `json:"lag"`
	Explorer   *Explorer      `json:"explorer,omitempty"`
	// ExplorerHidden is Options.ExplorerHidden.
	ExplorerHidden string          `json:"explorer_hidden,omitempty"`
	Problems       []string        `json:"problems,omitempty"`
	protocols      map[string]bool // sources seen, for the page's columns
}

// Build tells which weir runs.
type Build struct {
	Version   string    `json:"version"`
	Revision  string    `json:"revision"`
	GoVersion string    `json:"go_version"`
	Started   time.Time `json:"started"`
}

// TenantStatus is one tenant's line. Rates are samples per second over
// the rate window; totals count since the process started.
type TenantStatus struct {
	Tenant         string             `json:"tenant"`
	IngestRate     float64            `json:"ingest_rate"`
	IngestBySource map[string]float64 `json:"ingest_rate_by_source,omitempty"`
	Written        float64            `json:"written"`
	RefusedRate    float64            `json:"refused_rate"`
	Refused        float64            `json:"refused"`
	StoredRate     float64            `json:"stored_rate"`
	DroppedRate    float64            `json:"dropped_rate"`
	ActiveSeries   float64            `json:"active_series"`
	HeadSeries     float64            `json:"head_series"`
	SeriesLimit    float64            `json:"series_limit,omitempty"`
}

// BudgetUsed is ActiveSeries as a share of SeriesLimit; 0 without one.
func (t TenantStatus) BudgetUsed() float64 {
	if t.SeriesLimit <= 0 {
		return 0
	}
	return t.ActiveSeries / t.SeriesLimit
}

// Refusal is one tenant's refusals for one reason, at the edge or
// dropped later in the pipeline.
type Refusal struct {
	Tenant string  `json:"tenant"`
	Stage  string  `json:"stage"`
	Reason string  `json:"reason"`
	Rate   float64 `json:"rate"`
	Total  float64 `json:"total"`
}

// Lag is how far a consuming stage is behind on a tenant.
type Lag struct {
	Stage   string  `json:"stage"`
	Tenant  string  `json:"tenant"`
	Records float64 `json:"records"`
}

// Explorer is the cardinality explorer's view of the most active tenants.
type Explorer struct {
	Tenants []ExplorerTenant `json:"tenants"`
}

// ExplorerTenant is one tenant's top metrics.
type ExplorerTenant struct {
	Tenant       string           `json:"tenant"`
	ActiveSeries int              `json:"active_series"`
	Limit        int              `json:"limit,omitempty"`
	Metrics      []ExplorerMetric `json:"metrics"`
	GrewMost     string           `json:"grew_most,omitempty"`
}

// ExplorerMetric is a metric with its labels ranked by distinct values.
type ExplorerMetric struct {
	Metric       string          `json:"metric"`
	ActiveSeries int             `json:"active_series"`
	Limit        int             `json:"limit,omitempty"`
	NewSeries    int             `json:"new_series_5m"`
	Refused      int             `json:"refused_series_5m"`
	Labels       []ExplorerLabel `json:"labels"`
}

// ExplorerLabel is one label of a metric.
type ExplorerLabel struct {
	Label          string `json:"label"`
	DistinctValues int    `json:"distinct_values"`
	AtLeast        bool   `json:"at_least,omitempty"`
	// Exploding marks a label with about one value per series: the label
	// that makes the metric's series count grow with its traffic.
	Exploding bool `json:"exploding,omitempty"`
}

// explodingShare is the distinct values per active series above which a
// label is flagged, and explodingMin the fewest values that can be.
const (
	explodingShare = 0.5
	explodingMin   = 100
)

// Status computes what the page shows now.
func (p *Page) Status() Status {
	now := time.Now()
	st := Status{Now: now, Targets: p.o.Targets(), RateWindow: p.o.RateWindow.String(), protocols: map[string]bool{}}
	series, err := p.gather()
	if err != nil {
		st.Problems = append(st.Problems, fmt.Sprintf("reading the registry: %v", err))
	}
	base, span := p.baseline(now)
	st.RatesKnown = span > 0
	rate := func(s sample) float64 {
		if span <= 0 {
			return 0
		}
		prev := base[s.key()]
		if s.value < prev { // counter reset
			prev = 0
		}
		return (s.value - prev) / span.Seconds()
	}

	tenants := map[string]*TenantStatus{}
	ten := func(id string) *TenantStatus {
		t := tenants[id]
		if t == nil {
			t = &TenantStatus{Tenant: id, IngestBySource: map[string]float64{}}
			tenants[id] = t
		}
		return t
	}
	refusals := map[[3]string]*Refusal{}
	refusal := func(tenant, stage, reason string) *Refusal {
		k := [3]string{tenant, stage, reason}
		r := refusals[k]
		if r == nil {
			r = &Refusal{Tenant: tenant, Stage: stage, Reason: reason}
			refusals[k] = r
		}
		return r
	}
	for _, s := range series {
		tn := s.labels["tenant"]
		switch s.name {
		case "weir_build_info":
			st.Build.Version, st.Build.Revision = s.labels["version"], s.labels["revision"]
		case "go_info":
			st.Build.GoVersion = s.labels["version"]
		case "process_start_time_seconds":
			st.Build.Started = time.Unix(int64(s.value), 0)
		case "weir_edge_samples_written_total":
			t := ten(tn)
			r := rate(s)
			t.IngestRate += r
			t.IngestBySource[s.labels["source"]] += r
			t.Written += s.value
			st.protocols[s.labels["source"]] = true
		case "weir_edge_samples_received_total":
			ten(tn)
		case "weir_edge_samples_refused_total":
			t := ten(tn)
			r := rate(s)
			t.RefusedRate += r
			t.Refused += s.value
			rf := refusal(tn, "edge", s.labels["reason"])
			rf.Rate += r
			rf.Total += s.value
		case "weir_stream_samples_discarded_total", "weir_sink_samples_discarded_total":
			stage := "stream"
			if s.name == "weir_sink_samples_discarded_total" {
				stage = "sink"
			}
			r := rate(s)
			ten(tn).DroppedRate += r
			rf := refusal(tn, stage, s.labels["reason"])
			rf.Rate += r
			rf.Total += s.value
		case "weir_sink_samples_appended_total":
			ten(tn).StoredRate += rate(s)
		case "weir_stream_active_series":
			ten(tn).ActiveSeries += s.value
		case "weir_stream_series_limit":
			ten(tn).SeriesLimit = max(ten(tn).SeriesLimit, s.value)
		case "weir_sink_head_series":
			ten(tn).HeadSeries += s.value
		case "weir_kafka_consumer_lag_records":
			st.Lag = append(st.Lag, Lag{Stage: s.labels["stage"], Tenant: tn, Records: s.value})
		}
	}
	for _, t := range tenants {
		if t.Tenant == "" {
			continue // counters of requests refused before a tenant was known
		}
		if len(t.IngestBySource) == 0 {
			t.IngestBySource = nil
		}
		st.Tenants = append(st.Tenants, *t)
	}
	sort.Slice(st.Tenants, func(i, j int) bool {
		a, b := st.Tenants[i], st.Tenants[j]
		if a.IngestRate != b.IngestRate {
			return a.IngestRate > b.IngestRate
		}
		if a.Written != b.Written {
			return a.Written > b.Written
		}
		return a.Tenant < b.Tenant
	})
	for _, r := range refusals {
		if r.Total > 0 {
			st.Refusals = append(st.Refusals, *r)
		}
	}
	sort.Slice(st.Refusals, func(i, j int) bool {
		a, b := st.Refusals[i], st.Refusals[j]
		if a.Rate != b.Rate {
			return a.Rate > b.Rate
		}
		if a.Total != b.Total {
			return a.Total > b.Total
		}
		return a.Tenant+a.Stage+a.Reason < b.Tenant+b.Stage+b.Reason
	})
	sort.Slice(st.Lag, func(i, j int) bool {
		a, b := st.Lag[i], st.Lag[j]
		if a.Stage != b.Stage {
			return a.Stage < b.Stage
		}
		return a.Tenant < b.Tenant
	})
	st.ExplorerHidden = p.o.ExplorerHidden
	if p.runs("stream") && p.o.Explorer != nil && p.o.ExplorerHidden == "" {
		ex, err := p.explore()
		if err != nil {
			st.Problems = append(st.Problems, fmt.Sprintf("cardinality explorer: %v", err))
		}
		st.Explorer = ex
	}
	return st
}

// baseline returns the oldest sample within the rate window and the time
// since it; a zero span means no rate can be computed yet.
func (p *Page) baseline(now time.Time) (map[string]float64, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.samples {
		span := now.Sub(s.at)
		if span <= p.o.RateWindow+p.o.SampleInterval && span >= time.Second {
			return s.values, span
		}
	}
	return nil, 0
}

func (p *Page) runs(target string) bool {
	for _, t := range p.o.Targets() {
		if t == target {
			return true
		}
	}
	return false
}

// explore asks the explorer for the most active tenants, their top
// metrics and those metrics' labels.
func (p *Page) explore() (*Explorer, error) {
	var tenants []struct {
		Tenant       string `json:"tenant"`
		ActiveSeries int    `json:"active_series"`
		Limit        int    `json:"limit"`
	}
	if err := p.ask("/api/v1/cardinality/tenants", "", &tenants); err != nil {
		return nil, err
	}
	ex := &Explorer{}
	for i, t := range tenants {
		if i == p.o.ExplorerTenants {
			break
		}
		et := ExplorerTenant{Tenant: t.Tenant, ActiveSeries: t.ActiveSeries, Limit: t.Limit}
		var metrics struct {
			GrewMost *struct {
				Metric string `json:"metric"`
			} `json:"grew_most"`
			Metrics []ExplorerMetric `json:"metrics"`
		}
		if err := p.ask(fmt.Sprintf("/api/v1/cardinality/metrics?limit=%d", p.o.ExplorerMetrics), t.Tenant, &metrics); err != nil {
			return ex, err
		}
		if metrics.GrewMost != nil {
			et.GrewMost = metrics.GrewMost.Metric
		}
		for _, m := range metrics.Metrics {
			var labels struct {
				Labels []ExplorerLabel `json:"labels"`
			}
			// A metric whose partitions all live on other workers has no
			// label values here: show it without.
			if err := p.ask("/api/v1/cardinality/metrics/"+url.PathEscape(m.Metric)+"/labels", t.Tenant, &labels); err == nil {
				m.Labels = labels.Labels
			}
			markExploding(m.Labels, m.ActiveSeries)
			et.Metrics = append(et.Metrics, m)
		}
		ex.Tenants = append(ex.Tenants, et)
	}
	return ex, nil
}

// markExploding sorts labels by distinct values, most first, and flags
// those with about one value per active series.
func markExploding(labels []ExplorerLabel, activeSeries int) {
	sort.SliceStable(labels, func(i, j int) bool { return labels[i].DistinctValues > labels[j].DistinctValues })
	for k := range labels {
		l := &labels[k]
		l.Exploding = l.DistinctValues >= explodingMin && float64(l.DistinctValues) >= explodingShare*float64(activeSeries)
	}
}

// ask calls the explorer in process and decodes the data of its answer.
func (p *Page) ask(path, tenant string, data any) error {
	req, err := http.NewRequest(http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	w := &bufferWriter{header: http.Header{}, status: http.StatusOK}
	p.o.Explorer.ServeHTTP(w, req)
	var resp struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(w.body, &resp); err != nil {
		return fmt.Errorf("GET %s: %d %.200s", path, w.status, w.body)
	}
	if resp.Status != "success" {
		return fmt.Errorf("GET %s: %d %s", path, w.status, resp.Error)
	}
	return json.Unmarshal(resp.Data, data)
}

// bufferWriter collects an in-process answer.
type bufferWriter struct {
	header http.Header
	status int
	body   []byte
}

func (b *bufferWriter) Header() http.Header    { return b.header }
func (b *bufferWriter) WriteHeader(status int) { b.status = status }
func (b *bufferWriter) Write(p []byte) (int, error) {
	b.body = append(b.body, p...)
	return len(p), nil
}
