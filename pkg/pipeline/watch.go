package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Watcher keeps the pipelines of a directory current: it rereads the
// directory periodically and swaps in a new Set when a file changed. A
// file that does not parse is refused with its file:line problems and the
// last good version of that file keeps running (a new file that never
// parsed leaves its tenant on the default pipeline).
type Watcher struct {
	dir string
	log *slog.Logger
	cur atomic.Pointer[Set]

	mu   sync.Mutex
	last map[string][]byte      // file name → content last read
	bad  map[string]error       // file name → why its current content is refused
	good map[string]*Definition // file name → last definition that parsed
	// lastErr is the outcome of the last reload, for tests and /metrics.
	lastErr error

	reloads       *prometheus.CounterVec
	lastSuccess   prometheus.Gauge
	configSuccess prometheus.Gauge
}

// NewWatcher loads dir once; any problem is an error, since there is no
// last good pipeline to fall back on. reg may be nil.
func NewWatcher(dir string, log *slog.Logger, reg prometheus.Registerer) (*Watcher, error) {
	w := &Watcher{dir: dir, log: log, last: map[string][]byte{}, bad: map[string]error{}, good: map[string]*Definition{}}
	w.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weir_stream_pipeline_reloads_total",
		Help: "Reloads of the pipelines directory that found a change, by result (success, failure: a file was refused and its last good version kept).",
	}, []string{"result"})
	w.lastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "weir_stream_pipeline_last_reload_success_timestamp_seconds",
		Help: "When the pipelines were last loaded without a refused file.",
	})
	w.configSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "weir_stream_pipeline_last_reload_successful",
		Help: "1 if every pipeline file of the last reload was accepted, 0 if one was refused.",
	})
	if reg != nil {
		reg.MustRegister(w.reloads, w.lastSuccess, w.configSuccess)
	}
	if _, err := w.reload(); err != nil {
		return nil, fmt.Errorf("loading pipelines from %s: %w", dir, err)
	}
	return w, nil
}

// Set returns the current pipelines.
func (w *Watcher) Set() *Set { return w.cur.Load() }

// Reload rereads the directory now. It returns whether anything changed
// and the problems of refused files (whose last good version stays).
func (w *Watcher) Reload() (bool, error) { return w.reload() }

// Run reloads every interval until ctx is done.
func (w *Watcher) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := w.reload(); err != nil {
				w.log.Error("pipeline files refused; the last good version of each keeps running", "dir", w.dir, "err", err)
			}
		}
	}
}

func (w *Watcher) reload() (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	files, readErr := ReadDir(w.dir)
	changed := len(files) != len(w.last) || w.cur.Load() == nil
	present := map[string]bool{}
	for _, f := range files {
		present[f.Name] = true
		if old, ok := w.last[f.Name]; !ok || !bytes.Equal(old, f.Data) {
			changed = true
		}
	}
	for name := range w.last {
		if !present[name] {
			changed = true
		}
	}
	if !changed && readErr == nil {
		return false, w.lastErr
	}
	errs := []error{readErr}
	last := map[string][]byte{}
	for _, f := range files {
		last[f.Name] = f.Data
		if old, ok := w.last[f.Name]; ok && bytes.Equal(old, f.Data) {
			if err := w.bad[f.Name]; err != nil {
				errs = append(errs, err)
			}
			continue
		}
		d, err := ParseFile(f.Path, f.Data)
		if err != nil {
			w.bad[f.Name] = err
			errs = append(errs, err)
			continue
		}
		delete(w.bad, f.Name)
		w.good[f.Name] = d
	}
	for name := range w.good {
		if !present[name] {
			delete(w.good, name) // a removed file's tenant goes back to the default
		}
	}
	for name := range w.bad {
		if !present[name] {
			delete(w.bad, name)
		}
	}
	w.last = last
	err := errors.Join(errs...)
	w.lastErr = err
	if err != nil && w.cur.Load() == nil {
		return true, err
	}
	w.cur.Store(Build(w.good))
	if err != nil {
		w.reloads.WithLabelValues("failure").Inc()
		w.configSuccess.Set(0)
	} else {
		w.reloads.WithLabelValues("success").Inc()
		w.configSuccess.Set(1)
		w.lastSuccess.SetToCurrentTime()
		w.log.Info("pipelines loaded", "dir", w.dir, "files", len(files))
	}
	return true, err
}
