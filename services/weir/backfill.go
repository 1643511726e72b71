package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/backfill"
	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/influx"
	"github.com/weir-metrics/weir/pkg/kafka"
	"github.com/weir-metrics/weir/pkg/limits"
	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
	"github.com/weir-metrics/weir/pkg/tenant"
	"github.com/weir-metrics/weir/services/replay"
)

func backfillCommand() *cobra.Command {
	var (
		ten, format string
		prwVersion  int
		precision   string
		maxAge      time.Duration
		batch       int
		rollups     bool
	)
	cmd := &cobra.Command{
		Use:   "backfill --tenant T --format openmetrics|influx|prw FILE...",
		Short: "Write historical data into a tenant's raw topic, to enter weir like live data",
		Long: `backfill reads files of historical samples and produces them into the
tenant's raw topic, where the stream and sink stages treat them like live
data. Samples older than a series' newest sample reach the TSDB through
its out-of-order window (sink.out_of_order_window).

Formats:
  openmetrics  OpenMetrics text ending in "# EOF", or the Prometheus text
               format; every sample needs a timestamp
  influx       InfluxDB line protocol, mapped as /api/v2/write maps it;
               every line needs a timestamp (--precision, default ns)
  prw          remote-write request bodies as Prometheus sends them
               (snappy protobuf), each prefixed by its length as an
               unsigned varint; --prw-version selects 1.0 or 2.0`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			cfg, err := config.Load(cmd.Flags())
			if err != nil {
				return err
			}
			if err := tenant.ValidateID(ten); err != nil {
				return fmt.Errorf("--tenant: %w", err)
			}
			prec, err := influx.ParsePrecision(precision, false)
			if err != nil {
				return fmt.Errorf("--precision: %w", err)
			}
			if !cmd.Flags().Changed("max-age") {
				// The tenant's own bound, as the edge would apply it.
				rt, err := limits.Open(&cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
				if err != nil {
					return err
				}
				maxAge = rt.For(ten).MaxBackfillAge
			}
			minT, maxT, err := runBackfill(cmd.Context(), &cfg, ten, format, prw.Version(prwVersion), prec, maxAge, batch, files, cmd.ErrOrStderr())
			if err != nil || !rollups || !cfg.Rollup.Enabled || maxT < minT {
				return err
			}
			return rollBackfill(cmd.Context(), &cfg, ten, time.UnixMilli(minT), time.UnixMilli(maxT), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&ten, "tenant", tenant.Anonymous, "tenant the data belongs to")
	cmd.Flags().StringVar(&format, "format", "openmetrics", "input format: openmetrics, influx or prw")
	cmd.Flags().StringVar(&precision, "precision", "ns", "timestamp precision of influx files: ns, us, ms or s")
	cmd.Flags().IntVar(&prwVersion, "prw-version", 1, "remote-write version of prw files: 1 or 2")
	cmd.Flags().DurationVar(&maxAge, "max-age", 0, "refuse samples older than this (0: no bound); default: the tenant's max_backfill_age limit (edge.max_backfill_age or edge.runtime_file)")
	cmd.Flags().IntVar(&batch, "batch-samples", 20000, "samples per batch written to Kafka")
	cmd.Flags().BoolVar(&rollups, "rollups", true, "recompute the rollups of the backfilled hours that have ended (weir replay --into rollups)")
	return cmd
}

// runBackfill writes the files and returns the time range of their
// samples.
func runBackfill(ctx context.Context, cfg *config.Config, ten, format string, version prw.Version, precision influx.Precision, maxAge time.Duration, batch int, files []string, out io.Writer) (minT, maxT int64, err error) {
	minT, maxT = 1<<62, -1<<62
	log := newLogger(cfg.Log)
	opts, err := kafka.ClientOpts(cfg, log)
	if err != nil {
		return minT, maxT, err
	}
	cl, err := kgo.NewClient(append(opts, kafka.ProducerOpts(cfg)...)...)
	if err != nil {
		return minT, maxT, err
	}
	defer cl.Close()
	if err := kafka.NewTopics(cl, cfg.Kafka).EnsureTenant(ctx, ten); err != nil {
		return minT, maxT, fmt.Errorf("Kafka at %v: %w", cfg.SeedBrokers(), err)
	}
	now := time.Now()
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return minT, maxT, err
		}
		info, _ := f.Stat()
		counted := &countingReader{r: f}
		var r backfill.Reader
		source := record.SourcePRW1
		switch format {
		case "openmetrics":
			data, err := io.ReadAll(counted)
			if err != nil {
				f.Close()
				return minT, maxT, err
			}
			r = backfill.NewOpenMetricsReader(data, batch)
			source = record.SourceOpenMetrics
		case "influx":
			r = backfill.NewInfluxReader(counted, precision, batch)
			source = record.SourceInflux
		case "prw":
			if version != prw.V1 && version != prw.V2 {
				f.Close()
				return minT, maxT, fmt.Errorf("--prw-version must be 1 or 2, not %d", version)
			}
			if version == prw.V2 {
				source = record.SourcePRW2
			}
			r = backfill.NewPRWReader(counted, version)
		default:
			f.Close()
			return minT, maxT, fmt.Errorf("--format %q is not openmetrics, influx or prw", format)
		}
		st, err := backfill.Produce(ctx, cl, r, backfill.Options{
			Tenant: ten, Topic: kafka.Topic(cfg.Kafka.TopicPrefix, ten, kafka.KindRaw), Source: source,
			Partitions: cfg.Kafka.Partitions, MaxRecordBytes: cfg.Kafka.MaxRecordBytes,
			MaxAge: maxAge, Now: now,
			Progress: func(st backfill.Stats) { printProgress(out, name, st, counted.n, info.Size()) },
		})
		f.Close()
		fmt.Fprintln(out)
		if err != nil {
			return minT, maxT, fmt.Errorf("%s: %w (what was written before stays written)", name, err)
		}
		minT, maxT = min(minT, st.MinTime), max(maxT, st.MaxTime)
		if st.Samples+st.Histograms > 0 {
			fmt.Fprintf(out, "%s: %d series, %d samples from %s to %s written to %s\n", name, st.Series, st.Samples+st.Histograms,
				time.UnixMilli(st.MinTime).UTC().Format(time.RFC3339), time.UnixMilli(st.MaxTime).UTC().Format(time.RFC3339),
				kafka.Topic(cfg.Kafka.TopicPrefix, ten, kafka.KindRaw))
		}
	}
	return minT, maxT, nil
}

// rollBackfill recomputes the rollups of the backfilled hours that have
// ended: live rollups take such old samples as late.
func rollBackfill(ctx context.Context, cfg *config.Config, ten string, from, to time.Time, out io.Writer) error {
	complete := time.Now().Add(-cfg.Rollup.AllowedLateness).Truncate(time.Hour)
	if to.After(complete) {
		to = complete
	}
	if !from.Before(to) {
		fmt.Fprintln(out, "no backfilled hour has ended yet: the live rollups will take these samples")
		return nil
	}
	return runReplay(ctx, cfg, ten, from, to, replay.IntoRollups, replay.DefaultID(ten, from, to, replay.IntoRollups), out)
}

func printProgress(out io.Writer, name string, st backfill.Stats, read, size int64) {
	secs := max(st.Elapsed.Seconds(), 1e-3)
	line := fmt.Sprintf("\r%s: %d records, %.1f MB, %.0f samples/s, %.1f MB/s", name, st.Records, float64(st.Bytes)/1e6,
		float64(st.Samples+st.Histograms)/secs, float64(st.Bytes)/1e6/secs)
	if size > 0 && read > 0 && read < size {
		eta := time.Duration(float64(st.Elapsed) * float64(size-read) / float64(read)).Round(time.Second)
		line += fmt.Sprintf(", %.0f%% read, ETA %s", 100*float64(read)/float64(size), eta)
	}
	fmt.Fprint(out, line)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
