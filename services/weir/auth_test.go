package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/weir-metrics/weir/pkg/auth"
)

func runWeirStdin(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := rootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestAuthCommands makes credentials with `weir auth` and checks that a
// tenants file made of their hashes accepts them.
func TestAuthCommands(t *testing.T) {
	out, err := runWeirStdin(t, "", "auth", "token")
	if err != nil {
		t.Fatal(err)
	}
	var token, hash string
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "token: "); ok {
			token = v
		}
		if v, ok := strings.CutPrefix(line, "hash:  "); ok {
			hash = v
		}
	}
	if !strings.HasPrefix(token, auth.TokenPrefix) || hash != auth.HashToken(token) {
		t.Fatalf("weir auth token printed %q", out)
	}
	sha, err := runWeirStdin(t, "machine-password\n", "auth", "hash")
	if err != nil || strings.TrimSpace(sha) != auth.HashToken("machine-password") {
		t.Fatalf("weir auth hash: %q %v", sha, err)
	}
	bc, err := runWeirStdin(t, "correct horse\n", "auth", "hash", "--bcrypt")
	if err != nil || bcrypt.CompareHashAndPassword([]byte(strings.TrimSpace(bc)), []byte("correct horse")) != nil {
		t.Fatalf("weir auth hash --bcrypt: %q %v", bc, err)
	}
	if _, err := runWeirStdin(t, "", "auth", "hash"); err == nil {
		t.Fatal("weir auth hash accepted an empty secret")
	}

	file := filepath.Join(t.TempDir(), "tenants.yaml")
	content := "tenants:\n  team-a:\n    tokens: [" + hash + "]\n    users:\n      telegraf: [" + strings.TrimSpace(sha) + ", '" + strings.TrimSpace(bc) + "']\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Options{TenantsFile: file})
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range []func(r *http.Request){
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) },
		func(r *http.Request) { r.SetBasicAuth("telegraf", "machine-password") },
		func(r *http.Request) { r.SetBasicAuth("telegraf", "correct horse") },
	} {
		r := httptest.NewRequest("POST", "/api/v1/write", nil)
		set(r)
		if ten, err := a.Tenant(r); err != nil || ten != "team-a" {
			t.Fatalf("credential made by weir auth: %q %v", ten, err)
		}
	}
}
