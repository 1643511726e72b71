// Package launch starts local target processes for a run: a command line
// with placeholders for a fresh data directory and free loopback ports,
// readiness URLs to wait for, and an orderly stop at the end.
package launch

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Vars expands the placeholders of commands and URLs:
//
//	{dir}        a fresh temporary directory, removed by Cleanup
//	{addr:NAME}  127.0.0.1:PORT, a port that was free when first named;
//	             every later {addr:NAME} is the same address
//	{port:NAME}  the port alone
type Vars struct {
	mu    sync.Mutex
	dir   string
	addrs map[string]string
}

var placeholder = regexp.MustCompile(`\{(dir|addr:[A-Za-z0-9_-]+|port:[A-Za-z0-9_-]+)\}`)

// Expand replaces the placeholders of s.
func (v *Vars) Expand(s string) (string, error) {
	var err error
	out := placeholder.ReplaceAllStringFunc(s, func(m string) string {
		key := m[1 : len(m)-1]
		switch {
		case key == "dir":
			d, e := v.Dir()
			if e != nil {
				err = e
			}
			return d
		case strings.HasPrefix(key, "addr:"):
			a, e := v.addr(key[5:])
			if e != nil {
				err = e
			}
			return a
		default:
			a, e := v.addr(key[5:])
			if e != nil {
				err = e
			}
			_, port, _ := net.SplitHostPort(a)
			return port
		}
	})
	return out, err
}

// Dir returns the run's temporary directory, creating it.
func (v *Vars) Dir() (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.dir == "" {
		d, err := os.MkdirTemp("", "weir-loadtest-")
		if err != nil {
			return "", fmt.Errorf("creating a data directory for the target: %w", err)
		}
		v.dir = d
	}
	return v.dir, nil
}

func (v *Vars) addr(name string) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if a, ok := v.addrs[name]; ok {
		return a, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port for {addr:%s}: %w", name, err)
	}
	a := ln.Addr().String()
	ln.Close()
	if v.addrs == nil {
		v.addrs = map[string]string{}
	}
	v.addrs[name] = a
	return a, nil
}

// Cleanup removes the temporary directory.
func (v *Vars) Cleanup() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.dir != "" {
		_ = os.RemoveAll(v.dir)
		v.dir = ""
	}
}

// Process is a started target process.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	Log  string // path of its output
	done chan struct{}
	err  error
}

// PID is the process ID.
func (p *Process) PID() int { return p.Cmd.Process.Pid }

// Start runs command ("NAME=COMMAND LINE", already expanded) through
// sh -c with exec, so the PID is the target's own; its output goes to a
// file in logDir.
func Start(spec, logDir string) (*Process, error) {
	name, cmdline, ok := strings.Cut(spec, "=")
	if !ok || name == "" || strings.ContainsAny(name, " /") {
		return nil, fmt.Errorf("-exec %q: want NAME=COMMAND, with a NAME such as weir or vm", spec)
	}
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("/bin/sh", "-c", "exec "+cmdline)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{Name: name, Cmd: cmd, Log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and waits up to timeout, then kills.
func (p *Process) Stop(timeout time.Duration) error {
	if p.Exited() {
		return p.err
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		_ = p.Cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %s of SIGTERM and was killed", p.Name, timeout)
	}
}

// WaitReady polls url until it answers 200, the process exits, or timeout.
func WaitReady(ctx context.Context, url string, procs []*Process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		for _, p := range procs {
			if p.Exited() {
				out, _ := os.ReadFile(p.Log)
				return fmt.Errorf("%s exited before %s was ready: %v\n%s", p.Name, url, p.err, tail(string(out), 2000))
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after %s: %s", url, timeout, last)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
