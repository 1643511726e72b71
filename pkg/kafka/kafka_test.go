package kafka

import (
	"context"
	"io"
	"log/slog"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-metrics/weir/pkg/config"
)

func TestTopicNames(t *testing.T) {
	raw := Topic("weir", "team-a", KindRaw)
	if raw != "weir.team-a.raw" {
		t.Fatal(raw)
	}
	ten, kind, ok := ParseTopic("weir", raw)
	if !ok || ten != "team-a" || kind != KindRaw {
		t.Fatalf("ParseTopic: %q %q %v", ten, kind, ok)
	}
	re := regexp.MustCompile(TopicRegex("weir", KindRaw))
	for topic, want := range map[string]bool{
		"weir.team-a.raw": true, "weir.team-a.series": false, "weirx.a.raw": false,
		"weir.a.b.raw": false, "other.a.raw": false, "weir.a.raw.x": false,
	} {
		if re.MatchString(topic) != want {
			t.Errorf("regex on %q: %v, want %v", topic, !want, want)
		}
	}
}

func testConfig(t *testing.T, dir string) *config.Config {
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.Kafka.Embedded.Addr = "127.0.0.1:0"
	cfg.Kafka.Partitions = 3
	return &cfg
}

// TestEmbeddedBrokerPersists restarts the embedded broker on the same
// directory and address: topics, their settings, records and committed
// offsets are all still there.
func TestEmbeddedBrokerPersists(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := testConfig(t, dir)
	b, err := StartBroker(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Kafka.Embedded.Addr = b.Addr()
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	topics := NewTopics(cl, cfg.Kafka)
	if err := topics.EnsureTenant(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	// Ensuring again is a no-op, also for a fresh Topics that does not
	// know the topics exist.
	if err := NewTopics(cl, cfg.Kafka).EnsureTenant(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	topic := Topic("weir", "t1", KindRaw)
	for i := 0; i < 10; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: int32(i % 3), Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(cl)
	if _, err := adm.CommitOffsets(ctx, "g", kadm.OffsetsFromRecords(kgo.Record{Topic: topic, Partition: 1, Offset: 2})); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	b.Close()

	b, err = StartBroker(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cl, err = kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm = kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != 10 {
		t.Fatalf("%d records after restart, want 10", total)
	}
	offs, err := adm.FetchOffsets(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup(topic, 1); !ok || o.At != 3 {
		t.Fatalf("committed offset after restart: %+v %v, want 3", o, ok)
	}
	rc, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range rc[0].Configs {
		if c.Key == "max.message.bytes" && c.MaybeValue() == "4259840" {
			found = true
		}
	}
	if !found {
		t.Fatalf("max.message.bytes not kept: %+v", rc[0].Configs)
	}
}

// TestKcatListsTopics checks that an ordinary Kafka client, Debian's
// kcat, talks to the embedded broker. CI installs kcat (.ci/run).
func TestKcatListsTopics(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is not installed: apt-get install kcat (.ci/run does)")
	}
	cfg := testConfig(t, t.TempDir())
	b, err := StartBroker(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cfg.Kafka.Embedded.Addr = b.Addr()
	cl, _ := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	defer cl.Close()
	if err := NewTopics(cl, cfg.Kafka).EnsureTenant(context.Background(), "kc"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kcat, "-b", b.Addr(), "-L").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat -L: %v\n%s", err, out)
	}
	for _, want := range []string{`topic "weir.kc.raw" with 3 partitions`, `topic "weir.kc.series" with 3 partitions`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kcat -L does not show %s:\n%s", want, out)
		}
	}
}
