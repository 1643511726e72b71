// Package tsdbstore keeps tenants' samples in Prometheus TSDBs: each tenant
// has a fixed number of shards, each shard is one prometheus/tsdb database
// under <dir>/<tenant>/<shard>, and a Kafka partition p always lands in
// shard p mod shards. Queries of a tenant merge its shards.
package tsdbstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/compression"
	"golang.org/x/sys/unix"

	"github.com/weir-metrics/weir/pkg/tenant"
)

// Options configures a Store.
type Options struct {
	// Dir holds one directory per tenant.
	Dir string
	// Shards is the number of shards of every tenant. Changing it moves
	// partitions to other shards; old shards stay readable.
	Shards int
	// BlockDuration is the TSDB block range.
	BlockDuration time.Duration
	// Retention is how long blocks are kept.
	Retention time.Duration
	// OutOfOrderWindow accepts samples this much older than a series'
	// newest, for tenants OutOfOrderWindowFor does not decide.
	OutOfOrderWindow time.Duration
	// OutOfOrderWindowFor, when set, gives each tenant its own window
	// (ApplyOutOfOrderWindows applies changes to open shards).
	OutOfOrderWindowFor func(tenant string) time.Duration
	// MaxExemplars bounds the exemplars each shard keeps in memory;
	// default 100k per tenant, split over its shards.
	MaxExemplars int64
	// CanDeleteBlock, when set, must approve every block the TSDB wants
	// to delete (past retention); the sink uses it so that a block is
	// never deleted before it was uploaded.
	CanDeleteBlock func(sh *Shard, id ulid.ULID) bool
	// MinFreeDiskBytes is the free space Dir's filesystem must have for a
	// shard to be opened or appended to; below it both fail with
	// ErrLowDisk before anything is written. 0 disables the check.
	MinFreeDiskBytes int64
	Logger           *slog.Logger
}

// Store holds the shards of every tenant.
type Store struct {
	opts Options
	mu   sync.RWMutex
	// tenants maps a tenant to its shards; a nil entry is a shard not
	// opened yet.
	tenants map[string][]*Shard
	closed  bool
}

// Open opens the store and every tenant shard already on disk, so data
// written before a restart is queryable at once.
func Open(opts Options) (*Store, error) {
	if opts.Shards < 1 {
		return nil, fmt.Errorf("shards must be at least 1, got %d", opts.Shards)
	}
	if opts.MaxExemplars == 0 {
		// The exemplar ring is allocated whole; 100k per tenant, as
		// Prometheus keeps per instance, split over the shards.
		opts.MaxExemplars = int64(100_000 / opts.Shards)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating TSDB directory: %w", err)
	}
	s := &Store{opts: opts, tenants: map[string][]*Shard{}}
	entries, err := os.ReadDir(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("reading TSDB directory: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || tenant.ValidateID(e.Name()) != nil {
			continue
		}
		shardDirs, err := os.ReadDir(filepath.Join(opts.Dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading tenant directory %s: %w", e.Name(), err)
		}
		for _, sd := range shardDirs {
			n, err := strconv.Atoi(sd.Name())
			if !sd.IsDir() || err != nil || n < 0 {
				continue
			}
			if _, err := s.shard(e.Name(), n); err != nil {
				s.Close()
				return nil, err
			}
		}
	}
	return s, nil
}

// ShardOf is the shard of a Kafka partition.
func (s *Store) ShardOf(partition int32) int { return int(partition) % s.opts.Shards }

// Shard returns the shard of a tenant's partition, opening it on first use.
func (s *Store) Shard(ten string, partition int32) (*Shard, error) {
	return s.shard(ten, s.ShardOf(partition))
}

func (s *Store) shard(ten string, n int) (*Shard, error) {
	s.mu.RLock()
	if sh := s.tenants[ten]; n < len(sh) && sh[n] != nil {
		s.mu.RUnlock()
		return sh[n], nil
	}
	s.mu.RUnlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("TSDB store is closed")
	}
	shards := s.tenants[ten]
	if n < len(shards) && shards[n] != nil {
		return shards[n], nil
	}
	if n >= len(shards) {
		shards = append(shards, make([]*Shard, n+1-len(shards))...)
	}
	// Opening may repair the WAL, which rewrites a segment: on a full
	// disk that rewrite fails halfway and loses the segment.
	if err := checkFreeDisk(s.opts.Dir, s.opts.MinFreeDiskBytes); err != nil {
		return nil, fmt.Errorf("opening shard %d of tenant %s: %w", n, ten, err)
	}
	sh, err := openShard(filepath.Join(s.opts.Dir, ten, strconv.Itoa(n)), ten, n, s.opts)
	if err != nil {
		return nil, err
	}
	shards[n] = sh
	s.tenants[ten] = shards
	return sh, nil
}

// Tenants lists the tenants with at least one shard.
func (s *Store) Tenants() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.tenants))
	for t := range s.tenants {
		out = append(out, t)
	}
	return out
}

// Shards returns the open shards of a tenant.
func (s *Store) Shards(ten string) []*Shard {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*Shard
	for _, sh := range s.tenants[ten] {
		if sh != nil {
			out = append(out, sh)
		}
	}
	return out
}

// Querier merges the queriers of a tenant's shards. A tenant without data
// gets an empty querier, never another tenant's.
func (s *Store) Querier(_ context.Context, ten string, mint, maxt int64) (storage.Querier, error) {
	shards := s.Shards(ten)
	qs := make([]storage.Querier, 0, len(shards))
	for _, sh := range shards {
		q, err := sh.db.Querier(mint, maxt)
		if err != nil {
			for _, q := range qs {
				_ = q.Close()
			}
			return nil, fmt.Errorf("querying shard %d of tenant %s: %w", sh.n, ten, err)
		}
		qs = append(qs, q)
	}
	if len(qs) == 0 {
		return storage.NoopQuerier(), nil
	}
	return storage.NewMergeQuerier(qs, nil, storage.ChainedSeriesMerge), nil
}

// ExemplarQuerier merges the exemplars of a tenant's shards.
func (s *Store) ExemplarQuerier(ctx context.Context, ten string) (storage.ExemplarQuerier, error) {
	var qs []storage.ExemplarQuerier
	for _, sh := range s.Shards(ten) {
		q, err := sh.db.ExemplarQuerier(ctx)
		if err != nil {
			return nil, err
		}
		qs = append(qs, q)
	}
	return MergeExemplarQueriers(qs), nil
}

// ErrLowDisk is the error of an append or an opening refused because the
// disk has less than Options.MinFreeDiskBytes free.
var ErrLowDisk = errors.New("disk nearly full")

// checkFreeDisk fails with ErrLowDisk when dir's filesystem has less than
// min bytes available (Options.MinFreeDiskBytes). Checking before writing keeps the TSDB from
// meeting a full disk mid-write, which tears its WAL (see Reopen).
func checkFreeDisk(dir string, min int64) error {
	if min <= 0 {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("checking free space of %s: %w", dir, err)
	}
	if free := int64(st.Bavail) * int64(st.Bsize); free < min {
		return fmt.Errorf("%w: %d bytes free on %s, less than sink.min_free_disk_bytes (%d); free some space or lower the setting", ErrLowDisk, free, dir, min)
	}
	return nil
}

// Reopen closes the shard of a tenant's partition; the next Shard opens
// it again from its directory. After a failed append the shard must not
// be written again as it is: the TSDB's WAL may end in the first part of
// a record whose rest was never written (a full disk fails the write
// mid-record), and every record appended after it would be cut off by
// the repair at the next open, although its offsets were checkpointed.
// Opening repairs the WAL up to the torn record, which belonged to the
// failed append, so a retried append then lands on a clean log.
func (s *Store) Reopen(ten string, partition int32) error {
	n := s.ShardOf(partition)
	s.mu.Lock()
	defer s.mu.Unlock()
	shards := s.tenants[ten]
	if n >= len(shards) || shards[n] == nil {
		return nil
	}
	sh := shards[n]
	shards[n] = nil
	if err := sh.close(); err != nil {
		return fmt.Errorf("closing shard %d of tenant %s to reopen it: %w", n, ten, err)
	}
	return nil
}

// Close closes every shard.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var errs []error
	for _, shards := range s.tenants {
		for _, sh := range shards {
			if sh != nil {
				errs = append(errs, sh.close())
			}
		}
	}
	return errors.Join(errs...)
}

func (o Options) outOfOrderWindow(tenant string) time.Duration {
	if o.OutOfOrderWindowFor != nil {
		return o.OutOfOrderWindowFor(tenant)
	}
	return o.OutOfOrderWindow
}

// ApplyOutOfOrderWindows gives every open shard its tenant's current
// out-of-order window.
func (s *Store) ApplyOutOfOrderWindows() error {
	var errs []error
	for _, ten := range s.Tenants() {
		want := s.opts.outOfOrderWindow(ten)
		for _, sh := range s.Shards(ten) {
			if err := sh.setOutOfOrderWindow(want); err != nil {
				errs = append(errs, fmt.Errorf("tenant %s shard %d: %w", ten, sh.n, err))
			}
		}
	}
	return errors.Join(errs...)
}

func tsdbOptions(o Options, sh *Shard) *tsdb.Options {
	opts := tsdb.DefaultOptions()
	opts.MinBlockDuration = o.BlockDuration.Milliseconds()
	// Blocks are not compacted into larger ones locally: object storage
	// compaction (Thanos, Mimir) expects blocks of one range.
	opts.MaxBlockDuration = o.BlockDuration.Milliseconds()
	opts.RetentionDuration = o.Retention.Milliseconds()
	opts.OutOfOrderTimeWindow = sh.ooo.Milliseconds()
	opts.EnableExemplarStorage = true
	opts.MaxExemplars = o.MaxExemplars
	// Isolation makes a query never see part of an append batch; it
	// costs about 70 bytes per series (measured at 200k series), and the
	// sink's batches are whole Kafka records whose partial visibility for
	// a moment harms no one.
	opts.IsolationDisabled = true
	opts.WALCompression = compression.Snappy
	opts.BlocksToDelete = func(blocks []*tsdb.Block) map[ulid.ULID]struct{} {
		db := sh.dbp.Load()
		if db == nil {
			// Still opening: delete nothing yet; the next reload will.
			return nil
		}
		del := tsdb.DefaultBlocksToDelete(db)(blocks)
		if o.CanDeleteBlock != nil {
			for id := range del {
				if !o.CanDeleteBlock(sh, id) {
					delete(del, id)
				}
			}
		}
		return del
	}
	return opts
}
