package weirtest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// Content types of the two remote-write versions.
const (
	ContentTypeV1 = "application/x-protobuf;proto=prometheus.WriteRequest"
	ContentTypeV2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
)

// WriteResult is what a write request got back.
type WriteResult struct {
	Status                            int
	Body                              string
	Header                            http.Header
	SamplesWritten, HistogramsWritten int
	ExemplarsWritten                  int
}

// PostRaw posts body as is with the given headers.
func PostRaw(url string, body []byte, headers map[string]string) (WriteResult, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return WriteResult{}, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return WriteResult{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	res := WriteResult{Status: resp.StatusCode, Body: string(b), Header: resp.Header}
	res.SamplesWritten, _ = strconv.Atoi(resp.Header.Get("X-Prometheus-Remote-Write-Samples-Written"))
	res.HistogramsWritten, _ = strconv.Atoi(resp.Header.Get("X-Prometheus-Remote-Write-Histograms-Written"))
	res.ExemplarsWritten, _ = strconv.Atoi(resp.Header.Get("X-Prometheus-Remote-Write-Exemplars-Written"))
	return res, nil
}

// WriteV1 sends a remote-write 1.0 request for tenant ("" sends no
// X-Scope-OrgID) to baseURL.
func WriteV1(baseURL, tenant string, req *prompb.WriteRequest) (WriteResult, error) {
	b, err := req.Marshal()
	if err != nil {
		return WriteResult{}, err
	}
	return PostRaw(baseURL+"/api/v1/write", snappy.Encode(nil, b), headers(tenant, ContentTypeV1))
}

// WriteV2 sends a remote-write 2.0 request.
func WriteV2(baseURL, tenant string, req *writev2.Request) (WriteResult, error) {
	b, err := req.Marshal()
	if err != nil {
		return WriteResult{}, err
	}
	return PostRaw(baseURL+"/api/v1/write", snappy.Encode(nil, b), headers(tenant, ContentTypeV2))
}

func headers(tenant, contentType string) map[string]string {
	h := map[string]string{
		"Content-Type":                      contentType,
		"Content-Encoding":                  "snappy",
		"X-Prometheus-Remote-Write-Version": "0.1.0",
	}
	if contentType == ContentTypeV2 {
		h["X-Prometheus-Remote-Write-Version"] = "2.0.0"
	}
	if tenant != "" {
		h["X-Scope-OrgID"] = tenant
	}
	return h
}

// MustWrite fails unless the write got 204.
func MustWrite(res WriteResult, err error) error {
	if err != nil {
		return err
	}
	if res.Status != http.StatusNoContent {
		return fmt.Errorf("write answered %d: %s", res.Status, res.Body)
	}
	return nil
}
