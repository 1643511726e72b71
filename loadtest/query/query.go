// Package query reads from a target over HTTP: the Prometheus query API
// (instant queries returning vectors or matrices) and the Prometheus text
// exposition of /metrics. It is all the harness needs to check a target, so
// it is deliberately small and speaks only what every Prometheus-compatible
// server answers.
package query

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Client queries one target.
type Client struct {
	// BaseURL is the target's base URL; /api/v1/query is appended.
	BaseURL string
	// Header is sent with every request (the tenant, read consistency).
	Header http.Header
	HTTP   *http.Client
}

// Series is one series of a result: its labels and, for a vector, its
// value; for a matrix, its samples.
type Series struct {
	Labels  map[string]string
	Value   float64
	Samples []Sample
}

// Sample is one point of a matrix.
type Sample struct {
	T int64 // Unix milliseconds
	V float64
}

// Instant evaluates q at t and returns the vector or matrix it yields.
func (c *Client) Instant(ctx context.Context, q string, t time.Time) ([]Series, error) {
	form := url.Values{}
	form.Set("query", q)
	form.Set("time", formatTime(t))
	// VictoriaMetrics would otherwise answer from its rollup cache.
	form.Set("nocache", "1")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.BaseURL, "/")+"/api/v1/query", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	for k, vs := range c.Header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", q, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("query %s: reading the answer: %w", q, err)
	}
	var r struct {
		Status    string `json:"status"`
		Error     string `json:"error"`
		ErrorType string `json:"errorType"`
		Data      struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
				Values [][]any           `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("query %s: status %d, answer is not Prometheus API JSON: %.200q", q, resp.StatusCode, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: status %d: %s: %s", q, resp.StatusCode, r.ErrorType, r.Error)
	}
	out := make([]Series, 0, len(r.Data.Result))
	for _, s := range r.Data.Result {
		ser := Series{Labels: s.Metric}
		switch r.Data.ResultType {
		case "vector":
			_, v, err := parsePoint(s.Value)
			if err != nil {
				return nil, fmt.Errorf("query %s: %w", q, err)
			}
			ser.Value = v
		case "matrix":
			ser.Samples = make([]Sample, 0, len(s.Values))
			for _, p := range s.Values {
				t, v, err := parsePoint(p)
				if err != nil {
					return nil, fmt.Errorf("query %s: %w", q, err)
				}
				ser.Samples = append(ser.Samples, Sample{t, v})
			}
		default:
			return nil, fmt.Errorf("query %s: unexpected result type %q", q, r.Data.ResultType)
		}
		out = append(out, ser)
	}
	return out, nil
}

func (c *Client) client() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

// parsePoint reads [<unix seconds>, "<value>"].
func parsePoint(p []any) (int64, float64, error) {
	if len(p) != 2 {
		return 0, 0, fmt.Errorf("malformed point %v", p)
	}
	var ts float64
	switch t := p[0].(type) {
	case float64:
		ts = t
	case json.Number:
		ts, _ = t.Float64()
	default:
		return 0, 0, fmt.Errorf("malformed timestamp %v", p[0])
	}
	s, ok := p[1].(string)
	if !ok {
		return 0, 0, fmt.Errorf("malformed value %v", p[1])
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("malformed value %q", s)
	}
	return int64(math.Round(ts * 1000)), v, nil
}

func formatTime(t time.Time) string {
	ms := t.UnixMilli()
	return strconv.FormatInt(ms/1000, 10) + "." + fmt.Sprintf("%03d", ms%1000)
}

// Selector renders {name="value",...} with values quoted for PromQL.
func Selector(matchers ...string) string { return "{" + strings.Join(matchers, ",") + "}" }

// Eq is a name="value" matcher.
func Eq(name, value string) string { return name + "=" + strconv.Quote(value) }

// Re is a name=~"regex" matcher.
func Re(name, regex string) string { return name + "=~" + strconv.Quote(regex) }

// Families scrapes a /metrics endpoint (Prometheus text format).
func Families(ctx context.Context, hc *http.Client, metricsURL string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", metricsURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: status %d", metricsURL, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing the metrics of %s: %w", metricsURL, err)
	}
	return fams, nil
}

// CounterValues returns the values of a counter or gauge family by their
// label sets rendered as sorted name="value" lists, or nil if absent.
func CounterValues(fams map[string]*dto.MetricFamily, name string, where map[string]string) map[string]float64 {
	f := fams[name]
	if f == nil {
		return nil
	}
	out := map[string]float64{}
next:
	for _, m := range f.GetMetric() {
		var parts []string
		for _, lp := range m.GetLabel() {
			if w, ok := where[lp.GetName()]; ok && w != lp.GetValue() {
				continue next
			}
			parts = append(parts, lp.GetName()+"="+strconv.Quote(lp.GetValue()))
		}
		sort.Strings(parts)
		v := m.GetCounter().GetValue()
		if m.GetGauge() != nil {
			v = m.GetGauge().GetValue()
		}
		if m.GetUntyped() != nil {
			v = m.GetUntyped().GetValue()
		}
		out[strings.Join(parts, ",")] += v
	}
	return out
}
