package sink

import (
	"context"
	"path"
	"strconv"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/thanos-io/objstore"

	"github.com/weir-metrics/weir/pkg/shipper"
	"github.com/weir-metrics/weir/pkg/tsdbstore"
)

// shipping uploads the blocks of every shard and tells the store which
// blocks may be deleted.
type shipping struct {
	bkt     objstore.Bucket
	metrics *shipper.Metrics
	s       *Sink

	mu       sync.Mutex
	shippers map[*tsdbstore.Shard]*shipper.Shipper
}

// BlocksPrefix is where a tenant's blocks live in the bucket.
func BlocksPrefix(tenant string) string { return path.Join("blocks", tenant) }

func (sp *shipping) shipperOf(sh *tsdbstore.Shard) (*shipper.Shipper, error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if x, ok := sp.shippers[sh]; ok {
		return x, nil
	}
	x, err := shipper.New(sp.bkt, sh.Dir(), BlocksPrefix(sh.Tenant()),
		map[string]string{"tenant": sh.Tenant(), "shard": strconv.Itoa(sh.Index())},
		sp.s.log.With("tenant", sh.Tenant(), "shard", sh.Index()), sp.metrics)
	if err != nil {
		return nil, err
	}
	sp.shippers[sh] = x
	return x, nil
}

// canDelete approves deleting a block only once it was uploaded.
func (sp *shipping) canDelete(sh *tsdbstore.Shard, id ulid.ULID) bool {
	x, err := sp.shipperOf(sh)
	return err == nil && x.Shipped(id)
}

// run uploads new blocks every sink.ship_interval until ctx is done. An
// unavailable bucket only delays uploads: blocks stay on disk meanwhile.
func (sp *shipping) run(ctx context.Context) {
	t := time.NewTicker(sp.s.cfg.Sink.ShipInterval)
	defer t.Stop()
	for {
		sp.syncAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (sp *shipping) syncAll(ctx context.Context) {
	for _, ten := range sp.s.store.Tenants() {
		for _, sh := range sp.s.store.Shards(ten) {
			x, err := sp.shipperOf(sh)
			if err != nil {
				sp.s.log.Error("cannot ship blocks", "tenant", ten, "shard", sh.Index(), "err", err)
				continue
			}
			var metas []tsdb.BlockMeta
			for _, b := range sh.DB().Blocks() {
				metas = append(metas, b.Meta())
			}
			if _, err := x.Sync(ctx, metas); err != nil && ctx.Err() == nil {
				sp.s.log.Warn("block upload failed; will retry", "tenant", ten, "shard", sh.Index(), "err", err)
			}
		}
	}
}
