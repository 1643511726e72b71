// Package shipper uploads the blocks of a prometheus/tsdb database to
// object storage with Thanos-compatible metadata, so Thanos Store Gateway
// and Querier (and Mimir's block tools) can read them.
//
// A block's files are uploaded before its meta.json: readers treat a block
// without meta.json as partial and ignore it, so nobody sees a half-written
// block. What was uploaded is remembered in a state file beside the TSDB,
// and a block may be deleted locally only once it is in that file.
package shipper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/thanos-io/objstore"
)

// StateFile lists the uploaded blocks of a TSDB directory.
const StateFile = "weir-shipped.json"

// Metrics are shared by the shippers of a process.
type Metrics struct {
	uploads       *prometheus.CounterVec
	uploadedBytes prometheus.Counter
	lastSuccess   prometheus.Gauge
}

// NewMetrics registers the shipping metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_sink_block_uploads_total",
			Help: "TSDB block uploads to object storage, by result (success, failure).",
		}, []string{"result"}),
		uploadedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weir_sink_block_uploaded_bytes_total",
			Help: "Bytes of TSDB blocks uploaded to object storage.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weir_sink_block_last_upload_timestamp_seconds",
			Help: "When a block was last uploaded successfully.",
		}),
	}
	reg.MustRegister(m.uploads, m.uploadedBytes, m.lastSuccess)
	return m
}

// Shipper uploads the blocks of one TSDB.
type Shipper struct {
	bkt    objstore.Bucket
	dir    string
	prefix string
	labels map[string]string
	log    *slog.Logger
	m      *Metrics

	mu      sync.Mutex
	shipped map[ulid.ULID]struct{}
}

// New returns a shipper of the TSDB in dir that uploads each block to
// <prefix>/<ULID>/ with the given external labels.
func New(bkt objstore.Bucket, dir, prefix string, labels map[string]string, log *slog.Logger, m *Metrics) (*Shipper, error) {
	s := &Shipper{bkt: bkt, dir: dir, prefix: prefix, labels: labels, log: log, m: m, shipped: map[ulid.ULID]struct{}{}}
	data, err := os.ReadFile(filepath.Join(dir, StateFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, StateFile), err)
	default:
		var st state
		if err := json.Unmarshal(data, &st); err != nil {
			// Losing the list costs re-uploads, which overwrite: safe.
			log.Warn("ignoring unreadable shipper state; blocks will be uploaded again", "file", filepath.Join(dir, StateFile), "err", err)
		}
		for _, id := range st.Uploaded {
			s.shipped[id] = struct{}{}
		}
	}
	return s, nil
}

type state struct {
	Version  int         `json:"version"`
	Uploaded []ulid.ULID `json:"uploaded"`
}

// Shipped reports whether block id is in the bucket.
func (s *Shipper) Shipped(id ulid.ULID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.shipped[id]
	return ok
}

// Sync uploads every block of blocks not uploaded yet, oldest first, and
// returns how many it uploaded. It stops at the first failure so blocks go
// up in order; the next Sync retries.
func (s *Shipper) Sync(ctx context.Context, blocks []tsdb.BlockMeta) (int, error) {
	sort.Slice(blocks, func(i, j int) bool { return blocks[i].MinTime < blocks[j].MinTime })
	n := 0
	for _, meta := range blocks {
		if s.Shipped(meta.ULID) {
			continue
		}
		size, err := s.upload(ctx, meta)
		if err != nil {
			s.m.uploads.WithLabelValues("failure").Inc()
			return n, fmt.Errorf("uploading block %s of %s: %w", meta.ULID, s.dir, err)
		}
		s.mu.Lock()
		s.shipped[meta.ULID] = struct{}{}
		s.mu.Unlock()
		if err := s.saveState(); err != nil {
			return n, err
		}
		s.m.uploads.WithLabelValues("success").Inc()
		s.m.uploadedBytes.Add(float64(size))
		s.m.lastSuccess.SetToCurrentTime()
		s.log.Info("block uploaded", "block", meta.ULID, "dir", s.dir, "bytes", size,
			"mint", time.UnixMilli(meta.MinTime).UTC(), "maxt", time.UnixMilli(meta.MaxTime).UTC())
		n++
	}
	return n, nil
}

func (s *Shipper) upload(ctx context.Context, meta tsdb.BlockMeta) (int64, error) {
	blockDir := filepath.Join(s.dir, meta.ULID.String())
	dst := path.Join(s.prefix, meta.ULID.String())
	var files []File
	var segments []string
	err := filepath.WalkDir(blockDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(blockDir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "meta.json" {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files = append(files, File{RelPath: rel, SizeBytes: info.Size()})
		if dir, name := path.Split(rel); dir == "chunks/" {
			segments = append(segments, name)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	var total int64
	for _, f := range files {
		if err := objstore.UploadFile(ctx, nopLogger{}, s.bkt, filepath.Join(blockDir, filepath.FromSlash(f.RelPath)), path.Join(dst, f.RelPath)); err != nil {
			return 0, err
		}
		total += f.SizeBytes
	}
	raw, err := os.ReadFile(filepath.Join(blockDir, "meta.json"))
	if err != nil {
		return 0, err
	}
	thanosMeta, err := WithThanos(raw, Thanos{
		Version:      1,
		Labels:       s.labels,
		Downsample:   Downsample{Resolution: 0},
		Source:       "weir",
		SegmentFiles: segments,
		Files:        append(files, File{RelPath: "meta.json"}),
	})
	if err != nil {
		return 0, err
	}
	if err := s.bkt.Upload(ctx, path.Join(dst, "meta.json"), bytesReader(thanosMeta)); err != nil {
		return 0, err
	}
	return total + int64(len(thanosMeta)), nil
}

func (s *Shipper) saveState() error {
	s.mu.Lock()
	st := state{Version: 1}
	for id := range s.shipped {
		st.Uploaded = append(st.Uploaded, id)
	}
	s.mu.Unlock()
	sort.Slice(st.Uploaded, func(i, j int) bool { return st.Uploaded[i].Compare(st.Uploaded[j]) < 0 })
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.dir, StateFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("writing shipper state: %w", err)
	}
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("syncing shipper state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(s.dir, StateFile))
}
