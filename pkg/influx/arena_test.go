package influx

import (
	"fmt"
	"strings"
	"testing"
)

// TestArenaChunks parses a body whose sanitized names fill more than one
// arena chunk (64 KiB). The offset of a name in the arena was taken before
// a new, empty chunk was started, and such a body panicked with "slice
// bounds out of range" — the edge then dropped the connection and the
// sender retried it forever (found measuring the edge's memory per
// request, see services/edge TestDecodedMemory).
func TestArenaChunks(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 1500; i++ {
		// Dots, dashes and a tag key needing sanitizing, distinct per line.
		fmt.Fprintf(&b, "disk.io-%d.%s,dev-name.%d=sda%d read.bytes=%d,write.time-%d=2 1700000000000000000\n",
			i, strings.Repeat("m", 40), i, i, i, i)
	}
	body := []byte(b.String())
	var batch Batch
	if err := batch.Parse(body, &Options{}); err != nil {
		t.Fatal(err)
	}
	if len(batch.Series) != 3000 {
		t.Fatalf("%d series, want 3000", len(batch.Series))
	}
	want := fmt.Sprintf("disk_io_1499_%s_write_time_1499", strings.Repeat("m", 40))
	if got := batch.Series[2999].Labels[0].Value; got != want {
		t.Fatalf("last metric name %q, want %q", got, want)
	}
	checkEquivalent(t, body)
	// Info series of string fields take the same path.
	var info strings.Builder
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&info, "proc.state-%d.%s,host=h state=\"running\" 1700000000000000000\n", i, strings.Repeat("p", 40))
	}
	if err := batch.Parse([]byte(info.String()), &Options{StringFields: StringsAsInfo}); err != nil {
		t.Fatal(err)
	}
	checkEquivalent(t, []byte(info.String()))
}
