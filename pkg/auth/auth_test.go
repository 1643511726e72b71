package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"
)

func init() {
	// Fast hashes: the tests check behaviour, not bcrypt's cost.
	bcryptCost = bcrypt.MinCost
}

func request(target string, headers ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, target, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	return r
}

func basic(user, pass string) string {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(user, pass)
	return r.Header.Get("Authorization")
}

func status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

func TestAuthOff(t *testing.T) {
	a, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Enabled() {
		t.Fatal("enabled without a tenants file")
	}
	for _, c := range []struct {
		r    *http.Request
		db   string
		want string
	}{
		{request("/api/v1/write", "X-Scope-OrgID", "team-a"), "", "team-a"},
		{request("/api/v1/write"), "", "anonymous"},
		{request("/write?db=telegraf"), "telegraf", "telegraf"},
		{request("/write", "X-Scope-OrgID", "team-a"), "telegraf", "team-a"},
		// Credentials are ignored when authentication is off.
		{request("/api/v1/write", "Authorization", "Bearer whatever"), "", "anonymous"},
	} {
		got, err := a.InfluxTenant(c.r, c.db)
		if err != nil || got != c.want {
			t.Errorf("%s %v db=%q: got %q %v, want %q", c.r.URL, c.r.Header, c.db, got, err, c.want)
		}
	}
	if _, err := a.Tenant(request("/", "X-Scope-OrgID", "a.b")); status(err) != http.StatusBadRequest {
		t.Errorf("invalid tenant: %v", err)
	}
	if _, err := a.InfluxTenant(request("/write"), "my.db"); status(err) != http.StatusBadRequest {
		t.Errorf("invalid db as tenant: %v", err)
	}
}

type fixture struct {
	path string
	a    *Authenticator
	reg  *prometheus.Registry
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func setup(t *testing.T, content string) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	writeFile(t, path, content)
	reg := prometheus.NewRegistry()
	a, err := New(Options{TenantsFile: path, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{path: path, a: a, reg: reg}
}

func mustHashPassword(t *testing.T, p string) string {
	t.Helper()
	h, err := HashPassword(p)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestAuthOn(t *testing.T) {
	bc := mustHashPassword(t, "correct horse")
	f := setup(t, `
tenants:
  team-a:
    tokens:
      - `+HashToken("tok-a1")+`
      - `+HashToken("tok-a2")+`
    users:
      telegraf:
        - `+HashToken("pw-machine")+`
      alice:
        - `+bc+`
  team-b:
    tokens: [`+HashToken("tok-b")+`]
`)
	a := f.a
	if !a.Enabled() || strings.Join(a.Tenants(), ",") != "team-a,team-b" {
		t.Fatalf("enabled %v tenants %v", a.Enabled(), a.Tenants())
	}
	ok := []struct {
		name string
		r    *http.Request
		want string
	}{
		{"bearer", request("/", "Authorization", "Bearer tok-a1"), "team-a"},
		{"second token", request("/", "Authorization", "Bearer tok-a2"), "team-a"},
		{"influx token", request("/", "Authorization", "Token tok-b"), "team-b"},
		{"basic sha256", request("/", "Authorization", basic("telegraf", "pw-machine")), "team-a"},
		{"basic bcrypt", request("/", "Authorization", basic("alice", "correct horse")), "team-a"},
		{"basic bcrypt cached", request("/", "Authorization", basic("alice", "correct horse")), "team-a"},
		{"token as password", request("/", "Authorization", basic("anything", "tok-b")), "team-b"},
		{"Token user:password", request("/", "Authorization", "Token telegraf:pw-machine"), "team-a"},
		{"matching X-Scope-OrgID", request("/", "Authorization", "Bearer tok-b", "X-Scope-OrgID", "team-b"), "team-b"},
	}
	for _, c := range ok {
		got, err := a.Tenant(c.r)
		if err != nil || got != c.want {
			t.Errorf("%s: got %q %v, want %q", c.name, got, err, c.want)
		}
	}
	// u and p parameters count on the InfluxDB endpoints only.
	if got, err := a.InfluxTenant(request("/write?db=x&u=telegraf&p=pw-machine"), "x"); err != nil || got != "team-a" {
		t.Errorf("u/p: %q %v", got, err)
	}
	if _, err := a.Tenant(request("/api/v1/query?u=telegraf&p=pw-machine")); status(err) != 401 {
		t.Errorf("u/p on the query API: %v", err)
	}

	// Refusals: 401 with one message whatever was wrong, so they tell
	// nothing about which tenants, users or tokens exist.
	var invalidMsg string
	for _, c := range []struct {
		name   string
		r      *http.Request
		status int
		reason string
	}{
		{"none", request("/"), 401, ReasonMissing},
		{"unknown token", request("/", "Authorization", "Bearer nope"), 401, ReasonInvalid},
		{"empty bearer", request("/", "Authorization", "Bearer "), 401, ReasonInvalid},
		{"unknown user", request("/", "Authorization", basic("mallory", "x")), 401, ReasonInvalid},
		{"wrong password", request("/", "Authorization", basic("telegraf", "x")), 401, ReasonInvalid},
		{"wrong bcrypt password", request("/", "Authorization", basic("alice", "battery staple")), 401, ReasonInvalid},
		{"tenant name as user", request("/", "Authorization", basic("team-a", "x")), 401, ReasonInvalid},
		{"unknown scheme", request("/", "Authorization", "Digest x"), 401, ReasonInvalid},
		{"other tenant in X-Scope-OrgID", request("/", "Authorization", "Bearer tok-a1", "X-Scope-OrgID", "team-b"), 403, ReasonMismatch},
		{"unknown tenant in X-Scope-OrgID", request("/", "Authorization", "Bearer tok-a1", "X-Scope-OrgID", "team-z"), 403, ReasonMismatch},
		{"X-Scope-OrgID without credentials", request("/", "X-Scope-OrgID", "team-a"), 401, ReasonMissing},
	} {
		_, err := a.Tenant(c.r)
		var e *Error
		if !errors.As(err, &e) || e.Status != c.status || e.Reason != c.reason {
			t.Errorf("%s: got %v, want %d %s", c.name, err, c.status, c.reason)
			continue
		}
		if e.Reason == ReasonInvalid {
			if invalidMsg == "" {
				invalidMsg = e.Msg
			} else if e.Msg != invalidMsg {
				t.Errorf("%s: message %q differs from %q", c.name, e.Msg, invalidMsg)
			}
		}
		if strings.Contains(e.Msg, "team-") || strings.Contains(e.Msg, "telegraf") || strings.Contains(e.Msg, "alice") {
			t.Errorf("%s: message %q names a tenant or user", c.name, e.Msg)
		}
	}
	if v := testutil.ToFloat64(a.refused.WithLabelValues(ReasonInvalid)); v != 7 {
		t.Errorf("refused{invalid_credentials} = %v, want 7", v)
	}
}

// TestRotation rolls a token and a password over without a restart: both
// old and new work while the file lists both, only the new one after the
// old is removed, and a broken file changes nothing.
func TestRotation(t *testing.T) {
	bcOld := mustHashPassword(t, "old password")
	f := setup(t, "tenants:\n  team-a:\n    tokens: ["+HashToken("old")+"]\n    users:\n      bob: ['"+bcOld+"']\n")
	a := f.a
	tenantOf := func(r *http.Request) string {
		id, err := a.Tenant(r)
		if err != nil {
			return "refused: " + err.Error()
		}
		return id
	}
	if got := tenantOf(request("/", "Authorization", basic("bob", "old password"))); got != "team-a" {
		t.Fatalf("old password: %s", got)
	}
	writeFile(t, f.path, "tenants:\n  team-a:\n    tokens: ["+HashToken("old")+", "+HashToken("new")+"]\n    users:\n      bob: ['"+bcOld+"', "+HashToken("new password")+"]\n")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, cred := range []string{"Bearer old", "Bearer new", basic("bob", "old password"), basic("bob", "new password")} {
		if got := tenantOf(request("/", "Authorization", cred)); got != "team-a" {
			t.Errorf("during rotation, %s: %s", cred, got)
		}
	}
	writeFile(t, f.path, "tenants:\n  team-a:\n    tokens: ["+HashToken("new")+"]\n    users:\n      bob: ["+HashToken("new password")+"]\n")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := tenantOf(request("/", "Authorization", "Bearer old")); got == "team-a" {
		t.Error("removed token still works")
	}
	// The old bcrypt password was verified (and cached) before: the reload
	// must forget that.
	if got := tenantOf(request("/", "Authorization", basic("bob", "old password"))); got == "team-a" {
		t.Error("removed password still works")
	}
	if got := tenantOf(request("/", "Authorization", "Bearer new")); got != "team-a" {
		t.Errorf("new token: %s", got)
	}

	// A broken file is refused; the last good one stays in force.
	for _, bad := range []struct{ content, msg string }{
		{"tenants:\n  team-a:\n    tokens: [new-token-in-clear]\n", "store hashes"},
		{"tenants:\n  team-a:\n    tokens: [" + HashToken("x") + "]\n  team-b:\n    tokens: [" + HashToken("x") + "]\n", "also a token of tenant team-a"},
		{"tenants:\n  team-a:\n    users: {u: [" + HashToken("x") + "]}\n  team-b:\n    users: {u: [" + HashToken("y") + "]}\n", "user names must be unique"},
		{"tenants:\n  team.a:\n    tokens: []\n", "tenant ID"},
		{"tenants:\n  team-a:\n    tokenz: []\n", "tokenz"},
		{"tenants:\n  team-a:\n    tokens: ['" + bcOld + "']\n", "tokens must be sha256"},
		{"", "empty"},
		{"tenants: [", "tenants file"},
	} {
		writeFile(t, f.path, bad.content)
		err := a.Reload()
		if err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("file %q: want an error mentioning %q, got %v", bad.content, bad.msg, err)
		}
		if strings.Contains(fmtErr(err), "new-token-in-clear") {
			t.Errorf("error echoes a secret: %v", err)
		}
		if got := tenantOf(request("/", "Authorization", "Bearer new")); got != "team-a" {
			t.Fatalf("after a refused file, the last good one is not in force: %s", got)
		}
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestBadFileAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	writeFile(t, path, "tenants:\n  a:\n    tokens: [secret]\n")
	if _, err := New(Options{TenantsFile: path}); err == nil {
		t.Fatal("started with a bad tenants file")
	}
	if _, err := New(Options{TenantsFile: path + ".missing"}); err == nil {
		t.Fatal("started without the tenants file")
	}
}

func TestNewToken(t *testing.T) {
	a, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewToken()
	if a == b || !strings.HasPrefix(a, TokenPrefix) || len(a) < 40 {
		t.Fatalf("tokens %q %q", a, b)
	}
	if h := HashToken("x"); h != "sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881" {
		t.Fatalf("HashToken(x) = %s", h)
	}
}
