package limits

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/filewatch"
)

// Defaults are the limits of every tenant the runtime file does not
// override: the edge.* settings, and sink.out_of_order_window.
func Defaults(cfg *config.Config) Limits {
	c := cfg.Edge
	return Limits{
		IngestionRate:          c.IngestionRate,
		IngestionBurst:         c.IngestionBurst,
		MaxRequestBytes:        c.MaxRequestBytes,
		MaxDecompressedBytes:   c.MaxDecompressedBytes,
		MaxLabelsPerSeries:     c.MaxLabelsPerSeries,
		MaxLabelNameLength:     c.MaxLabelNameLength,
		MaxLabelValueLength:    c.MaxLabelValueLength,
		MaxFutureSkew:          c.MaxFutureSkew,
		MaxExemplarsPerSeries:  c.MaxExemplarsPerSeries,
		MaxTenantInflightBytes: c.MaxTenantInflightBytes,
		MaxBackfillAge:         c.MaxBackfillAge,
		OutOfOrderWindow:       cfg.Sink.OutOfOrderWindow,
		InfluxStringFields:     c.InfluxStringFields,
		InfluxDatabaseLabel:    c.InfluxDatabaseLabel,
		InfluxKeepNames:        c.InfluxKeepNames,
	}
}

// Runtime is the limits in force and, when edge.runtime_file is set, the
// watcher that reloads them. One process opens it once and shares it
// between its targets.
type Runtime struct {
	*Overrides
	watcher *filewatch.Watcher
}

// Open returns the limits in force for cfg. The runtime file, if set, is
// read once before Open returns (a broken file is an error); Run keeps it
// current.
func Open(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*Runtime, error) {
	rt := &Runtime{Overrides: NewOverrides(Defaults(cfg))}
	if cfg.Edge.RuntimeFile == "" {
		return rt, nil
	}
	w, err := filewatch.New(filewatch.Options{
		Name:       "runtime",
		Paths:      []string{cfg.Edge.RuntimeFile},
		Load:       func(c [][]byte) error { return rt.Load(c[0]) },
		Interval:   cfg.Edge.RuntimeReloadInterval,
		Logger:     log,
		Registerer: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("edge.runtime_file: %w", err)
	}
	rt.watcher = w
	return rt, nil
}

// Run reloads the runtime file every edge.runtime_reload_interval until
// ctx is done.
func (rt *Runtime) Run(ctx context.Context) {
	if rt.watcher != nil {
		rt.watcher.Run(ctx)
	}
}

// Check reloads the runtime file now if it changed, and returns the error
// that refused new content.
func (rt *Runtime) Check() error {
	if rt.watcher == nil {
		return nil
	}
	_, err := rt.watcher.Check()
	return err
}
