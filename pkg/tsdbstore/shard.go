package tsdbstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
)

// checkpointFile holds, per Kafka partition, the next offset to consume:
// everything before it is in this shard's WAL.
const checkpointFile = "weir-offsets.json"

// Shard is one TSDB of one tenant.
type Shard struct {
	dir    string
	tenant string
	n      int
	db     *tsdb.DB
	// dbp is db for the TSDB's own goroutines, which may call back
	// before Open returned.
	dbp atomic.Pointer[tsdb.DB]

	mu           sync.Mutex
	ooo          time.Duration // the out-of-order window in force
	maxExemplars int64
	minFreeDisk  int64
	checkpoint   map[int32]int64
	scratch      labels.ScratchBuilder
	// refs maps a series (by a 128-bit hash of its labels) to its head
	// reference. A reference of a series the head dropped is detected on
	// append and replaced; trimRefs bounds what such entries cost.
	refs   map[refKey]storage.SeriesRef
	keyBuf []byte
	// strs interns metadata strings (help texts and units: one per
	// metric family).
	strs map[string]string
}

func openShard(dir, ten string, n int, o Options) (*Shard, error) {
	logger := o.Logger.With("tenant", ten, "shard", n)
	sh := &Shard{
		dir: dir, tenant: ten, n: n, ooo: o.outOfOrderWindow(ten), maxExemplars: o.MaxExemplars, minFreeDisk: o.MinFreeDiskBytes,
		checkpoint: map[int32]int64{}, scratch: labels.NewScratchBuilder(16),
		refs: map[refKey]storage.SeriesRef{}, strs: map[string]string{},
	}
	db, err := tsdb.Open(dir, logger, nil, tsdbOptions(o, sh), nil)
	if err != nil {
		return nil, fmt.Errorf("opening TSDB shard %d of tenant %s in %s: %w", n, ten, dir, err)
	}
	sh.db = db
	sh.dbp.Store(db)
	if err := sh.loadCheckpoint(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return sh, nil
}

// Dir is the shard's TSDB directory.
func (sh *Shard) Dir() string { return sh.dir }

// DB is the shard's TSDB.
func (sh *Shard) DB() *tsdb.DB { return sh.db }

// Tenant is the shard's tenant.
func (sh *Shard) Tenant() string { return sh.tenant }

// Index is the shard's number within its tenant.
func (sh *Shard) Index() int { return sh.n }

// AppendResult counts what an Append stored and what it refused.
type AppendResult struct {
	Samples    int
	Histograms int
	Exemplars  int
	// Discarded counts refused samples by reason (out_of_order,
	// out_of_bounds, too_old, duplicate_timestamp, invalid_histogram,
	// other).
	Discarded map[string]int
	// ExemplarsDiscarded counts refused exemplars.
	ExemplarsDiscarded int
}

func (r *AppendResult) discard(reason string) {
	if r.Discarded == nil {
		r.Discarded = map[string]int{}
	}
	r.Discarded[reason]++
}

// Append stores every series of req in one TSDB transaction. A sample the
// TSDB refuses (out of order, too old, …) is counted and skipped; the rest
// of the request is stored. Appending a sample that is already stored
// with the same timestamp and value is a no-op, which makes redelivered
// records harmless.
func (sh *Shard) Append(ctx context.Context, req *prw.Request) (AppendResult, error) {
	if err := checkFreeDisk(sh.dir, sh.minFreeDisk); err != nil {
		return AppendResult{}, err
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var res AppendResult
	app := sh.db.AppenderV2(ctx)
	var exemplars []exemplar.Exemplar
	sh.trimRefs()
	for i := range req.Series {
		ts := &req.Series[i]
		// A series seen before is appended by its reference, without
		// building its label set: that is most of the append's cost.
		key := sh.refKey(ts.Labels)
		ref, known := sh.refs[key]
		ls := labels.EmptyLabels()
		if !known {
			ls = sh.labelsOf(ts.Labels)
		}

		md := metadata.Metadata{}
		if ts.Metadata != (prw.Metadata{}) {
			// The TSDB keeps metadata per series: intern the strings so
			// they do not pin the record buffer, and so a family's help
			// text is one string, not one per series and record.
			md = metadata.Metadata{Type: metricType(ts.Metadata.Type), Help: sh.intern(ts.Metadata.Help), Unit: sh.intern(ts.Metadata.Unit)}
		}
		exemplars = exemplars[:0]
		for _, e := range ts.Exemplars {
			sh.scratch.Reset()
			for _, l := range e.Labels {
				sh.scratch.Add(l.Name, l.Value)
			}
			exemplars = append(exemplars, exemplar.Exemplar{Labels: sh.scratch.Labels(), Value: e.Value, Ts: e.Timestamp, HasTs: true})
		}
		sort.Slice(exemplars, func(a, b int) bool { return exemplars[a].Ts < exemplars[b].Ts })

		// Exemplars and metadata ride on the series' last data point.
		last := len(ts.Samples) + len(ts.Histograms) - 1
		for k := 0; k <= last; k++ {
			var opts storage.AppendV2Options
			if k == last {
				opts = storage.AppendV2Options{Metadata: md, Exemplars: exemplars}
			}
			var (
				r   storage.SeriesRef
				err error
			)
			if k < len(ts.Samples) {
				s := ts.Samples[k]
				r, err = app.Append(ref, ls, s.StartTimestamp, s.Timestamp, s.Value, nil, nil, opts)
				if err != nil && ls.IsEmpty() && errors.Is(err, tsdb.ErrInvalidSample) {
					// The head dropped the series since it was cached
					// (compaction): append it by its labels.
					ref, ls = 0, sh.labelsOf(ts.Labels)
					r, err = app.Append(0, ls, s.StartTimestamp, s.Timestamp, s.Value, nil, nil, opts)
				}
			} else {
				if ls.IsEmpty() {
					// Histograms are rare: append them by labels, which
					// also covers a series the head dropped.
					ref, ls = 0, sh.labelsOf(ts.Labels)
				}
				h := ts.Histograms[k-len(ts.Samples)]
				ih, fh, herr := h.Decode()
				if herr != nil {
					res.discard("invalid_histogram")
					if k == last {
						res.ExemplarsDiscarded += len(exemplars)
					}
					continue
				}
				r, err = app.Append(ref, ls, 0, h.Timestamp, 0, ih, fh, opts)
			}
			stored, exemplarErrs := classify(&res, err)
			if stored {
				ref = r
				if k < len(ts.Samples) {
					res.Samples++
				} else {
					res.Histograms++
				}
			}
			if k == last {
				if stored {
					res.Exemplars += len(exemplars) - exemplarErrs
					res.ExemplarsDiscarded += exemplarErrs
				} else {
					res.ExemplarsDiscarded += len(exemplars)
				}
			}
		}
		if ref != 0 {
			sh.refs[key] = ref
		}
	}
	if err := app.Commit(); err != nil {
		return AppendResult{}, fmt.Errorf("committing to TSDB shard %d of tenant %s: %w", sh.n, sh.tenant, err)
	}
	return res, nil
}

// classify sorts an append error into a discard reason; it reports
// whether the sample was stored and how many of its exemplars were not.
func classify(res *AppendResult, err error) (stored bool, exemplarErrs int) {
	if err == nil {
		return true, 0
	}
	var partial *storage.AppendPartialError
	if errors.As(err, &partial) {
		return true, len(partial.ExemplarErrors)
	}
	switch {
	case errors.Is(err, storage.ErrOutOfOrderSample):
		res.discard("out_of_order")
	case errors.Is(err, storage.ErrOutOfBounds):
		res.discard("out_of_bounds")
	case errors.Is(err, storage.ErrTooOldSample):
		res.discard("too_old")
	case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		res.discard("duplicate_timestamp")
	default:
		res.discard("other")
	}
	return false, 0
}

func metricType(t prw.MetricType) model.MetricType {
	switch t {
	case prw.MetricTypeCounter:
		return model.MetricTypeCounter
	case prw.MetricTypeGauge:
		return model.MetricTypeGauge
	case prw.MetricTypeHistogram:
		return model.MetricTypeHistogram
	case prw.MetricTypeGaugeHistogram:
		return model.MetricTypeGaugeHistogram
	case prw.MetricTypeSummary:
		return model.MetricTypeSummary
	case prw.MetricTypeInfo:
		return model.MetricTypeInfo
	case prw.MetricTypeStateset:
		return model.MetricTypeStateset
	}
	return model.MetricTypeUnknown
}

// SyncWAL makes everything appended so far durable: the TSDB writes its
// WAL with write(2) on every commit, which survives a killed process but
// not a machine crash; fsync of the newest segments covers that too.
// Older segments were fsynced by the TSDB when it moved past them.
func (sh *Shard) SyncWAL() error {
	walDir := filepath.Join(sh.dir, "wal")
	entries, err := os.ReadDir(walDir)
	if err != nil {
		return fmt.Errorf("listing WAL of shard %s: %w", sh.dir, err)
	}
	var segs []string
	for _, e := range entries {
		if !e.IsDir() && isDigits(e.Name()) {
			segs = append(segs, e.Name())
		}
	}
	sort.Strings(segs)
	// The segment before the newest may still be waiting for the TSDB's
	// own asynchronous fsync.
	if len(segs) > 2 {
		segs = segs[len(segs)-2:]
	}
	for _, name := range segs {
		if err := fsyncFile(filepath.Join(walDir, name)); err != nil {
			return fmt.Errorf("syncing WAL segment %s of shard %s: %w", name, sh.dir, err)
		}
	}
	return nil
}

// Checkpoint returns the next offset to consume of each partition stored
// in this shard.
func (sh *Shard) Checkpoint() map[int32]int64 {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	out := make(map[int32]int64, len(sh.checkpoint))
	for p, o := range sh.checkpoint {
		out[p] = o
	}
	return out
}

// SaveCheckpoint durably records next offsets; call it only after SyncWAL
// covered every record before them.
func (sh *Shard) SaveCheckpoint(next map[int32]int64) error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	changed := false
	for p, o := range next {
		if sh.checkpoint[p] != o {
			sh.checkpoint[p] = o
			changed = true
		}
	}
	if !changed {
		return nil
	}
	data, err := json.Marshal(sh.checkpoint)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(sh.dir, checkpointFile), data)
}

func (sh *Shard) loadCheckpoint() error {
	data, err := os.ReadFile(filepath.Join(sh.dir, checkpointFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading offsets checkpoint of %s: %w", sh.dir, err)
	}
	if err := json.Unmarshal(data, &sh.checkpoint); err != nil {
		return fmt.Errorf("offsets checkpoint %s is corrupt (delete it to fall back to the committed Kafka offsets): %w", filepath.Join(sh.dir, checkpointFile), err)
	}
	return nil
}

func (sh *Shard) close() error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.db.Close()
}

// refKey identifies a series in the reference cache. 128 bits make a
// collision, which would append to the wrong series, practically
// impossible (about 1e-20 at a billion series).
type refKey [2]uint64

func (sh *Shard) refKey(ls []prw.Label) refKey {
	sh.keyBuf = record.AppendSeriesKey(sh.keyBuf[:0], "", ls)
	return refKey{maphash.Bytes(refSeeds[0], sh.keyBuf), maphash.Bytes(refSeeds[1], sh.keyBuf)}
}

// refSeeds seed the two halves of reference cache keys. The cache lives
// in memory only, so the process-random seeds of hash/maphash (AES-based,
// the fastest hash at hand) are fine.
var refSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func (sh *Shard) intern(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := sh.strs[s]; ok {
		return v
	}
	if len(sh.strs) > 100_000 {
		clear(sh.strs) // a sender inventing help texts must not grow this forever
	}
	v := strings.Clone(s)
	sh.strs[v] = v
	return v
}

func (sh *Shard) labelsOf(ls []prw.Label) labels.Labels {
	sh.scratch.Reset()
	for _, l := range ls {
		sh.scratch.Add(l.Name, l.Value)
	}
	return sh.scratch.Labels()
}

// trimRefs forgets the cache when it holds far more entries than the
// head has series: most are then series the head dropped (churn), and the
// live ones come back with their next sample.
func (sh *Shard) trimRefs() {
	if n := uint64(len(sh.refs)); n > 2*sh.db.Head().NumSeries()+10_000 {
		clear(sh.refs)
	}
}

// setOutOfOrderWindow changes the shard's out-of-order window.
func (sh *Shard) setOutOfOrderWindow(d time.Duration) error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if d == sh.ooo {
		return nil
	}
	err := sh.db.ApplyConfig(&promconfig.Config{StorageConfig: promconfig.StorageConfig{
		TSDBConfig: &promconfig.TSDBConfig{OutOfOrderTimeWindow: d.Milliseconds()},
		// The whole storage configuration is applied: keep the exemplar
		// ring as it is.
		ExemplarsConfig: &promconfig.ExemplarsConfig{MaxExemplars: sh.maxExemplars},
	}})
	if err != nil {
		return err
	}
	sh.ooo = d
	return nil
}

// HeadSeries is the number of series in the shard's head.
func (sh *Shard) HeadSeries() uint64 { return sh.db.Head().NumSeries() }

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func fsyncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// writeFileAtomic replaces path with data so that a reader or a crash sees
// either the old or the new content.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return fsyncFile(filepath.Dir(path))
}
