package edge

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/gzip"

	"github.com/weir-metrics/weir/pkg/limits"
)

// readBody reads the request body into *buf, refusing bodies above
// lim.MaxRequestBytes, before reading them when Content-Length says so.
// The body's memory is reserved in rsv before it is allocated.
func readBody(r *http.Request, buf *[]byte, ten string, lim *limits.Limits, rsv *reservation) *refusal {
	max := lim.MaxRequestBytes
	if r.ContentLength > max {
		return refuse(http.StatusRequestEntityTooLarge, limits.MaxRequestBytes,
			"request body of %d bytes exceeds max_request_bytes (%d) of tenant %q (edge.max_request_bytes or edge.runtime_file); send smaller batches", r.ContentLength, max, ten)
	}
	b := (*buf)[:0]
	if r.ContentLength > 0 {
		if rf := rsv.grow(r.ContentLength); rf != nil {
			return rf
		}
		if int64(cap(b)) < r.ContentLength {
			b = make([]byte, 0, r.ContentLength)
		}
	}
	grow := rsv.grow
	if r.ContentLength > 0 {
		// Reserved in full already; a body longer than it said is
		// refused as soon as it passes max anyway.
		grow = nil
	}
	b, rf, err := readLimited(b, r.Body, max, grow)
	*buf = b
	if rf != nil {
		return rf
	}
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
// soon as more than limit bytes came, so memory stays bounded by limit
// whatever the sender (or a decompressor) produces. When grow is set,
// every enlargement of b is first reserved with it, and its refusal ends
// the read.
func readLimited(b []byte, rd io.Reader, limit int64, grow func(int64) *refusal) ([]byte, *refusal, error) {
	lr := io.LimitReader(rd, limit+1)
	for {
		if len(b) == cap(b) {
			// Double, but never past what limit allows to be read.
			want := min(limit+1, int64(max(2*cap(b), 4096)))
			if want <= int64(cap(b)) {
				want = int64(cap(b)) + 1
			}
			if grow != nil {
				if rf := grow(want - int64(cap(b))); rf != nil {
					return b, rf, nil
				}
			}
			b = slices.Grow(b, int(want)-len(b))
		}
		n, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if int64(len(b)) > limit {
			return b, nil, errTooLarge
		}
		if err == io.EOF {
			return b, nil, nil
		}
		if err != nil {
			return b, nil, err
		}
	}
}

// decodeSnappy inflates body (snappy block format) into *out. The decoded
// length is read from the snappy header and checked, and reserved in rsv,
// before anything is allocated, so a bomb costs nothing.
func decodeSnappy(body []byte, out *[]byte, ten string, lim *limits.Limits, rsv *reservation) *refusal {
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return refuse(http.StatusBadRequest, "invalid_snappy", "decoding snappy body: %v", err)
	}
	if int64(n) > lim.MaxDecompressedBytes {
		return decompressedTooLarge(int64(n), ten, lim)
	}
	if rf := rsv.grow(int64(n)); rf != nil {
		return rf
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
// limit. The output is reserved in rsv as it grows.
func gunzip(body []byte, out *[]byte, ten string, lim *limits.Limits, rsv *reservation) *refusal {
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
	// The trailer's ISIZE is the last member's size modulo 4 GiB: the
	// whole is at least that. Above the limit, the bomb is refused
	// without inflating a byte; below, it sizes the buffer in one
	// allocation for honest senders (a lying one only makes it grow).
	hint := int64(0)
	if n := len(body); n >= 18 {
		isize := int64(binary.LittleEndian.Uint32(body[n-4:]))
		if isize > lim.MaxDecompressedBytes {
			return decompressedTooLarge(isize, ten, lim)
		}
		hint = isize + 1 // room to see the end
	}
	// A pooled buffer is held too: reserve its capacity first.
	b := (*out)[:0]
	if c := max(int64(cap(b)), hint); c > 0 {
		if rf := rsv.grow(c); rf != nil {
			return rf
		}
		if int64(cap(b)) < c {
			b = make([]byte, 0, c)
		}
	}
	b, rf, err := readLimited(b, zr, lim.MaxDecompressedBytes, rsv.grow)
	*out = b
	if rf != nil {
		return rf
	}
	if errors.Is(err, errTooLarge) {
		return decompressedTooLarge(0, ten, lim)
	}
	if err != nil {
		return refuse(http.StatusBadRequest, "invalid_gzip", "decoding gzip body: %v", err)
	}
	return nil
}
