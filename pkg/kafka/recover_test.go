package kafka

import (
	"context"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKilledBrokerAbortsOpenTransactionsWithMarkers: a broker killed while
// a transaction is open, restarted on what its disk held, must hide that
// transaction from read_committed readers for good, and show the
// producer's next committed transaction to every reader. The kill is an
// exact copy of the data directory while the broker runs: what a SIGKILL
// leaves (every write reached the page cache).
func TestKilledBrokerAbortsOpenTransactionsWithMarkers(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	crashImage := func(from string) string {
		to := filepath.Join(t.TempDir(), "data")
		if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
			t.Fatalf("copying %s: %v: %s", from, err, out)
		}
		return to
	}
	start := func(dataDir string) *Broker {
		cfg := testConfig(t, dataDir)
		b, err := StartBroker(cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		return b
	}
	// transaction writes values into partition 0 of "t" as the
	// transactional ID "tx", committing or leaving the transaction open.
	transaction := func(addr string, commit bool, values ...string) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("tx"), kgo.DefaultProduceTopic("t"),
			kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, v := range values {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if commit {
			if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
				t.Fatal(err)
			}
		}
		// Not closed: the open transaction stays open until the "kill".
	}
	// readCommitted reads the partition from its start to its last
	// stable offset, as a read_committed consumer does.
	readCommitted := func(addr string) []string {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("t"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.KeepControlRecords())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, "t")
		if err != nil {
			t.Fatal(err)
		}
		end, _ := ends.Lookup("t", 0)
		var out []string
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		for next := int64(0); next < end.Offset; {
			fs := cl.PollFetches(pctx)
			if pctx.Err() != nil {
				t.Fatalf("reading to offset %d: %v (read %v)", end.Offset, pctx.Err(), out)
			}
			fs.EachRecord(func(r *kgo.Record) {
				next = r.Offset + 1
				if !r.Attrs.IsControl() {
					out = append(out, string(r.Value))
				}
			})
		}
		return out
	}
	expect := func(addr string, want ...string) {
		t.Helper()
		if got := readCommitted(addr); !slices.Equal(got, want) {
			t.Fatalf("read_committed from the start: %v, want %v", got, want)
		}
	}

	dir := filepath.Join(t.TempDir(), "data")
	b := start(dir)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	// A raw topic, which weir writes without transactions, holds one
	// record and must get no marker: its consumers would never commit up
	// to its end.
	raw := Topic("weir", "x", KindRaw)
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, raw); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: raw, Value: []byte("r")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	transaction(b.Addr(), true, "committed-1")
	transaction(b.Addr(), false, "open-1", "open-2")

	// Killed with the transaction open: it is aborted, and the producer's
	// next transaction is seen by a reader from the start.
	dir = crashImage(dir)
	b = start(dir)
	transaction(b.Addr(), true, "committed-2")
	expect(b.Addr(), "committed-1", "committed-2")

	// Killed again: the aborted records stay hidden.
	dir = crashImage(dir)
	b = start(dir)
	expect(b.Addr(), "committed-1", "committed-2")
	cl2, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	ends, err := kadm.NewClient(cl2).ListEndOffsets(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup(raw, 0); o.Offset != 1 {
		t.Fatalf("the raw topic ends at %d after the recoveries, want 1 (its one record, no marker)", o.Offset)
	}

	// Closed in order, the directory needs no recovery; started again, it
	// does until closed.
	b.Close()
	kdir := filepath.Join(dir, "kafka")
	if needsRecovery(kdir) {
		t.Fatal("a directory closed in order asks for recovery")
	}
	start(dir)
	if !needsRecovery(kdir) {
		t.Fatal("a running broker's directory reads as closed in order")
	}
}
