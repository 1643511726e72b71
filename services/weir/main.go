// Command weir runs the weir metrics pipeline: any set of its targets
// (edge, stream, sink) in one process, the embedded Kafka-protocol broker,
// and its tools.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/weir-metrics/weir/pkg/auth"
	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/kafka"
	"github.com/weir-metrics/weir/pkg/limits"
	"github.com/weir-metrics/weir/pkg/promapi"
	"github.com/weir-metrics/weir/services/app"
	"github.com/weir-metrics/weir/services/edge"
	rollupstage "github.com/weir-metrics/weir/services/rollup"
	"github.com/weir-metrics/weir/services/sink"
	"github.com/weir-metrics/weir/services/stream"
)

// Set by the build (see Makefile).
var (
	version  = "0.1.0-dev"
	revision = "unknown"
)

func main() {
	if err := rootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "weir:", err)
		os.Exit(1)
	}
}

func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "weir",
		Short:         "Kafka-buffered streaming ingestion pipeline for metrics",
		Version:       version + " (" + revision + ")",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	config.RegisterFlags(root.PersistentFlags())

	target := func(name, short string, targets ...string) *cobra.Command {
		return &cobra.Command{
			Use:   name,
			Short: short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				cfg, err := config.Load(cmd.Flags())
				if err != nil {
					return err
				}
				return run(&cfg, targets)
			},
		}
	}
	root.AddCommand(
		target("all", "Run every target in one process, with the embedded broker unless kafka.brokers is set", "edge", "stream", "sink"),
		target("edge", "Run the edge: receive writes and produce them to Kafka", "edge"),
		target("stream", "Run a stream worker: raw topics to series topics, and the rollups, exactly once", "stream"),
		target("sink", "Run a sink worker: series topics to TSDB shards, the query API, and the rollup Parquet files", "sink"),
		target("broker", "Run the embedded Kafka-protocol broker alone", "broker"),
		configCommand(),
		authCommand(),
		checkCommand(),
		backfillCommand(),
		replayCommand(),
	)
	return root
}

func configCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect the configuration"}
	cmd.AddCommand(&cobra.Command{
		Use:   "print",
		Short: "Print the effective configuration (defaults, file, environment and flags merged)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cmd.Flags())
			if err != nil {
				return err
			}
			out, err := cfg.YAML()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	})
	return cmd
}

func newLogger(cfg config.LogConfig) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(strings.ToUpper(cfg.Level)))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// signalContext is canceled by the first SIGINT or SIGTERM; a second one
// exits at once.
func signalContext(log *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-ch
		cancel(fmt.Errorf("received %s", sig))
		sig = <-ch
		log.Error("second signal, exiting at once", "signal", sig.String())
		os.Exit(2)
	}()
	return ctx, func() { signal.Stop(ch); cancel(nil) }
}

func run(cfg *config.Config, targets []string) error {
	log := newLogger(cfg.Log)
	ctx, stop := signalContext(log)
	defer stop()
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("creating data_dir: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "weir_build_info",
		Help:        "Always 1; the labels tell the build.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision},
	}, func() float64 { return 1 }))
	proc := app.New(cfg, log, reg)

	startBroker := len(targets) == 1 && targets[0] == "broker" || len(targets) > 1 && cfg.UsesEmbeddedBroker()
	if targets[0] == "broker" && !cfg.UsesEmbeddedBroker() {
		return errors.New("`weir broker` runs the embedded broker; unset kafka.brokers")
	}
	if startBroker {
		b, err := kafka.StartBroker(cfg, log)
		if err != nil {
			return err
		}
		cfg.Kafka.Embedded.Addr = b.Addr()
		proc.OnClose(b.Close)
	}
	// One authenticator for the edge's writes, the sink's queries and the
	// stream's cardinality explorer, so all follow the same tenants file.
	var tenants *auth.Authenticator
	if slices.Contains(targets, "edge") || slices.Contains(targets, "sink") || slices.Contains(targets, "stream") {
		a, err := auth.New(auth.Options{TenantsFile: cfg.Auth.TenantsFile, ReloadInterval: cfg.Auth.ReloadInterval, Logger: log, Registerer: reg})
		if err != nil {
			return fmt.Errorf("auth.tenants_file: %w", err)
		}
		tenants = a
		go tenants.Run(ctx)
	}
	// The tenants' limits, likewise shared by the edge and the sink.
	var rt *limits.Runtime
	if slices.Contains(targets, "edge") || slices.Contains(targets, "sink") {
		var err error
		if rt, err = limits.Open(cfg, log, reg); err != nil {
			return err
		}
		go rt.Run(ctx)
	}
	for _, t := range targets {
		switch t {
		case "edge":
			e, err := edge.New(cfg, log, reg, tenants, rt)
			if err != nil {
				return err
			}
			proc.Add(e)
		case "stream":
			st, err := stream.New(cfg, log, reg, tenants)
			if err != nil {
				return err
			}
			proc.Add(st)
			if cfg.Rollup.Enabled {
				defaults, err := rollupstage.DefaultSpecs(cfg)
				if err != nil {
					return err
				}
				proc.Add(rollupstage.New(cfg, log, reg, rollupstage.FromPipelines(st.Pipelines, defaults)))
			}
		case "sink":
			s, err := sink.New(cfg, log, reg, promapi.BuildInfo{Version: version, Revision: revision}, tenants, rt)
			if err != nil {
				return err
			}
			proc.Add(s)
		}
	}
	return proc.Run(ctx)
}
