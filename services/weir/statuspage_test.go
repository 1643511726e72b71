package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"

	"github.com/weir-metrics/weir/internal/weirtest"
)

var (
	chromiumOnce sync.Once
	chromiumPath string
	chromiumErr  error
)

// chromium returns Debian's headless Chromium, installing it with apt-get
// when it is missing and the tests run as root (as on CI, where .ci/run
// installs it first).
func chromium(t *testing.T) string {
	t.Helper()
	chromiumOnce.Do(func() {
		if p, err := exec.LookPath("chromium"); err == nil {
			chromiumPath = p
			return
		}
		if os.Geteuid() != 0 {
			chromiumErr = fmt.Errorf("chromium is not installed: apt-get install chromium (.ci/run does)")
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		install := func() error {
			cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "--no-install-recommends", "chromium")
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			out, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("apt-get install chromium: %v\n%s", err, out)
			}
			return nil
		}
		if err := install(); err != nil {
			if out, uerr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); uerr != nil {
				chromiumErr = fmt.Errorf("apt-get update: %v\n%s", uerr, out)
				return
			}
			if err := install(); err != nil {
				chromiumErr = err
				return
			}
		}
		chromiumPath, chromiumErr = exec.LookPath("chromium")
	})
	if chromiumErr != nil {
		t.Fatal(chromiumErr)
	}
	return chromiumPath
}

// renderedDOM loads url in headless Chromium and returns the DOM it
// rendered. The flags keep Chromium off the network (this machine has
// none) and out of any profile but a fresh one.
func renderedDOM(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium(t),
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--dump-dom", url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom %s: %v\n%s", url, err, stderr.String())
	}
	return string(out)
}

// section returns the element with the given id, up to its closing tag.
func section(t *testing.T, dom, id string) string {
	t.Helper()
	start := strings.Index(dom, `<section id="`+id+`"`)
	if start < 0 {
		t.Fatalf("the page has no section %q:\n%s", id, dom)
	}
	end := strings.Index(dom[start:], "</section>")
	if end < 0 {
		t.Fatalf("section %q is not closed", id)
	}
	return dom[start : start+end]
}

// TestStatusPageInBrowser writes to a tenant of an all-in-one weir — a
// metric whose request_id label has a value per series — and checks, in
// a real browser, that the status page shows the tenant with its ingest
// and budget, the explorer names request_id as the exploding label, and
// the lag per stage and the build are there.
func TestStatusPageInBrowser(t *testing.T) {
	chromium(t) // install first: it may take a while
	dir := t.TempDir()
	pipelines := filepath.Join(dir, "pipelines")
	if err := os.MkdirAll(pipelines, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pipelines, "default.yaml"), []byte("budget:\n  max_series: 10000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WEIR_STREAM_PIPELINES_DIR", pipelines)
	p := weirtest.Start(t, "all", append([]string{"all"}, embeddedArgs(t, dir)...)...)
	p.WaitReady(30 * time.Second)

	const tenant, series = "browser-test", 300
	now := time.Now().UnixMilli()
	req := &prompb.WriteRequest{}
	for i := 0; i < series; i++ {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
			Labels: []prompb.Label{
				{Name: "__name__", Value: "checkout_requests_total"},
				{Name: "method", Value: []string{"GET", "POST", "PUT"}[i%3]},
				{Name: "request_id", Value: fmt.Sprintf("req-%05d", i)},
			},
			Samples: []prompb.Sample{{Value: float64(i), Timestamp: now}},
		})
	}
	if err := weirtest.MustWrite(weirtest.WriteV1(p.URL(), tenant, req)); err != nil {
		t.Fatal(err)
	}
	// The stream worker tracks the series once it consumed them.
	weirtest.Eventually(t, 30*time.Second, func() error {
		body, err := weirtest.Get(p.URL()+"/api/v1/cardinality/metrics/checkout_requests_total/labels", tenant)
		if err != nil {
			return err
		}
		var resp struct {
			Data struct {
				Labels []struct {
					Label          string `json:"label"`
					DistinctValues int    `json:"distinct_values"`
				} `json:"labels"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &resp); err != nil {
			return err
		}
		for _, l := range resp.Data.Labels {
			if l.Label == "request_id" && l.DistinctValues == series {
				return nil
			}
		}
		return fmt.Errorf("explorer: %s", body)
	})

	dom := renderedDOM(t, p.URL()+"/?refresh=0")

	tenants := section(t, dom, "tenants")
	row := regexp.MustCompile(`(?s)<tr data-tenant="` + tenant + `">(.*?)</tr>`).FindStringSubmatch(tenants)
	if row == nil {
		t.Fatalf("the tenants table does not show %s:\n%s", tenant, tenants)
	}
	cells := regexp.MustCompile(`(?s)<td[^>]*>(.*?)</td>`).FindAllStringSubmatch(row[1], -1)
	text := func(i int) string {
		return strings.TrimSpace(regexp.MustCompile(`<[^>]+>`).ReplaceAllString(cells[i][1], ""))
	}
	// tenant, ingest, prw1, refused, dropped, stored, active, budget, usage
	if len(cells) != 9 {
		t.Fatalf("tenant row has %d cells: %s", len(cells), row[1])
	}
	if text(6) != "300" || text(7) != "10.0k" || !strings.HasPrefix(text(8), "3.0 %") {
		t.Errorf("active series %q, budget %q, usage %q; want 300, 10.0k, 3.0 %%", text(6), text(7), text(8))
	}
	if ingest := text(1); ingest == "0" || ingest == "…" {
		t.Errorf("ingest rate %q right after a write of %d samples", ingest, series)
	}

	explorer := section(t, dom, "explorer")
	if !strings.Contains(explorer, `data-tenant="`+tenant+`"`) || !strings.Contains(explorer, `data-metric="checkout_requests_total"`) {
		t.Fatalf("the explorer does not show the tenant's metric:\n%s", explorer)
	}
	exploding := regexp.MustCompile(`<span class="tag exploding" data-label="([^"]+)"`).FindAllStringSubmatch(explorer, -1)
	if len(exploding) != 1 || exploding[0][1] != "request_id" {
		t.Errorf("exploding labels %v, want request_id alone:\n%s", exploding, explorer)
	}
	if !strings.Contains(explorer, `data-label="method"`) {
		t.Errorf("the explorer does not list method:\n%s", explorer)
	}

	lag := section(t, dom, "lag")
	for _, stage := range []string{"stream", "sink"} {
		if !regexp.MustCompile(`<td>` + stage + `</td><td>` + tenant + `</td>`).MatchString(lag) {
			t.Errorf("no lag of stage %s for %s:\n%s", stage, tenant, lag)
		}
	}
	if !strings.Contains(dom, `version <b>`+version+`</b>`) || !strings.Contains(dom, "targets: edge, stream") {
		t.Errorf("build or targets missing from the header:\n%.600s", dom)
	}
}
