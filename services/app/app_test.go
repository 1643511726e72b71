package app

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-metrics/weir/pkg/config"
)

// startProcess runs a process with no services on a free port.
func startProcess(t *testing.T, mutate func(*config.Config)) (*Process, string) {
	t.Helper()
	cfg := config.Default()
	cfg.HTTP.Addr = "127.0.0.1:0"
	if mutate != nil {
		mutate(&cfg)
	}
	p := New(&cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	p.Mux().Handle("POST /echo", "echo", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = w.Write(b)
	}))
	addr, err := p.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return p, addr.String()
}

// writeCert writes a self-signed certificate for 127.0.0.1 with the given
// serial number and returns its pool.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "weir test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// TestHTTPS serves over TLS with a self-signed certificate, refuses TLS
// 1.1, and picks up a replaced certificate without a restart.
func TestHTTPS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool1 := writeCert(t, certFile, keyFile, 1)
	_, addr := startProcess(t, func(c *config.Config) {
		c.HTTP.TLS = config.HTTPTLSConfig{CertFile: certFile, KeyFile: keyFile, ReloadInterval: 50 * time.Millisecond}
	})

	get := func(pool *x509.CertPool, maxVersion uint16) (*http.Response, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: maxVersion}}
		defer tr.CloseIdleConnections()
		return (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + addr + "/-/healthy")
	}
	resp, err := get(pool1, 0)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 1 {
		t.Fatalf("status %d TLS %+v", resp.StatusCode, resp.TLS)
	}
	if _, err := get(pool1, tls.VersionTLS11); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
	// Plain HTTP gets no answer it can use.
	if resp, err := http.Get("http://" + addr + "/-/healthy"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP served")
		}
	}

	// Renew the certificate: new connections get the new one.
	pool2 := writeCert(t, certFile, keyFile, 2)
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := get(pool2, 0)
		if err == nil {
			resp.Body.Close()
			if resp.TLS.PeerCertificates[0].SerialNumber.Int64() == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("renewed certificate not served after 5s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A broken pair is refused; the renewed one keeps serving.
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	resp, err = get(pool2, 0)
	if err != nil {
		t.Fatalf("after a broken key file: %v", err)
	}
	resp.Body.Close()
}

// TestSlowClientsCutOff holds connections open without finishing the
// request: the server closes them after its header and read timeouts
// instead of keeping them forever.
func TestSlowClientsCutOff(t *testing.T) {
	_, addr := startProcess(t, func(c *config.Config) {
		c.HTTP.ReadHeaderTimeout = 300 * time.Millisecond
		c.HTTP.ReadTimeout = 600 * time.Millisecond
	})
	for _, c := range []struct {
		name, sent string
	}{
		{"headers never finished", "POST /echo HTTP/1.1\r\nHost: weir\r\nX-Slow: "},
		{"body never finished", "POST /echo HTTP/1.1\r\nHost: weir\r\nContent-Length: 1000\r\n\r\nonly a little"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			if _, err := io.WriteString(conn, c.sent); err != nil {
				t.Fatal(err)
			}
			// Whatever the server answers, it must then close the
			// connection: reading ends within a few seconds.
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			rest, err := io.ReadAll(bufio.NewReader(conn))
			took := time.Since(start)
			if err != nil && !strings.Contains(err.Error(), "reset") {
				t.Fatalf("connection not closed by the server after %s: %v", took, err)
			}
			if took > 5*time.Second {
				t.Fatalf("connection held for %s", took)
			}
			if strings.Contains(string(rest), "200 OK") {
				t.Fatalf("incomplete request answered 200: %q", rest)
			}
		})
	}
}
