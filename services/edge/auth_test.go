package edge

import (
	"strings"
	"testing"

	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/auth"
	"github.com/weir-metrics/weir/pkg/config"
)

// TestWriteAuthentication writes with credentials of two tenants: each
// write lands in its credential's tenant only, refusals say nothing about
// which tenants exist, and rotating a token needs no restart.
func TestWriteAuthentication(t *testing.T) {
	tenants := tenantsFile(t)
	te := startEdge(t, func(c *config.Config) { c.Auth.TenantsFile = tenants })
	body := marshalV1(t, validV1())
	rw := func(extra map[string]string) response {
		h := map[string]string{"Content-Type": weirtest.ContentTypeV1, "Content-Encoding": "snappy"}
		for k, v := range extra {
			h[k] = v
		}
		return do(t, "POST", te.srv.URL+"/api/v1/write", body, h)
	}
	if r := rw(map[string]string{"Authorization": "Bearer tok-a"}); r.status != 204 {
		t.Fatalf("team-a token: %d %s", r.status, r.body)
	}
	if r := rw(map[string]string{"Authorization": "Bearer tok-b", "X-Scope-OrgID": "team-b"}); r.status != 204 {
		t.Fatalf("team-b token with its own X-Scope-OrgID: %d %s", r.status, r.body)
	}
	if a, b := te.rawRecords(t, "team-a"), te.rawRecords(t, "team-b"); a != 1 || b != 1 {
		t.Fatalf("records: team-a %d, team-b %d; want 1 each", a, b)
	}

	var messages []string
	for _, c := range []struct {
		name   string
		h      map[string]string
		status int
	}{
		{"no credentials", nil, 401},
		{"X-Scope-OrgID alone", map[string]string{"X-Scope-OrgID": "team-a"}, 401},
		{"unknown token", map[string]string{"Authorization": "Bearer tok-z"}, 401},
		{"wrong password", map[string]string{"Authorization": telegrafV1Headers("telegraf", "x")["Authorization"]}, 401},
		{"unknown user", map[string]string{"Authorization": telegrafV1Headers("nobody", "x")["Authorization"]}, 401},
		{"another tenant's X-Scope-OrgID", map[string]string{"Authorization": "Bearer tok-a", "X-Scope-OrgID": "team-b"}, 403},
		{"an unknown tenant's X-Scope-OrgID", map[string]string{"Authorization": "Bearer tok-a", "X-Scope-OrgID": "team-z"}, 403},
	} {
		r := rw(c.h)
		if r.status != c.status {
			t.Fatalf("%s: %d %s, want %d", c.name, r.status, r.body, c.status)
		}
		if c.status == 401 && len(r.header.Values("WWW-Authenticate")) == 0 {
			t.Fatalf("%s: 401 without WWW-Authenticate", c.name)
		}
		if strings.Contains(r.body, "team-") {
			t.Fatalf("%s: answer %q names a tenant", c.name, r.body)
		}
		if c.status == 401 && c.name != "no credentials" && c.name != "X-Scope-OrgID alone" {
			messages = append(messages, r.body)
		}
	}
	for _, m := range messages[1:] {
		if m != messages[0] {
			t.Fatalf("401 answers differ: %q vs %q", m, messages[0])
		}
	}
	if a, b := te.rawRecords(t, "team-a"), te.rawRecords(t, "team-b"); a != 1 || b != 1 {
		t.Fatalf("refused writes reached Kafka: team-a %d, team-b %d", a, b)
	}
	if v := te.refused("", auth.ReasonMismatch); v != 2 {
		t.Fatalf("tenant_mismatch refusals %v", v)
	}

	// Rotate team-a's token: both work while the file lists both, only the
	// new one after the old one is removed. No restart.
	writeFile(t, tenants, "tenants:\n  team-a:\n    tokens: ["+auth.HashToken("tok-a")+", "+auth.HashToken("tok-a-2")+"]\n")
	if err := te.auth.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"tok-a", "tok-a-2"} {
		if r := rw(map[string]string{"Authorization": "Bearer " + tok}); r.status != 204 {
			t.Fatalf("during rotation, %s: %d %s", tok, r.status, r.body)
		}
	}
	writeFile(t, tenants, "tenants:\n  team-a:\n    tokens: ["+auth.HashToken("tok-a-2")+"]\n")
	if err := te.auth.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := rw(map[string]string{"Authorization": "Bearer tok-a"}); r.status != 401 {
		t.Fatalf("removed token: %d", r.status)
	}
	if r := rw(map[string]string{"Authorization": "Bearer tok-b"}); r.status != 401 {
		t.Fatalf("token of a removed tenant: %d", r.status)
	}
	if r := rw(map[string]string{"Authorization": "Bearer tok-a-2"}); r.status != 204 {
		t.Fatalf("new token: %d %s", r.status, r.body)
	}
	// A broken file leaves the last good one in force.
	writeFile(t, tenants, "tenants:\n  team-a:\n    tokens: [tok-a-3]\n")
	if err := te.auth.Reload(); err == nil {
		t.Fatal("a tenants file with a secret in clear was accepted")
	}
	if r := rw(map[string]string{"Authorization": "Bearer tok-a-2"}); r.status != 204 {
		t.Fatalf("after a refused file: %d %s", r.status, r.body)
	}
}
