// Package filewatch reloads files that may change while weir runs (the
// tenants file, the runtime limits file, TLS certificates) without a
// restart. It polls: reading a few small files every few seconds costs
// nothing, and unlike inotify it sees every way a file can be replaced
// (editors' rename-over, Kubernetes' ConfigMap symlink swaps, network
// file systems).
//
// A file set whose new content does not load is refused: the last good one
// stays in force, the error is logged, and the reload metrics say so.
package filewatch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Watcher.
type Options struct {
	// Name names the file set in logs and in the file label of the
	// metrics, e.g. "tenants".
	Name string
	// Paths are read together, in this order, and handed to Load.
	Paths []string
	// Load puts new contents in force, or returns why it cannot.
	Load func(contents [][]byte) error
	// Interval between polls. Default 5s.
	Interval time.Duration
	Logger   *slog.Logger
	// Registerer receives weir_config_file_* metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Watcher keeps a file set loaded.
type Watcher struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	last   [sha256.Size]byte
	bad    [sha256.Size]byte // the last refused content
	badErr error

	reloads     *prometheus.CounterVec
	lastOK      prometheus.Gauge
	lastSuccess prometheus.Gauge
}

// New loads the files once and returns a watcher for them. Files that
// cannot be read or loaded at start are an error: a process must not start
// without its tenants or limits.
func New(o Options) (*Watcher, error) {
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{opts: o, log: o.Logger.With("file", o.Name)}
	labels := prometheus.Labels{"file": o.Name}
	w.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "weir_config_file_reloads_total",
		Help:        "Reloads of a file weir watches (tenants, runtime limits, TLS certificate) after its content changed, by result.",
		ConstLabels: labels,
	}, []string{"result"})
	w.lastOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "weir_config_file_last_reload_successful",
		Help:        "1 when the file's current content is in force, 0 when it was refused and the previous content is still in force.",
		ConstLabels: labels,
	})
	w.lastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "weir_config_file_last_reload_success_timestamp_seconds",
		Help:        "When the file's content was last put in force.",
		ConstLabels: labels,
	})
	w.reloads.WithLabelValues("success")
	w.reloads.WithLabelValues("failure")
	contents, sum, err := w.read()
	if err != nil {
		return nil, err
	}
	if err := o.Load(contents); err != nil {
		return nil, fmt.Errorf("loading %s: %w", w.describe(), err)
	}
	w.last = sum
	w.lastOK.Set(1)
	w.lastSuccess.SetToCurrentTime()
	if o.Registerer != nil {
		if err := registerAll(o.Registerer, w.reloads, w.lastOK, w.lastSuccess); err != nil {
			return nil, err
		}
	}
	return w, nil
}

func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering file watch metrics: %w", err)
		}
	}
	return nil
}

func (w *Watcher) describe() string {
	if len(w.opts.Paths) == 1 {
		return w.opts.Name + " file " + w.opts.Paths[0]
	}
	return fmt.Sprintf("%s files %v", w.opts.Name, w.opts.Paths)
}

func (w *Watcher) read() ([][]byte, [sha256.Size]byte, error) {
	contents := make([][]byte, len(w.opts.Paths))
	h := sha256.New()
	for i, p := range w.opts.Paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, [sha256.Size]byte{}, fmt.Errorf("reading %s file: %w", w.opts.Name, err)
		}
		contents[i] = b
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return contents, sum, nil
}

// Run polls until ctx is done.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = w.Check()
		}
	}
}

// Check reloads the files if their content changed since the last load.
// It reports whether it put new content in force, and why not when the
// new content was refused.
func (w *Watcher) Check() (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	contents, sum, err := w.read()
	if err == nil && bytes.Equal(sum[:], w.last[:]) {
		return false, nil
	}
	if err == nil && w.badErr != nil && bytes.Equal(sum[:], w.bad[:]) {
		return false, w.badErr // refused and logged already
	}
	if err == nil {
		err = w.opts.Load(contents)
		if err != nil {
			err = fmt.Errorf("loading %s: %w", w.describe(), err)
		}
	}
	if err != nil {
		w.bad, w.badErr = sum, err
		w.reloads.WithLabelValues("failure").Inc()
		w.lastOK.Set(0)
		w.log.Error("refused new content; the previous one stays in force", "err", err)
		return false, err
	}
	w.last, w.badErr = sum, nil
	w.reloads.WithLabelValues("success").Inc()
	w.lastOK.Set(1)
	w.lastSuccess.SetToCurrentTime()
	w.log.Info("reloaded", "paths", w.opts.Paths)
	return true, nil
}
