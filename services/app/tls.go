package app

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-metrics/weir/pkg/config"
	"github.com/weir-metrics/weir/pkg/filewatch"
)

// certReloader serves the HTTP listener's certificate and swaps in a new
// one when the files change, so a renewed certificate needs no restart. A
// new pair that does not load (say, the certificate was replaced and the
// key not yet) is refused and the previous pair keeps serving.
type certReloader struct {
	cert    atomic.Pointer[tls.Certificate]
	watcher *filewatch.Watcher
}

func newCertReloader(c config.HTTPTLSConfig, log *slog.Logger, reg prometheus.Registerer) (*certReloader, error) {
	r := &certReloader{}
	w, err := filewatch.New(filewatch.Options{
		Name:  "tls",
		Paths: []string{c.CertFile, c.KeyFile},
		Load: func(contents [][]byte) error {
			cert, err := tls.X509KeyPair(contents[0], contents[1])
			if err != nil {
				return fmt.Errorf("http.tls.cert_file and key_file do not form a key pair: %w", err)
			}
			r.cert.Store(&cert)
			return nil
		},
		Interval:   c.ReloadInterval,
		Logger:     log,
		Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	r.watcher = w
	return r, nil
}

// tlsConfig accepts TLS 1.2 and newer: older versions have known
// weaknesses and every client weir serves speaks 1.2.
func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.cert.Load(), nil
		},
	}
}
