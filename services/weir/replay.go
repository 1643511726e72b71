package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/kafka"
	"github.com/weir-metrics/weir/pkg/pipeline"
	"github.com/weir-metrics/weir/pkg/tenant"
	"github.com/weir-metrics/weir/services/replay"
	rollupstage "github.com/weir-metrics/weir/services/rollup"
)

func replayCommand() *cobra.Command {
	var (
		ten, from, to, into, id string
	)
	cmd := &cobra.Command{
		Use:   "replay --tenant T --from TIME --to TIME --into tsdb|rollups|all",
		Short: "Re-read a tenant's raw topic over a time range and rebuild what was derived from it",
		Long: `replay re-reads the tenant's raw topic from the offsets of --from to
those of --to (record time: when weir received the data), runs the
tenant's current pipeline (relabeling and guard rails; budgets are not
applied) and rebuilds:

  tsdb     the series: appended by the sinks like live data (samples
           already stored are no-ops, older ones go through the tenant's
           out-of-order window)
  rollups  the rollups of every hour the range touches, recomputed and
           written with a new generation, so their Parquet files replace
           the old ones
  all      both

Times are RFC 3339 (2026-11-22T10:00:00Z), Unix seconds, "now", or
relative to now ("-6h"). Ctrl-C stops a replay; the same command (or
--id) resumes it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cmd.Flags())
			if err != nil {
				return err
			}
			if err := tenant.ValidateID(ten); err != nil {
				return fmt.Errorf("--tenant: %w", err)
			}
			now := time.Now()
			f, err := parseTime(from, now)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			t, err := parseTime(to, now)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			if id == "" {
				id = replay.DefaultID(ten, f, t, into)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runReplay(ctx, &cfg, ten, f, t, into, id, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&ten, "tenant", tenant.Anonymous, "tenant to replay")
	cmd.Flags().StringVar(&from, "from", "", "start of the range (required)")
	cmd.Flags().StringVar(&to, "to", "now", "end of the range")
	cmd.Flags().StringVar(&into, "into", replay.IntoAll, "what to rebuild: tsdb, rollups or all")
	cmd.Flags().StringVar(&id, "id", "", "replay ID, to resume it (default: from tenant, range and target)")
	_ = cmd.MarkFlagRequired("from")
	return cmd
}

// parseTime reads RFC 3339, Unix seconds, "now" or a duration relative to
// now ("-6h").
func parseTime(s string, now time.Time) (time.Time, error) {
	switch {
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+"):
		d, err := time.ParseDuration(s)
		if err != nil {
			return time.Time{}, err
		}
		return now.Add(d), nil
	}
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		return time.UnixMilli(int64(secs * 1000)), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not RFC 3339, Unix seconds, now or -<duration>", s)
	}
	return t, nil
}

func runReplay(ctx context.Context, cfg *config.Config, ten string, from, to time.Time, into, id string, out io.Writer) error {
	log := newLogger(cfg.Log)
	set, err := pipeline.LoadDir(cfg.Stream.PipelinesDir)
	if err != nil {
		return fmt.Errorf("stream.pipelines_dir: %w", err)
	}
	defaults, err := rollupstage.DefaultSpecs(cfg)
	if err != nil {
		return err
	}
	opts, err := kafka.ClientOpts(cfg, log)
	if err != nil {
		return err
	}
	opts = append(append(opts, kafka.ProducerOpts(cfg)...), kafka.ConsumerOpts(cfg)...)
	fmt.Fprintf(out, "replay %s: tenant %s, %s to %s, into %s\n", id, ten, from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), into)
	p, err := replay.Run(ctx, opts, replay.Options{
		Tenant: ten, From: from, To: to, Into: into, ID: id,
		TopicPrefix: cfg.Kafka.TopicPrefix, Partitions: cfg.Kafka.Partitions, MaxRecordBytes: cfg.Kafka.MaxRecordBytes,
		Pipelines: set,
		Rollups:   rollupstage.FromPipelines(func() *pipeline.Set { return set }, defaults)(ten),
		Logger:    log,
		Progress: func(p replay.Progress) {
			fmt.Fprintf(out, "\r%d/%d records, %.1f MB, %.0f records/s, %d samples, ETA %s   ",
				p.Records, p.TotalRecords, float64(p.Bytes)/1e6, p.Rate(), p.Samples, p.ETA().Round(time.Second))
		},
	})
	fmt.Fprintln(out)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(out, "interrupted after %d of %d records; run the same command to resume\n", p.Records, p.TotalRecords)
			return nil
		}
		return err
	}
	fmt.Fprintf(out, "done in %s: %d records, %d samples; %d series records, %d rollup rows written\n",
		p.Elapsed.Round(time.Millisecond), p.Records, p.Samples, p.SeriesRecords, p.RollupRows)
	for reason, n := range p.RollupDiscarded {
		fmt.Fprintf(out, "rollups did not take %d samples: %s\n", n, reason)
	}
	return nil
}
