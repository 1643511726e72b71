package weirtest

import (
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
)

// Point is one sample as the query API returns it. For a histogram, Value
// is NaN-free zero and Histogram holds count and sum.
type Point struct {
	T         int64
	V         float64
	Histogram *HistogramPoint
}

// HistogramPoint is the part of a native histogram tests compare.
type HistogramPoint struct {
	Count, Sum float64
}

// Series is one series of a matrix result.
type Series struct {
	Labels map[string]string
	Points []Point
}

// Key renders the series' labels sorted, for maps and messages.
func (s Series) Key() string { return LabelsKey(s.Labels) }

// LabelsKey renders labels as a sorted selector.
func LabelsKey(ls map[string]string) string {
	names := make([]string, 0, len(ls))
	for n := range ls {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", n, ls[n])
	}
	b.WriteByte('}')
	return b.String()
}

// QueryRaw returns the raw samples of the series matching selector in the
// window ending at end, via an instant query of selector[window].
func QueryRaw(baseURL, tenant, selector string, window time.Duration, end time.Time) ([]Series, error) {
	return QueryRawWithHeaders(baseURL, tenant, selector, window, end, nil)
}

// QueryRawWithHeaders is QueryRaw with extra request headers.
func QueryRawWithHeaders(baseURL, tenant, selector string, window time.Duration, end time.Time, headers map[string]string) ([]Series, error) {
	q := url.Values{}
	q.Set("query", fmt.Sprintf("%s[%dms]", selector, window.Milliseconds()))
	q.Set("time", strconv.FormatFloat(float64(end.UnixMilli())/1000, 'f', 3, 64))
	body, err := GetWithHeaders(baseURL+"/api/v1/query?"+q.Encode(), tenant, headers)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric     map[string]string `json:"metric"`
				Values     [][2]any          `json:"values"`
				Histograms [][2]any          `json:"histograms"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", body, err)
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("query failed: %s", resp.Error)
	}
	var out []Series
	for _, r := range resp.Data.Result {
		s := Series{Labels: r.Metric}
		for _, v := range r.Values {
			ts, _ := v[0].(float64)
			val, err := strconv.ParseFloat(v[1].(string), 64)
			if err != nil {
				return nil, err
			}
			s.Points = append(s.Points, Point{T: int64(math.Round(ts * 1000)), V: val})
		}
		for _, h := range r.Histograms {
			ts, _ := h[0].(float64)
			m, _ := h[1].(map[string]any)
			cnt, _ := strconv.ParseFloat(fmt.Sprint(m["count"]), 64)
			sum, _ := strconv.ParseFloat(fmt.Sprint(m["sum"]), 64)
			s.Points = append(s.Points, Point{T: int64(math.Round(ts * 1000)), Histogram: &HistogramPoint{Count: cnt, Sum: sum}})
		}
		sort.Slice(s.Points, func(i, j int) bool { return s.Points[i].T < s.Points[j].T })
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out, nil
}

// Get fetches url for tenant ("" sends no X-Scope-OrgID) and returns the
// body of a 200 answer.
func Get(u, tenant string) ([]byte, error) { return GetWithHeaders(u, tenant, nil) }

// GetWithHeaders is Get with extra request headers.
func GetWithHeaders(u, tenant string, headers map[string]string) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, body)
	}
	return body, nil
}

// MetricValue reads one sample of a process' /metrics: the sum of every
// series of name whose labels include match.
func MetricValue(baseURL, name string, match map[string]string) (float64, error) {
	body, err := Get(baseURL+"/metrics", "")
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name) || len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ' {
			continue
		}
		ok := true
		for k, v := range match {
			if !strings.Contains(line, fmt.Sprintf("%s=%q", k, v)) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			// OpenMetrics lines may end with a timestamp or exemplar.
			v, err = strconv.ParseFloat(f[1], 64)
			if err != nil {
				continue
			}
		}
		sum += v
	}
	return sum, nil
}
