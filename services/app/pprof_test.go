package app

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/weir-metrics/weir/pkg/config"
)

// TestPprofOnlyWhenAskedFor: /debug/pprof/ answers 404 by default and
// serves real profiles with http.pprof set.
func TestPprofOnlyWhenAskedFor(t *testing.T) {
	_, off := startProcess(t, nil)
	resp, err := http.Get("http://" + off + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/debug/pprof/ answered %d with http.pprof off", resp.StatusCode)
	}

	_, on := startProcess(t, func(c *config.Config) { c.HTTP.Pprof = true })
	resp, err = http.Get("http://" + on + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "heap profile") {
		t.Fatalf("heap profile: %d %.200s", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + on + "/debug/pprof/profile?seconds=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Fatalf("CPU profile: %d, %d bytes", resp.StatusCode, len(body))
	}
}
