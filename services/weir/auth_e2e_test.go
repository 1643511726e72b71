package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/auth"
)

// query runs an instant query with the given headers and returns the
// status and the metric names of the result's series.
func query(t *testing.T, base, q string, at time.Time, headers map[string]string) (int, []string) {
	t.Helper()
	u := base + "/api/v1/query?" + url.Values{"query": {q}, "time": {strconv.FormatInt(at.Unix(), 10)}}.Encode()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("query answer %d %q: %v", resp.StatusCode, body, err)
	}
	var names []string
	for _, s := range r.Data.Result {
		names = append(names, s.Metric["__name__"])
	}
	return resp.StatusCode, names
}

// TestAuthenticationEndToEnd runs weir all-in-one with a tenants file:
// writes (remote-write and line protocol) and queries are bound to the
// credentials' tenant, one tenant never sees another's series, and a
// rotated token takes effect while weir runs.
func TestAuthenticationEndToEnd(t *testing.T) {
	dir := t.TempDir()
	tenants := filepath.Join(dir, "tenants.yaml")
	writeTenants := func(content string) {
		t.Helper()
		if err := os.WriteFile(tenants, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeTenants(fmt.Sprintf("tenants:\n  team-a:\n    tokens: [%s]\n  team-b:\n    users:\n      telegraf: [%s]\n",
		auth.HashToken("tok-a"), auth.HashToken("pw-b")))
	cfg := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(cfg, []byte("auth:\n  tenants_file: "+tenants+"\n  reload_interval: 100ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := weirtest.Start(t, "all", append([]string{"all", "--config=" + cfg}, embeddedArgs(t, filepath.Join(dir, "data"))...)...)
	p.WaitReady(30 * time.Second)

	now := time.Now().Truncate(time.Second)
	rw := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "secret_of_a"}, {Name: "job", Value: "e2e"}},
		Samples: []prompb.Sample{{Value: 1, Timestamp: now.Add(-time.Minute).UnixMilli()}},
	}}}
	b, _ := rw.Marshal()
	res, err := weirtest.PostRaw(p.URL()+"/api/v1/write", snappy.Encode(nil, b), map[string]string{
		"Content-Type": weirtest.ContentTypeV1, "Content-Encoding": "snappy", "Authorization": "Bearer tok-a",
	})
	if err := weirtest.MustWrite(res, err); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, p.URL()+"/write?db=telegraf",
		strings.NewReader(fmt.Sprintf("secret_of_b,job=e2e value=2 %d\n", now.Add(-time.Minute).UnixNano())))
	req.SetBasicAuth("telegraf", "pw-b")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("line protocol as team-b: %d", resp.StatusCode)
	}

	asA := map[string]string{"Authorization": "Bearer tok-a", "X-Read-Consistency": "strong"}
	asB := map[string]string{"Authorization": "Basic " + basicAuth("telegraf", "pw-b"), "X-Read-Consistency": "strong"}
	for _, c := range []struct {
		who     map[string]string
		want    string
		notWant string
	}{{asA, "secret_of_a", "secret_of_b"}, {asB, "secret_of_b", "secret_of_a"}} {
		weirtest.Eventually(t, 30*time.Second, func() error {
			status, names := query(t, p.URL(), `{job="e2e"}`, now, c.who)
			if status != 200 || len(names) != 1 || names[0] != c.want {
				return fmt.Errorf("query as %v: %d %v, want only %s", c.who["Authorization"], status, names, c.want)
			}
			return nil
		})
	}
	for _, c := range []struct {
		name    string
		headers map[string]string
		status  int
	}{
		{"no credentials", nil, 401},
		{"X-Scope-OrgID alone", map[string]string{"X-Scope-OrgID": "team-a"}, 401},
		{"wrong token", map[string]string{"Authorization": "Bearer tok-x"}, 401},
		{"another tenant's X-Scope-OrgID", map[string]string{"Authorization": "Bearer tok-a", "X-Scope-OrgID": "team-b"}, 403},
	} {
		if status, names := query(t, p.URL(), `{job="e2e"}`, now, c.headers); status != c.status || len(names) != 0 {
			t.Fatalf("%s: %d %v, want %d and no data", c.name, status, names, c.status)
		}
	}

	// The cardinality explorer follows the same rules.
	explore := func(path string, headers map[string]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, p.URL()+path, nil)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if status, _ := explore("/api/v1/cardinality/metrics", map[string]string{"X-Scope-OrgID": "team-a"}); status != 401 {
		t.Fatalf("explorer without credentials: %d, want 401", status)
	}
	weirtest.Eventually(t, 30*time.Second, func() error {
		status, body := explore("/api/v1/cardinality/metrics", asA)
		if status != 200 || !strings.Contains(body, "secret_of_a") || strings.Contains(body, "secret_of_b") {
			return fmt.Errorf("explorer as team-a: %d %s", status, body)
		}
		return nil
	})
	if status, body := explore("/api/v1/cardinality/tenants", asA); status != 200 || strings.Contains(body, "team-b") || !strings.Contains(body, "team-a") {
		t.Fatalf("tenant list as team-a: %d %s", status, body)
	}

	// The status page needs no credentials: with authentication on it
	// says why it shows no explorer, and names no tenant's metrics.
	for _, path := range []string{"/", "/?format=json"} {
		status, body := explore(path, nil)
		if status != 200 || !strings.Contains(body, "Authentication is on") || strings.Contains(body, "secret_of_") || strings.Contains(body, "cardinality explorer: GET") {
			t.Fatalf("status page %s with authentication on: %d %s", path, status, body)
		}
	}

	// Rotate team-a's token while weir runs.
	writeTenants(fmt.Sprintf("tenants:\n  team-a:\n    tokens: [%s]\n", auth.HashToken("tok-a-2")))
	weirtest.Eventually(t, 10*time.Second, func() error {
		if status, _ := query(t, p.URL(), `{job="e2e"}`, now, map[string]string{"Authorization": "Bearer tok-a"}); status != 401 {
			return fmt.Errorf("old token still answered %d", status)
		}
		if status, names := query(t, p.URL(), `{job="e2e"}`, now, map[string]string{"Authorization": "Bearer tok-a-2"}); status != 200 || len(names) != 1 {
			return fmt.Errorf("new token: %d %v", status, names)
		}
		return nil
	})
	// A broken file is refused: the last good one stays, and the reload
	// metric says so.
	writeTenants("tenants:\n  team-a:\n    tokens: [tok-a-3]\n")
	weirtest.Eventually(t, 10*time.Second, func() error {
		v, err := weirtest.MetricValue(p.URL(), "weir_config_file_last_reload_successful", map[string]string{"file": "tenants"})
		if err != nil || v != 0 {
			return fmt.Errorf("last_reload_successful %v %v", v, err)
		}
		return nil
	})
	if status, _ := query(t, p.URL(), `{job="e2e"}`, now, map[string]string{"Authorization": "Bearer tok-a-2"}); status != 200 {
		t.Fatalf("after a broken tenants file the last good one is not in force: %d", status)
	}
}

func basicAuth(user, pass string) string {
	r, _ := http.NewRequest(http.MethodGet, "http://x", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}
