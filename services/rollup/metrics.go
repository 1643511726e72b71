package rollup

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	samples          *prometheus.CounterVec
	samplesDiscarded *prometheus.CounterVec
	rowsEmitted      *prometheus.CounterVec
	recordsDiscarded *prometheus.CounterVec
	windowsOpen      *prometheus.GaugeVec
	checkpointLag    *prometheus.GaugeVec
	commits          *prometheus.CounterVec
	produceFailures  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_rollup_samples_total",
			Help: "Samples taken into rollup windows, by tenant and rollup.",
		}, []string{"tenant", "rollup"}),
		samplesDiscarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_rollup_samples_discarded_total",
			Help: "Samples left out of the windows of one resolution, by tenant, rollup, resolution and reason (late, duplicate, out_of_order, non_finite, future, invalid_histogram).",
		}, []string{"tenant", "rollup", "resolution", "reason"}),
		rowsEmitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_rollup_rows_emitted_total",
			Help: "Rows of closed windows produced to the rollup topics, by tenant, rollup and resolution.",
		}, []string{"tenant", "rollup", "resolution"}),
		recordsDiscarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_rollup_records_discarded_total",
			Help: "Series records the rollup stage could not read and skipped, by tenant and reason.",
		}, []string{"tenant", "reason"}),
		windowsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weir_rollup_windows_open",
			Help: "Rollup windows open (one per series or group, resolution and window start), by tenant.",
		}, []string{"tenant"}),
		checkpointLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weir_rollup_checkpoint_lag_records",
			Help: "Records between the checkpoint and the position, summed over the tenant's partitions: what a restart reads again.",
		}, []string{"tenant"}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_rollup_commits_total",
			Help: "Checkpoint commits of the rollup stage, by result (committed, failed).",
		}, []string{"result"}),
		produceFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weir_rollup_produce_failures_total",
			Help: "Rollup records Kafka did not acknowledge; they are produced again before offsets move.",
		}),
	}
	reg.MustRegister(m.samples, m.samplesDiscarded, m.rowsEmitted, m.recordsDiscarded, m.windowsOpen, m.checkpointLag, m.commits, m.produceFailures)
	return m
}
