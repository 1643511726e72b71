package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// cleanStopFile marks a data directory the broker closed in order. Its
// absence on a directory with data means the last run was killed.
const cleanStopFile = "weir-clean-stop"

// Why a killed broker needs recovery. A transaction open when kfake died
// is aborted when its log is loaded, in memory only: no abort marker is
// written. Consumers in read_committed mode drop every later transactional
// batch of that producer in the same fetch response until they meet an
// abort marker (that is the protocol), so the next transaction the
// restarted producer commits in that partition is invisible to some
// readers and not to others. And the next load, not knowing the earlier
// abort, counts the aborted batches into that committed transaction and
// shows them. Real Kafka's transaction coordinator writes the abort
// markers when it recovers; abortOpenTransactions does the same through
// the protocol, before any client can reach the broker.

// needsRecovery reports whether dir holds a log the broker did not close
// in order.
func needsRecovery(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, "meta.json")); err != nil {
		return false // nothing stored yet
	}
	_, err := os.Stat(filepath.Join(dir, cleanStopFile))
	return errors.Is(err, os.ErrNotExist)
}

// recoverDataDir loads dir in a broker only this process can reach, ends
// every transaction with abort markers in the partitions of every topic
// but those notTransactional names, and closes it in order.
func recoverDataDir(ctx context.Context, dir string, opts []kfake.Opt, notTransactional func(topic string) bool) (int, error) {
	opts = append(append([]kfake.Opt(nil), opts...),
		kfake.DataDir(dir),
		kfake.Ports(0),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, "127.0.0.1:0") }),
	)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return abortOpenTransactions(ctx, c.ListenAddrs()[0], notTransactional)
}

// abortOpenTransactions writes an abort marker from every transactional
// producer into every partition that may hold its transactions, closing
// whatever it had open; it returns the number of transactional IDs.
// Topics no transactional producer writes are left alone: a marker at
// their end would keep their consumers' committed offsets one short of the
// end until new records come.
func abortOpenTransactions(ctx context.Context, addr string, notTransactional func(topic string) bool) (int, error) {
	// Protocol versions before KIP-890: an AddPartitionsToTxn a client
	// sends, and an EndTxn that does not bump the epoch.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.MaxVersions(kversion.V3_6_0()))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	txns, err := adm.ListTransactions(ctx, nil, nil)
	if err != nil {
		return 0, fmt.Errorf("listing transactions: %w", err)
	}
	md, err := adm.Metadata(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading topics: %w", err)
	}
	var topics []kmsg.AddPartitionsToTxnRequestTopic
	for _, td := range md.Topics.Sorted() {
		if td.IsInternal || len(td.Partitions) == 0 || notTransactional(td.Topic) {
			continue
		}
		t := kmsg.NewAddPartitionsToTxnRequestTopic()
		t.Topic = td.Topic
		for _, p := range td.Partitions.Sorted() {
			t.Partitions = append(t.Partitions, p.Partition)
		}
		topics = append(topics, t)
	}
	n := 0
	for _, tx := range txns.Sorted() {
		n++
		if len(topics) == 0 {
			continue
		}
		if err := abortWithMarkers(ctx, cl, tx.TxnID, topics); err != nil {
			return n, fmt.Errorf("transactional ID %s: %w", tx.TxnID, err)
		}
	}
	return n, nil
}

func abortWithMarkers(ctx context.Context, cl *kgo.Client, txnID string, topics []kmsg.AddPartitionsToTxnRequestTopic) error {
	init := kmsg.NewPtrInitProducerIDRequest()
	init.TransactionalID = &txnID
	init.TransactionTimeoutMillis = int32(time.Minute.Milliseconds())
	initResp, err := init.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(initResp.ErrorCode)
	}
	if err != nil {
		return fmt.Errorf("initialising its producer: %w", err)
	}
	add := kmsg.NewPtrAddPartitionsToTxnRequest()
	add.TransactionalID = txnID
	add.ProducerID, add.ProducerEpoch = initResp.ProducerID, initResp.ProducerEpoch
	add.Topics = topics
	addResp, err := add.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("adding partitions: %w", err)
	}
	for _, t := range addResp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("adding %s/%d: %w", t.Topic, p.Partition, err)
			}
		}
	}
	end := kmsg.NewPtrEndTxnRequest()
	end.TransactionalID = txnID
	end.ProducerID, end.ProducerEpoch = initResp.ProducerID, initResp.ProducerEpoch
	end.Commit = false
	endResp, err := end.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(endResp.ErrorCode)
	}
	if err != nil {
		return fmt.Errorf("aborting: %w", err)
	}
	return nil
}
