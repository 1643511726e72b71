package edge

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/gzip"

	"github.com/weir-metrics/weir/pkg/limits"
)

// readBody reads the request body into *buf, refusing bodies above
// lim.MaxRequestBytes, before reading them when Content-Length says so.
func readBody(r *http.Request, buf *[]byte, ten string, lim *limits.Limits) *refusal {
	max := lim.MaxRequestBytes
	if r.ContentLength > max {
		return refuse(http.StatusRequestEntityTooLarge, limits.MaxRequestBytes,
			"request body of %d bytes exceeds max_request_bytes (%d) of tenant %q (edge.max_request_bytes or edge.runtime_file); send smaller batches", r.ContentLength, max, ten)
	}
	b := (*buf)[:0]
	if r.ContentLength > 0 && int64(cap(b)) < r.ContentLength {
		b = make([]byte, 0, r.ContentLength)
	}
	b, err := readLimited(b, r.Body, max)
	*buf = b
	if errors.Is(err, errTooLarge) {
		return refuse(http.StatusRequestEntityTooLarge, limits.MaxRequestBytes,
			"request body exceeds max_request_bytes (%d) of tenant %q (edge.max_request_bytes or edge.runtime_file); send smaller batches", max, ten)
	}
	if err != nil {
		return refuse(http.StatusBadRequest, "body_read_error", "reading request body: %v", err)
	}
	return nil
}

var errTooLarge = errors.New("too large")

// readLimited appends what rd yields to b, and fails with errTooLarge as
// soon as more than max bytes came, so memory stays bounded by max
// whatever the sender (or a decompressor) produces.
func readLimited(b []byte, rd io.Reader, max int64) ([]byte, error) {
	lr := io.LimitReader(rd, max+1)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if int64(len(b)) > max {
			return b, errTooLarge
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// decodeSnappy inflates body (snappy block format) into *out. The decoded
// length is read from the snappy header and checked before anything is
// allocated, so a bomb costs nothing.
func decodeSnappy(body []byte, out *[]byte, ten string, lim *limits.Limits) *refusal {
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return refuse(http.StatusBadRequest, "invalid_snappy", "decoding snappy body: %v", err)
	}
	if int64(n) > lim.MaxDecompressedBytes {
		return decompressedTooLarge(int64(n), ten, lim)
	}
	if cap(*out) < n {
		*out = make([]byte, n)
	}
	dec, err := snappy.Decode((*out)[:cap(*out)], body)
	if err != nil {
		return refuse(http.StatusBadRequest, "invalid_snappy", "decoding snappy body: %v", err)
	}
	*out = dec
	return nil
}

func decompressedTooLarge(n int64, ten string, lim *limits.Limits) *refusal {
	size := "more than"
	if n > 0 {
		size = "to " + strconv.FormatInt(n, 10) + " bytes, more than"
	}
	return refuse(http.StatusRequestEntityTooLarge, limits.MaxDecompressedBytes,
		"body decompresses %s max_decompressed_bytes (%d) of tenant %q (edge.max_decompressed_bytes or edge.runtime_file); send smaller batches", size, lim.MaxDecompressedBytes, ten)
}

var gzipReaders sync.Pool

// gunzip inflates body into *out, stopping as soon as the output exceeds
// lim.MaxDecompressedBytes: a gzip bomb is never inflated beyond the
// limit.
func gunzip(body []byte, out *[]byte, ten string, lim *limits.Limits) *refusal {
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(bytes.NewReader(body))
	} else {
		err = zr.Reset(bytes.NewReader(body))
	}
	if err != nil {
		return refuse(http.StatusBadRequest, "invalid_gzip", "decoding gzip body: %v", err)
	}
	defer gzipReaders.Put(zr)
	b, err := readLimited((*out)[:0], zr, lim.MaxDecompressedBytes)
	*out = b
	if errors.Is(err, errTooLarge) {
		return decompressedTooLarge(0, ten, lim)
	}
	if err != nil {
		return refuse(http.StatusBadRequest, "invalid_gzip", "decoding gzip body: %v", err)
	}
	return nil
}
