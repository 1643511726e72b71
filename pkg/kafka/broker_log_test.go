package kafka

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/weir-metrics/weir/pkg/logrepeat"
)

// TestBrokerLogRepeats logs a thousand warnings of one kind, as a broker
// whose disk is full does every second: one line comes out, and the next
// one (after repeatEvery) says how many were left out; other kinds and
// info lines are not held back by them.
func TestBrokerLogRepeats(t *testing.T) {
	var buf bytes.Buffer
	now := time.Now()
	repeats := logrepeat.New(repeatEvery)
	repeats.Now = func() time.Time { return now }
	l := &kfakeLogger{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), repeats: repeats}
	for i := 0; i < 1000; i++ {
		l.Logf(kfake.LogLevelWarn, "persist batch %s-%d: %v", "weir.t.raw", i%8, "no space left on device")
	}
	l.Logf(kfake.LogLevelError, "another kind: %v", "x")
	l.Logf(kfake.LogLevelInfo, "request %d", 1)
	l.Logf(kfake.LogLevelInfo, "request %d", 2)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], "no space left on device") || !strings.Contains(lines[1], "another kind") {
		t.Fatalf("want the first warning, the other kind and both debug lines, got:\n%s", buf.String())
	}
	// The next warning of the kind, a while later, reports the rest.
	now = now.Add(repeatEvery)
	buf.Reset()
	l.Logf(kfake.LogLevelWarn, "persist batch %s-%d: %v", "weir.t.raw", 0, "no space left on device")
	if !strings.Contains(buf.String(), "similar_lines_left_out=999") {
		t.Fatalf("the next line does not say how many were left out: %s", buf.String())
	}
}
