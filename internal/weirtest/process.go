// Package weirtest runs weir for tests: the built binary as real
// processes, remote-write requests built with the Prometheus libraries,
// and reads through the query API.
package weirtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds bin/weir once per test binary and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "weir-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "weir")
		cmd := exec.Command("go", "build", "-o", binPath, "./services/weir")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Process is a running weir process.
type Process struct {
	t    testing.TB
	Name string
	Args []string
	// Env holds extra environment variables (WEIR_…) of the process.
	Env     []string
	HTTP    string // host:port of its HTTP listener
	cmd     *exec.Cmd
	logs    *syncBuffer
	done    chan struct{}
	exitErr error
}

// Start runs `weir <args...> --http.addr=<free>` and returns at once. The
// process is killed when the test ends, and its log is printed if the
// test failed.
func Start(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	return StartWithEnv(t, name, nil, args...)
}

// StartWithEnv is Start with extra environment variables, for settings
// that have no flag.
func StartWithEnv(t testing.TB, name string, env []string, args ...string) *Process {
	t.Helper()
	p := &Process{t: t, Name: name, Args: args, Env: env, HTTP: FreeAddr(t)}
	p.start()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("--- log of %s (%v):\n%s", p.Name, p.Args, p.logs.String())
		}
	})
	return p
}

func (p *Process) start() {
	p.t.Helper()
	p.logs = &syncBuffer{}
	p.cmd = exec.Command(Binary(p.t), append(p.Args, "--http.addr="+p.HTTP)...)
	p.cmd.Env = append(os.Environ(), p.Env...)
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	p.done = make(chan struct{})
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.done)
	}()
}

// Restart starts the process again with the same arguments and address.
func (p *Process) Restart() {
	p.t.Helper()
	p.start()
}

// URL is the process' base URL.
func (p *Process) URL() string { return "http://" + p.HTTP }

// Pid is the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Logs returns what the process printed so far.
func (p *Process) Logs() string { return p.logs.String() }

// WaitReady waits until /-/ready answers 200.
func (p *Process) WaitReady(timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			p.t.Fatalf("%s exited before it was ready: %v\n%s", p.Name, p.exitErr, p.logs.String())
		default:
		}
		resp, err := http.Get(p.URL() + "/-/ready")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = string(b)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.t.Fatalf("%s not ready after %s: %s\n%s", p.Name, timeout, last, p.logs.String())
}

// Stop sends SIGTERM and waits for a clean exit.
func (p *Process) Stop(timeout time.Duration) {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.exitErr != nil {
			p.t.Fatalf("%s exited with %v\n%s", p.Name, p.exitErr, p.logs.String())
		}
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		p.t.Fatalf("%s did not stop within %s after SIGTERM\n%s", p.Name, timeout, p.logs.String())
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Run runs the built binary with args to completion and returns its
// combined output.
func Run(t testing.TB, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Eventually retries fn until it returns nil or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("condition not met after %s: %v", timeout, err)
}

// Context returns a context ending with the test.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
