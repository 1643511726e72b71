package reliability

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/weir-metrics/weir/internal/weirtest"
	"github.com/weir-metrics/weir/pkg/auth"
)

// TestHostileCredentials — scenario: all-in-one weir with a tenants file
// (team-a: a token; team-b: a token and a user), each tenant holding one
// secret series. Every write endpoint (remote-write, InfluxDB 1 and 2) and
// every query and explorer endpoint (query and query_range in GET and
// POST, series, labels, label values, exemplars, the cardinality
// explorer's tenants, metrics and labels) is called with missing,
// malformed and wrong credentials, with X-Scope-OrgID alone, with
// another tenant's X-Scope-OrgID next to valid credentials, with two
// X-Scope-OrgID headers and with a federated "a|b" one. Duration: a few
// seconds. Checks: every such request is refused with 400, 401 or 403 and
// its answer names no tenant and holds no tenant's data; no refused write
// is stored in any tenant; and, read with its own credentials, each tenant
// sees its own secret through every endpoint and never the other's —
// which shows the endpoints do return data, so the refusals above are
// not just empty answers.
func TestHostileCredentials(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tenants := writeFile(t, filepath.Join(dir, "tenants.yaml"), fmt.Sprintf("tenants:\n  team-a:\n    tokens: [%s]\n  team-b:\n    tokens: [%s]\n    users:\n      telegraf: [%s]\n",
		auth.HashToken("tok-a"), auth.HashToken("tok-b"), auth.HashToken("pw-b")))
	all := startAllInOne(t, "auth:\n  tenants_file: "+tenants+"\n")
	asA := map[string]string{"Authorization": "Bearer tok-a"}
	asB := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("telegraf:pw-b"))}
	now := time.Now()
	for who, h := range map[string]map[string]string{"secret_of_a": asA, "secret_of_b": asB} {
		st, body := call(t, http.MethodPost, all.URL()+"/api/v1/write", rwBody(t, who, now), with(h, rwHeaders))
		if st != 204 {
			t.Fatalf("writing %s: %d %s", who, st, body)
		}
	}

	ts := strconv.FormatInt(now.Unix(), 10)
	sel := url.QueryEscape(`{__name__=~"secret_.+|intruder.*"}`)
	type endpoint struct {
		name, method, path, form string
	}
	reads := []endpoint{
		{"query", "GET", "/api/v1/query?query=" + sel + "&time=" + ts, ""},
		{"query POST", "POST", "/api/v1/query", "query=" + sel + "&time=" + ts},
		{"query_range", "GET", "/api/v1/query_range?query=" + sel + "&start=" + strconv.FormatInt(now.Unix()-60, 10) + "&end=" + ts + "&step=15", ""},
		{"query_range POST", "POST", "/api/v1/query_range", "query=" + sel + "&start=" + strconv.FormatInt(now.Unix()-60, 10) + "&end=" + ts + "&step=15"},
		{"series", "GET", "/api/v1/series?match[]=" + sel, ""},
		{"series POST", "POST", "/api/v1/series", "match[]=" + sel},
		{"labels", "GET", "/api/v1/labels", ""},
		{"label values", "GET", "/api/v1/label/__name__/values", ""},
		{"exemplars", "GET", "/api/v1/query_exemplars?query=" + sel + "&start=" + strconv.FormatInt(now.Unix()-60, 10) + "&end=" + ts, ""},
		{"cardinality tenants", "GET", "/api/v1/cardinality/tenants", ""},
		{"cardinality metrics", "GET", "/api/v1/cardinality/metrics", ""},
	}
	// Each tenant reads its own secret through every endpoint, once the
	// pipeline has it (the explorer follows the stream stage).
	for _, own := range []struct {
		h                        map[string]string
		mine, other, otherTenant string
	}{{asA, "secret_of_a", "secret_of_b", "team-b"}, {asB, "secret_of_b", "secret_of_a", "team-a"}} {
		for _, e := range reads {
			weirtest.Eventually(t, 30*time.Second, func() error {
				st, body := call(t, e.method, all.URL()+e.path, []byte(e.form), with(own.h, formHeaders(e.form), map[string]string{"X-Read-Consistency": "strong"}))
				mine := own.mine
				if e.name == "cardinality tenants" {
					// It names tenants, not series: only the caller's.
					mine = "team-" + own.mine[len(own.mine)-1:]
				}
				switch {
				case strings.Contains(body, own.other), strings.Contains(body, own.otherTenant):
					t.Fatalf("%s as the owner of %s shows the other tenant's data: %s", e.name, own.mine, body)
				case e.name == "exemplars" && st == 200:
					return nil // no exemplars were written; the answer is empty but allowed
				case st != 200 || !strings.Contains(body, mine):
					return fmt.Errorf("%s: %d %s, want %s", e.name, st, body, mine)
				}
				return nil
			})
		}
		st, body := call(t, "GET", all.URL()+"/api/v1/cardinality/metrics/"+own.other+"/labels", nil, own.h)
		if st != 404 || strings.Contains(body, own.other+`","`) || strings.Contains(body, "labels\":[{") {
			t.Fatalf("explorer labels of the other tenant's metric: %d %s", st, body)
		}
	}

	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	bad := []struct {
		name   string
		h      map[string]string
		orgIDs []string
		query  string
	}{
		{name: "no credentials"},
		{name: "X-Scope-OrgID alone", orgIDs: []string{"team-a"}},
		{name: "Bearer without token", h: map[string]string{"Authorization": "Bearer"}},
		{name: "Bearer and spaces", h: map[string]string{"Authorization": "Bearer    "}},
		{name: "wrong token", h: map[string]string{"Authorization": "Bearer tok-x"}},
		{name: "token with a suffix", h: map[string]string{"Authorization": "Bearer tok-a2"}},
		{name: "two tokens", h: map[string]string{"Authorization": "Bearer tok-a tok-b"}},
		{name: "huge token", h: map[string]string{"Authorization": "Bearer " + strings.Repeat("x", 60<<10)}},
		{name: "Basic not base64", h: map[string]string{"Authorization": "Basic !!!"}},
		{name: "Basic without colon", h: map[string]string{"Authorization": basic("telegraf")}},
		{name: "Basic wrong password", h: map[string]string{"Authorization": basic("telegraf:pw-x")}},
		{name: "Basic unknown user", h: map[string]string{"Authorization": basic("root:pw-b2")}},
		{name: "Basic empty password", h: map[string]string{"Authorization": basic("telegraf:")}},
		{name: "Token user:wrong", h: map[string]string{"Authorization": "Token telegraf:nope"}},
		{name: "unknown scheme", h: map[string]string{"Authorization": "Negotiate tok-a"}},
		{name: "InfluxDB u/p wrong", query: "u=telegraf&p=nope"},
		{name: "another tenant's X-Scope-OrgID", h: asB, orgIDs: []string{"team-a"}},
		{name: "an unknown tenant's X-Scope-OrgID", h: asA, orgIDs: []string{"team-z"}},
		{name: "two X-Scope-OrgID", h: asA, orgIDs: []string{"team-a", "team-b"}},
		{name: "two X-Scope-OrgID the other way", h: asA, orgIDs: []string{"team-b", "team-a"}},
		{name: "federated X-Scope-OrgID", h: asA, orgIDs: []string{"team-a|team-b"}},
	}
	writes := []struct {
		name, path string
		body       func() []byte
		h          map[string]string
	}{
		{"remote-write", "/api/v1/write", func() []byte { return rwBody(t, "intruder", now) }, rwHeaders},
		{"InfluxDB 2", "/api/v2/write?org=team-a&bucket=b", func() []byte { return []byte("intruder v=1\n") }, nil},
		{"InfluxDB 1", "/write?db=team-a", func() []byte { return []byte("intruder v=1\n") }, nil},
	}
	refusals := 0
	for _, b := range bad {
		for _, e := range reads {
			path := e.path
			if b.query != "" {
				path += sep(path) + b.query
			}
			st, body := callOrg(t, e.method, all.URL()+path, []byte(e.form), with(b.h, formHeaders(e.form)), b.orgIDs)
			checkRefused(t, b.name+" "+e.name, st, body)
			refusals++
		}
		for _, w := range writes {
			path := w.path
			if b.query != "" {
				path += sep(path) + b.query
			}
			st, body := callOrg(t, "POST", all.URL()+path, w.body(), with(b.h, w.h), b.orgIDs)
			checkRefused(t, b.name+" "+w.name, st, body)
			refusals++
		}
	}
	// Nothing refused was stored anywhere.
	for _, h := range []map[string]string{asA, asB} {
		_, body := call(t, "GET", all.URL()+"/api/v1/label/__name__/values", nil, with(h, map[string]string{"X-Read-Consistency": "strong"}))
		if strings.Contains(body, "intruder") {
			t.Fatalf("a refused write was stored: %s", body)
		}
	}
	report(t, figures{"refused_requests": refusals, "credentials_tried": len(bad), "endpoints": len(reads) + len(writes)})
}

func checkRefused(t *testing.T, what string, status int, body string) {
	t.Helper()
	if status != 400 && status != 401 && status != 403 && status != 431 {
		t.Fatalf("%s: %d %s", what, status, body)
	}
	for _, leak := range []string{"secret_of", "team-a", "team-b", "intruder"} {
		if strings.Contains(body, leak) {
			t.Fatalf("%s: the refusal mentions %q: %s", what, leak, body)
		}
	}
}

// TestOversizedHeaders — scenario: all-in-one weir with the default
// http.max_header_bytes (64 KiB); requests with one header of 200 KiB and
// with 4000 headers of 60 bytes. Checks: both get 431 and the connection
// ends; the next ordinary write is acknowledged.
func TestOversizedHeaders(t *testing.T) {
	t.Parallel()
	all := startAllInOne(t, "")
	for _, c := range []struct {
		name    string
		headers string
	}{
		{"one huge header", "X-Big: " + strings.Repeat("a", 200<<10) + "\r\n"},
		{"many headers", strings.Repeat("X-Many: "+strings.Repeat("b", 50)+"\r\n", 4000)},
	} {
		conn, err := net.Dial("tcp", all.HTTP)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			_, _ = io.WriteString(conn, "POST /api/v1/write HTTP/1.1\r\nHost: weir\r\nX-Scope-OrgID: big\r\n"+c.headers+"Content-Length: 0\r\n\r\n")
		}()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("%s: %d, want 431", c.name, resp.StatusCode)
		}
	}
	if err := weirtest.MustWrite(weirtest.WriteV1(all.URL(), "after", smallRequest(1))); err != nil {
		t.Fatal(err)
	}
}

// TestSlowAndIdleClients — scenario: all-in-one weir with
// http.read_header_timeout 2s, http.read_timeout 5s and
// http.idle_timeout 3s; 300 connections send their headers a byte every
// half second (slowloris), 300 send complete headers and then their body
// a byte every half second, 600 connect and send nothing, 600 make one
// request and then sit idle with keep-alive — 1800 connections at once —
// while tenant "good" writes twice a second. Duration: about 12 s.
// Checks: the server closes every slow connection within its timeout
// (plus 3 s of slack) and every idle one within read_header_timeout or
// idle_timeout; every one of good's writes is acknowledged within a
// second; weir's resident memory grows by less than 64 KiB per connection.
func TestSlowAndIdleClients(t *testing.T) {
	t.Parallel()
	all := startAllInOne(t, "http:\n  read_header_timeout: 2s\n  read_timeout: 5s\n  idle_timeout: 3s\n")
	// The good tenant's topics first, so its writes measure the load.
	if err := weirtest.MustWrite(weirtest.WriteV1(all.URL(), "good", smallRequest(0))); err != nil {
		t.Fatal(err)
	}
	rssBefore := rss(t, all.Pid())
	type outcome struct {
		kind   string
		closed time.Duration // since the client stopped making progress
		err    error
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		wg       sync.WaitGroup
		opened   sync.WaitGroup
	)
	run := func(kind string, fn func(conn net.Conn, r *bufio.Reader) (time.Time, error)) {
		wg.Add(1)
		opened.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", all.HTTP)
			opened.Done()
			if err != nil {
				mu.Lock()
				outcomes = append(outcomes, outcome{kind: kind, err: err})
				mu.Unlock()
				return
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(40 * time.Second))
			from, err := fn(conn, bufio.NewReader(conn))
			mu.Lock()
			outcomes = append(outcomes, outcome{kind: kind, closed: time.Since(from), err: err})
			mu.Unlock()
		}()
	}
	trickle := func(conn net.Conn, s string) {
		for i := 0; i < len(s); i++ {
			if _, err := conn.Write([]byte{s[i]}); err != nil {
				return
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	// closedAfter reads until the server ends the connection.
	closedAfter := func(r *bufio.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	}
	for range 300 {
		run("slow headers", func(conn net.Conn, r *bufio.Reader) (time.Time, error) {
			start := time.Now()
			go trickle(conn, "POST /api/v1/write HTTP/1.1\r\nHost: weir\r\nX-Scope-OrgID: slow\r\nX-Slow: "+strings.Repeat("s", 100))
			return start, closedAfter(r)
		})
		run("slow body", func(conn net.Conn, r *bufio.Reader) (time.Time, error) {
			start := time.Now()
			if _, err := io.WriteString(conn, "POST /api/v1/write HTTP/1.1\r\nHost: weir\r\nX-Scope-OrgID: slow\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nContent-Length: 1000000\r\n\r\n"); err != nil {
				return start, err
			}
			go trickle(conn, strings.Repeat("b", 100))
			return start, closedAfter(r)
		})
	}
	for range 600 {
		run("silent", func(conn net.Conn, r *bufio.Reader) (time.Time, error) {
			return time.Now(), closedAfter(r)
		})
		run("idle keep-alive", func(conn net.Conn, r *bufio.Reader) (time.Time, error) {
			if _, err := io.WriteString(conn, "GET /-/healthy HTTP/1.1\r\nHost: weir\r\n\r\n"); err != nil {
				return time.Now(), err
			}
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				return time.Now(), err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return time.Now(), closedAfter(r)
		})
	}
	opened.Wait()
	time.Sleep(time.Second)
	rssWith := rss(t, all.Pid())
	var good []time.Duration
	for i := 0; i < 16; i++ {
		start := time.Now()
		if err := weirtest.MustWrite(weirtest.WriteV1(all.URL(), "good", smallRequest(i))); err != nil {
			t.Fatalf("good tenant's write %d among 1800 hostile connections: %v", i, err)
		}
		good = append(good, time.Since(start))
		time.Sleep(500 * time.Millisecond)
	}
	wg.Wait()

	limits := map[string]time.Duration{"slow headers": 2 * time.Second, "slow body": 5 * time.Second, "silent": 2 * time.Second, "idle keep-alive": 3 * time.Second}
	worst := map[string]time.Duration{}
	counts := map[string]int{}
	for _, o := range outcomes {
		if o.err != nil && !strings.Contains(o.err.Error(), "reset by peer") {
			t.Fatalf("%s connection: %v", o.kind, o.err)
		}
		counts[o.kind]++
		worst[o.kind] = max(worst[o.kind], o.closed)
	}
	for kind, lim := range limits {
		if counts[kind] == 0 {
			t.Fatalf("no %s connection ran", kind)
		}
		if worst[kind] > lim+3*time.Second {
			t.Fatalf("a %s connection was held %s, beyond its %s timeout", kind, worst[kind], lim)
		}
	}
	sort.Slice(good, func(i, j int) bool { return good[i] < good[j] })
	if good[len(good)-1] > time.Second {
		t.Fatalf("good tenant's writes took up to %s among the hostile connections", good[len(good)-1])
	}
	perConn := (rssWith - rssBefore) / int64(len(outcomes))
	if perConn > 64<<10 {
		t.Fatalf("weir's memory grew %d bytes per connection (%s for %d)", perConn, mib(rssWith-rssBefore), len(outcomes))
	}
	report(t, figures{"connections": counts, "held_at_most": fmt.Sprint(worst), "good_write_max": good[len(good)-1].Round(time.Millisecond).String(),
		"rss_growth": mib(rssWith - rssBefore), "rss_per_connection_bytes": perConn})
}

// rss is a process' resident set now (VmRSS).
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	return procStatus(t, pid, "VmRSS:")
}

var rwHeaders = map[string]string{"Content-Type": weirtest.ContentTypeV1, "Content-Encoding": "snappy"}

func rwBody(t *testing.T, name string, at time.Time) []byte {
	t.Helper()
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		// A label named after the series, so that /api/v1/labels shows
		// whose data it answers with.
		Labels:  []prompb.Label{{Name: "__name__", Value: name}, {Name: "job", Value: "hostile"}, {Name: name + "_label", Value: "x"}},
		Samples: []prompb.Sample{{Value: 1, Timestamp: at.Add(-10 * time.Second).UnixMilli()}},
	}}}
	b, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, b)
}

func formHeaders(form string) map[string]string {
	if form == "" {
		return nil
	}
	return map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
}

func with(hs ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, h := range hs {
		for k, v := range h {
			out[k] = v
		}
	}
	return out
}

func sep(path string) string {
	if strings.Contains(path, "?") {
		return "&"
	}
	return "?"
}

func call(t *testing.T, method, u string, body []byte, headers map[string]string) (int, string) {
	t.Helper()
	return callOrg(t, method, u, body, headers, nil)
}

// callOrg makes a request with the given headers and X-Scope-OrgID
// values (each its own header line) and returns status and body.
func callOrg(t *testing.T, method, u string, body []byte, headers map[string]string, orgIDs []string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	for _, o := range orgIDs {
		req.Header.Add("X-Scope-OrgID", o)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
