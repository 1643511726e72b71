package auth

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzTenantsFile feeds arbitrary tenants files to the loader: it never
// panics, and a file it accepts names only valid tenants, holds no secret
// in clear, and maps every token to one of its tenants.
func FuzzTenantsFile(f *testing.F) {
	f.Add([]byte("tenants:\n  team-a:\n    tokens: [" + HashToken("tok-a") + "]\n    users:\n      telegraf: [" + HashToken("pw") + "]\n"))
	f.Add([]byte("tenants:\n  team-a:\n    tokens: [tok-in-clear]\n"))
	f.Add([]byte("tenants:\n  a.b:\n    users:\n      'x:y': ['$2b$04$abcdefghijklmnopqrstuu5zhq3yNLG1DZ8vL3OYG1IkHEUKhQmPu']\n"))
	f.Add([]byte("tenants: {}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := parse(data)
		if err != nil {
			return
		}
		for id := range tab.tenants {
			if !validTenant(id) {
				t.Fatalf("accepted tenant %q", id)
			}
		}
		for _, id := range tab.tokens {
			if _, ok := tab.tenants[id]; !ok {
				t.Fatalf("token of unknown tenant %q", id)
			}
		}
		for name, u := range tab.users {
			if name == "" || strings.Contains(name, ":") || len(u.secrets) == 0 {
				t.Fatalf("accepted user %q with %d secrets", name, len(u.secrets))
			}
			if _, ok := tab.tenants[u.tenant]; !ok {
				t.Fatalf("user %q of unknown tenant %q", name, u.tenant)
			}
		}
	})
}

// FuzzCredentials sends arbitrary Authorization, X-Scope-OrgID and
// InfluxDB u/p values against a fixed tenants file: resolving never
// panics, and a request is given a tenant only with one of that tenant's
// own credentials and no X-Scope-OrgID naming another.
func FuzzCredentials(f *testing.F) {
	a, err := New(Options{})
	if err != nil {
		f.Fatal(err)
	}
	if err := a.Load([]byte("tenants:\n  team-a:\n    tokens: [" + HashToken("tok-a") + "]\n  team-b:\n    users:\n      telegraf: [" + HashToken("pw-b") + "]\n")); err != nil {
		f.Fatal(err)
	}
	f.Add("Bearer tok-a", "", "", "", false)
	f.Add("Bearer tok-a", "team-b", "", "", false)
	f.Add("Token telegraf:pw-b", "", "", "", true)
	f.Add("Basic dGVsZWdyYWY6cHctYg==", "team-b", "", "", false)
	f.Add("", "team-a", "telegraf", "pw-b", true)
	f.Add("Basic !!!", "", "", "", false)
	f.Add("bearer  tok-a ", "", "", "", false)
	f.Fuzz(func(t *testing.T, authz, orgID, u, p string, influx bool) {
		r, err := http.NewRequest(http.MethodPost, "http://weir/write", nil)
		if err != nil {
			return
		}
		q := r.URL.Query()
		if u != "" {
			q.Set("u", u)
		}
		if p != "" {
			q.Set("p", p)
		}
		r.URL.RawQuery = q.Encode()
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		if orgID != "" {
			r.Header.Set("X-Scope-OrgID", orgID)
		}
		var ten string
		if influx {
			ten, err = a.InfluxTenant(r, "db")
		} else {
			ten, err = a.Tenant(r)
		}
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("refusal is not an *auth.Error: %T %v", err, err)
			}
			return
		}
		if r.Header.Get("X-Scope-OrgID") != "" && r.Header.Get("X-Scope-OrgID") != ten {
			t.Fatalf("X-Scope-OrgID %q answered as tenant %q", orgID, ten)
		}
		secret, known := map[string]string{"team-a": "tok-a", "team-b": "pw-b"}[ten]
		if !known {
			t.Fatalf("resolved unknown tenant %q", ten)
		}
		_, pass, basic := r.BasicAuth()
		sent := r.Header.Get("Authorization")
		if !strings.Contains(sent, secret) && !(basic && pass == secret) && !(influx && sent == "" && p == secret) {
			t.Fatalf("tenant %q granted without its credential: Authorization %q u %q p %q", ten, sent, u, p)
		}
	})
}

func validTenant(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
