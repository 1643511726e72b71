// Package bucket opens weir's object storage: a directory on the local
// filesystem by default, any S3-compatible service by configuration, both
// through thanos-io/objstore's Bucket interface, which is all the rest of
// weir depends on.
package bucket

import (
	"context"
	"fmt"
	"log/slog"

	gokitlog "github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/s3"

	"github.com/weir-metrics/weir/pkg/config"
)

// Open returns the configured bucket, instrumented with objstore's
// metrics (thanos_objstore_bucket_*) under the given component name.
func Open(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer, component string) (objstore.Bucket, error) {
	var (
		bkt objstore.Bucket
		err error
	)
	switch cfg.Bucket.Backend {
	case "filesystem":
		bkt, err = newAtomicFilesystem(cfg.BucketDir())
		if err != nil {
			return nil, fmt.Errorf("opening filesystem bucket %s: %w", cfg.BucketDir(), err)
		}
	case "s3":
		c := s3.DefaultConfig
		c.Bucket = cfg.Bucket.S3.Bucket
		c.Endpoint = cfg.Bucket.S3.Endpoint
		c.Region = cfg.Bucket.S3.Region
		c.AccessKey = cfg.Bucket.S3.AccessKey
		c.SecretKey = cfg.Bucket.S3.SecretKey
		c.Insecure = cfg.Bucket.S3.Insecure
		if cfg.Bucket.S3.PathStyle {
			c.BucketLookupType = s3.PathLookup
		}
		bkt, err = s3.NewBucketWithConfig(GoKitLogger(log), c, component, nil)
		if err != nil {
			return nil, fmt.Errorf("opening S3 bucket %s at %s: %w", c.Bucket, c.Endpoint, err)
		}
	default:
		return nil, fmt.Errorf("bucket.backend %q is not filesystem or s3", cfg.Bucket.Backend)
	}
	return objstore.WrapWithMetrics(bkt, prometheus.WrapRegistererWith(prometheus.Labels{"component": component}, reg), cfg.Bucket.Backend), nil
}

// GoKitLogger adapts slog to the go-kit logger objstore takes.
func GoKitLogger(log *slog.Logger) gokitlog.Logger {
	return gokitlog.LoggerFunc(func(kv ...any) error {
		msg := "objstore"
		var attrs []any
		for i := 0; i+1 < len(kv); i += 2 {
			if k, ok := kv[i].(string); ok && k == "msg" {
				msg = fmt.Sprint(kv[i+1])
				continue
			}
			if k, ok := kv[i].(string); ok && k == "level" {
				continue
			}
			attrs = append(attrs, kv[i], kv[i+1])
		}
		log.Log(context.Background(), slog.LevelDebug, msg, attrs...)
		return nil
	})
}
