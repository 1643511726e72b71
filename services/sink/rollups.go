package sink

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-metrics/weir/pkg/bucket"
	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/rollupparquet"
)

// newParquetWriter prepares the Parquet writer of the rollups, or nil when
// rollup.enabled is off. It writes into the same bucket as the blocks,
// under rollups/.
func newParquetWriter(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*rollupparquet.Consumer, error) {
	if !cfg.Rollup.Enabled {
		return nil, nil
	}
	bkt, err := bucket.Open(cfg, log, reg, "parquet")
	if err != nil {
		return nil, err
	}
	return rollupparquet.NewConsumer(cfg, log, reg, rollupparquet.Options{
		Bucket:       bkt,
		RowGroupRows: cfg.Rollup.ParquetRowGroupRows,
		MaxFileAge:   cfg.Rollup.ParquetMaxFileAge,
		MaxFileRows:  cfg.Rollup.ParquetMaxFileRows,
		TmpDir:       filepath.Join(cfg.DataDir, "parquet-tmp"),
		CreatedBy:    "weir",
	})
}

// runParquet runs the Parquet writer beside the TSDB writer; the returned
// function stops it and waits.
func (s *Sink) runParquet(ctx context.Context) (stop func()) {
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.parquet.Run(pctx); err != nil {
			s.log.Error("Parquet writer stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }
}
