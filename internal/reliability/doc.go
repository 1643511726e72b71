// Package reliability holds the tests that prove weir's promise under
// faults — an acknowledged sample is never lost, a refused one is always
// explained — with weir's own built binary as real processes, a real
// Kafka-protocol broker, real disks and buckets, under sustained load from
// the load-test harness (loadtest/cmd/weir-loadtest), whose loss check
// asks the query API for every series it wrote:
//
//   - kill_test.go: SIGKILL of every process of the four-process topology
//     and of all-in-one weir, at random moments;
//   - broker_test.go: the broker killed and hung for a while, and produce
//     errors and delays injected through kfake's control hooks;
//   - bucket_test.go: the bucket failing every request for a while;
//   - disk_test.go: the data directories of the broker and of the sink
//     full (size-limited tmpfs mounts);
//   - hostile_test.go: clients that attack: credentials, other tenants'
//     data, oversized headers, slow and idle connections, compression
//     bombs, more than Kafka takes.
//
// Every test states its scenario, how long it runs and what it checks;
// docs/reliability.md lists them with the figures of the last soak.
// `make test` runs them for seconds each; `make soak` (WEIR_SOAK=1) runs
// the same scenarios for minutes and appends each test's figures as a
// JSON line to $WEIR_SOAK_OUT.
package reliability
