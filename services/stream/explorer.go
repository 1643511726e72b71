package stream

import (
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"

	"github.com/weir-metrics/weir/pkg/auth"
	"github.com/weir-metrics/weir/pkg/tenant"
	"github.com/weir-metrics/weir/services/app"
)

// The cardinality explorer answers from what this worker tracks for the
// partitions it owns, plus what other workers published for the others
// (docs/cardinality.md). Shapes follow the Prometheus API: {"status":
// "success", "data": …} or {"status": "error", "errorType", "error"}.
func (s *Stream) registerExplorer(mux *app.Mux) {
	mux.Handle("GET /api/v1/cardinality/tenants", "cardinality_tenants", http.HandlerFunc(s.serveTenants))
	mux.Handle("GET /api/v1/cardinality/metrics", "cardinality_metrics", http.HandlerFunc(s.serveMetrics))
	mux.Handle("GET /api/v1/cardinality/metrics/{metric}/labels", "cardinality_labels", http.HandlerFunc(s.serveLabels))
}

type tenantSummary struct {
	Tenant       string `json:"tenant"`
	ActiveSeries int    `json:"active_series"`
	Limit        int    `json:"limit,omitempty"`
}

type metricSummary struct {
	Metric       string `json:"metric"`
	ActiveSeries int    `json:"active_series"`
	Limit        int    `json:"limit,omitempty"`
	NewSeries    int    `json:"new_series_5m"`
	Refused      int    `json:"refused_series_5m"`
}

type metricsResponse struct {
	Tenant              string          `json:"tenant"`
	ActiveSeries        int             `json:"active_series"`
	Limit               int             `json:"limit,omitempty"`
	Window              string          `json:"window"`
	Partitions          int             `json:"partitions"`
	PartitionsOwned     int             `json:"partitions_owned"`
	PartitionsElsewhere int             `json:"partitions_published_by_others"`
	GrewMost            *metricSummary  `json:"grew_most,omitempty"`
	Metrics             []metricSummary `json:"metrics"`
}

type labelSummary struct {
	Label          string `json:"label"`
	DistinctValues int    `json:"distinct_values"`
	AtLeast        bool   `json:"at_least,omitempty"`
}

type labelsResponse struct {
	Tenant          string         `json:"tenant"`
	Metric          string         `json:"metric"`
	ActiveSeries    int            `json:"active_series"`
	Limit           int            `json:"limit,omitempty"`
	PartitionsOwned int            `json:"partitions_owned"`
	Partitions      int            `json:"partitions"`
	Labels          []labelSummary `json:"labels"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeData(w http.ResponseWriter, data any) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": data})
}

func writeError(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, map[string]any{"status": "error", "errorType": typ, "error": msg})
}

// requestTenant resolves the tenant a request may see, with the same
// authentication as writes and queries.
func (s *Stream) requestTenant(w http.ResponseWriter, r *http.Request) (string, bool) {
	t, err := s.tenants.Tenant(r)
	if err != nil {
		status := http.StatusUnauthorized
		var ae *auth.Error
		if errors.As(err, &ae) {
			status = ae.Status
		}
		writeError(w, status, "unauthorized", err.Error())
		return "", false
	}
	if err := tenant.ValidateID(t); err != nil {
		writeError(w, http.StatusBadRequest, "bad_data", "X-Scope-OrgID: "+err.Error())
		return "", false
	}
	return t, true
}

func (s *Stream) serveTenants(w http.ResponseWriter, r *http.Request) {
	// With authentication on, a tenant sees only itself; without it the
	// list is the operator's view (as /metrics, which names tenants too).
	only := ""
	if s.tenants.Enabled() {
		t, ok := s.requestTenant(w, r)
		if !ok {
			return
		}
		only = t
	}
	set := s.pipes.Set()
	names := map[string]bool{}
	s.track.Lock()
	for _, t := range s.track.TenantsLocked() {
		names[t] = true
	}
	s.track.Unlock()
	for _, t := range s.states.View().Tenants() {
		names[t] = true
	}
	out := []tenantSummary{}
	for t := range names {
		if only != "" && t != only {
			continue
		}
		local, _ := s.track.Active(t, "")
		out = append(out, tenantSummary{Tenant: t, ActiveSeries: local + s.remote.Active(t), Limit: set.For(t).Budget.MaxSeries})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ActiveSeries != out[j].ActiveSeries {
			return out[i].ActiveSeries > out[j].ActiveSeries
		}
		return out[i].Tenant < out[j].Tenant
	})
	writeData(w, out)
}

// serveMetrics lists a tenant's metrics by active series, most first
// (?limit=N, default 20; 0 for all).
func (s *Stream) serveMetrics(w http.ResponseWriter, r *http.Request) {
	ten, ok := s.requestTenant(w, r)
	if !ok {
		return
	}
	limit := 20
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "bad_data", "limit must be a non-negative integer")
			return
		}
		limit = n
	}
	b := s.pipes.Set().For(ten).Budget
	byName := map[string]*metricSummary{}
	for _, m := range s.track.Metrics(ten) {
		byName[m.Name] = &metricSummary{Metric: m.Name, ActiveSeries: m.Active, NewSeries: m.New, Refused: m.Refused}
	}
	resp := metricsResponse{Tenant: ten, Limit: b.MaxSeries, Window: s.cfg.Stream.ActiveSeriesWindow.String(), Partitions: s.cfg.Kafka.Partitions, PartitionsOwned: s.owned.count(ten)}
	resp.ActiveSeries, _ = s.track.Active(ten, "")
	if u := s.states.View().Tenant(ten); u != nil {
		for p := 0; p < u.Partitions; p++ {
			ps := u.Partition(int32(p))
			if ps == nil || s.owned.owns(ten, int32(p)) {
				continue
			}
			resp.PartitionsElsewhere++
			resp.ActiveSeries += ps.Active
			for _, m := range ps.Metrics {
				ms := byName[m.Name]
				if ms == nil {
					ms = &metricSummary{Metric: m.Name}
					byName[m.Name] = ms
				}
				ms.ActiveSeries += m.Active
				ms.NewSeries += m.New
				ms.Refused += m.Refused
			}
		}
	}
	resp.Metrics = []metricSummary{}
	var grew *metricSummary
	for _, ms := range byName {
		ms.Limit = b.MetricLimit(ms.Metric)
		resp.Metrics = append(resp.Metrics, *ms)
		if g := ms.NewSeries + ms.Refused; g > 0 && (grew == nil || g > grew.NewSeries+grew.Refused || g == grew.NewSeries+grew.Refused && ms.Metric < grew.Metric) {
			grew = ms
		}
	}
	if grew != nil {
		g := *grew
		resp.GrewMost = &g
	}
	sort.Slice(resp.Metrics, func(i, j int) bool {
		a, b := resp.Metrics[i], resp.Metrics[j]
		if a.ActiveSeries != b.ActiveSeries {
			return a.ActiveSeries > b.ActiveSeries
		}
		return a.Metric < b.Metric
	})
	if limit > 0 && len(resp.Metrics) > limit {
		resp.Metrics = resp.Metrics[:limit]
	}
	writeData(w, resp)
}

// serveLabels ranks one metric's labels by distinct values, so the label
// that explodes comes first. Label values are tracked by the worker that
// owns a partition; partitions owned elsewhere add their active series
// but not their label values.
func (s *Stream) serveLabels(w http.ResponseWriter, r *http.Request) {
	ten, ok := s.requestTenant(w, r)
	if !ok {
		return
	}
	metric := r.PathValue("metric")
	labels, found := s.track.Labels(ten, metric)
	if !found {
		writeError(w, http.StatusNotFound, "not_found", "tenant "+strconv.Quote(ten)+" has no series of metric "+strconv.Quote(metric)+" in the partitions this worker owns")
		return
	}
	_, active := s.track.Active(ten, metric)
	resp := labelsResponse{
		Tenant: ten, Metric: metric,
		ActiveSeries:    active + s.remote.MetricActive(ten, metric),
		Limit:           s.pipes.Set().For(ten).Budget.MetricLimit(metric),
		PartitionsOwned: s.owned.count(ten),
		Partitions:      s.cfg.Kafka.Partitions,
		Labels:          make([]labelSummary, 0, len(labels)),
	}
	for _, l := range labels {
		resp.Labels = append(resp.Labels, labelSummary{Label: l.Name, DistinctValues: l.DistinctValues, AtLeast: l.AtLeast})
	}
	writeData(w, resp)
}
