package edge

import (
	"bytes"
	"testing"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/gzip"

	"github.com/weir-metrics/weir/pkg/limits"
)

// FuzzBodies feeds arbitrary bodies to the edge's decompression, the
// first thing that touches an untrusted request: snappy and gzip never
// panic and never yield (or allocate for) more than max_decompressed_bytes;
// a body over the limit is refused with 413 naming the setting, any other
// failure with 400.
func FuzzBodies(f *testing.F) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(bytes.Repeat([]byte("m,t=a v=1 1\n"), 100))
	_ = zw.Close()
	f.Add(gz.Bytes(), uint16(200))
	f.Add(snappy.Encode(nil, bytes.Repeat([]byte{0}, 5000)), uint16(4096))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x00}, uint16(0))
	f.Add([]byte{0x1f, 0x8b, 0x08, 0x00}, uint16(1))
	f.Fuzz(func(t *testing.T, body []byte, max uint16) {
		lim := &limits.Limits{MaxDecompressedBytes: int64(max)}
		var out []byte
		for name, decode := range map[string]func([]byte, *[]byte, string, *limits.Limits, *reservation) *refusal{"snappy": decodeSnappy, "gzip": gunzip} {
			out = out[:0]
			rsv := unlimited.reserve("t", lim)
			rf := decode(body, &out, "t", lim, &rsv)
			rsv.release()
			switch {
			case rf == nil && int64(len(out)) > lim.MaxDecompressedBytes:
				t.Fatalf("%s: %d bytes out, limit %d", name, len(out), max)
			case rf == nil:
			case rf.status == 413 && rf.reason == limits.MaxDecompressedBytes, rf.status == 400:
			default:
				t.Fatalf("%s: refusal %d %s: %s", name, rf.status, rf.reason, rf.msg)
			}
			if int64(cap(out)) > lim.MaxDecompressedBytes+64<<10 && int64(cap(out)) > 2*int64(len(body))+64<<10 {
				t.Fatalf("%s: buffer of %d bytes for a limit of %d and a body of %d", name, cap(out), max, len(body))
			}
		}
	})
}

// FuzzRemoteWriteVersion feeds arbitrary Content-Type headers to the
// edge: one of the two protocol versions or a 415, never a panic.
func FuzzRemoteWriteVersion(f *testing.F) {
	for _, ct := range []string{"", "application/x-protobuf", "application/x-protobuf;proto=io.prometheus.write.v2.Request", "application/x-protobuf; proto=prometheus.WriteRequest", "text/plain", "application/x-protobuf;proto=", "a/b; c=\"d"} {
		f.Add(ct)
	}
	f.Fuzz(func(t *testing.T, ct string) {
		v, rf := remoteWriteVersion(ct)
		if rf != nil && rf.status != 415 || rf == nil && v != 1 && v != 2 {
			t.Fatalf("Content-Type %q: version %d refusal %+v", ct, v, rf)
		}
	})
}
