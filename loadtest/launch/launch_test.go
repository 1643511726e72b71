package launch

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPlaceholders(t *testing.T) {
	v := &Vars{}
	s, err := v.Expand("x --dir {dir}/a --http {addr:http} --port {port:http} --other {addr:kafka}")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(s)
	dir, http1, port, kafka := f[2], f[4], f[6], f[8]
	if _, err := os.Stat(strings.TrimSuffix(dir, "/a")); err != nil {
		t.Fatalf("{dir} %s does not exist: %v", dir, err)
	}
	if _, p, _ := net.SplitHostPort(http1); p != port || !strings.HasPrefix(http1, "127.0.0.1:") || http1 == kafka {
		t.Fatalf("addresses %s %s, port %s", http1, kafka, port)
	}
	again, _ := v.Expand("{addr:http}")
	if again != http1 {
		t.Fatalf("{addr:http} is %s, then %s", http1, again)
	}
	// The port was free: something can listen on it.
	ln, err := net.Listen("tcp", http1)
	if err != nil {
		t.Fatalf("%s is not free: %v", http1, err)
	}
	ln.Close()
	v.Cleanup()
	if _, err := os.Stat(strings.TrimSuffix(dir, "/a")); !os.IsNotExist(err) {
		t.Fatalf("{dir} survived Cleanup: %v", err)
	}
}

func TestStartWaitStop(t *testing.T) {
	logs := t.TempDir()
	// exec keeps the PID: the shell is replaced by sleep.
	p, err := Start("sleeper=sleep 30", logs)
	if err != nil {
		t.Fatal(err)
	}
	var cmdline []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cmdline, _ = os.ReadFile("/proc/" + strconv.Itoa(p.PID()) + "/cmdline"); strings.HasPrefix(string(cmdline), "sleep\x00") {
			break
		}
	}
	if !strings.HasPrefix(string(cmdline), "sleep\x00") {
		t.Fatalf("PID %d runs %q, not the target", p.PID(), cmdline)
	}
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer ready.Close()
	if err := WaitReady(context.Background(), ready.URL, []*Process{p}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() {
		t.Fatal("still running after Stop")
	}
	// A process that dies is reported instead of waiting out the timeout.
	dead, err := Start("dead=sh -c 'echo boom; exit 3'", logs)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = WaitReady(context.Background(), "http://127.0.0.1:1/", []*Process{dead}, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "boom") || time.Since(start) > 10*time.Second {
		t.Fatalf("a dead target: %v after %s", err, time.Since(start))
	}
	if _, err := Start("no name here", logs); err == nil {
		t.Fatal("an -exec without NAME= was accepted")
	}
}
