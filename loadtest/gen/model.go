// Package gen builds the load: a deterministic population of series with
// realistic label sets, encoded once into request bodies in which only the
// sample values, the timestamps and the few label values that churn are
// patched in place each round. Generating a round therefore costs a few
// stores per sample plus one snappy pass, so the generator is never what
// limits a run.
//
// The population is made of instances (scrape targets). Each instance
// exports the same exposition of 100 series from 19 metric families —
// counters, gauges and classic histograms with Kubernetes-style target
// labels, about 11 labels per series — so N series are N/100 instances.
// Everything, label values and sample values alike, derives from Options.Seed.
package gen

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// SeriesPerInstance is the size of one instance's exposition.
const SeriesPerInstance = 100

// InstancesPerJob is how many instances share a job label, so a job holds
// 1000 series; the checker splits its queries along jobs.
const InstancesPerJob = 10

// Label names the generator sets on every series besides __name__ and the
// family's own labels.
const (
	RunLabel     = "loadtest_run" // the run's ID, so runs never mix
	PodLabel     = "pod"          // replaced when the instance churns
	ExplodeLabel = "session_id"   // set on exploding series, new every round
	MarkerName   = "weir_loadtest_marker"
)

// Kind is how a series' value evolves.
type Kind uint8

const (
	Counter Kind = iota + 1
	Gauge
	Bucket // a classic histogram's cumulative _bucket series
	HistSum
	HistCount
)

// Label is one label pair.
type Label struct{ Name, Value string }

// entry is one series of the instance exposition.
type entry struct {
	name   string
	kind   Kind
	labels []Label // family-specific labels
	help   string
	unit   string
	hist   int     // index of the histogram group for Bucket/HistSum/HistCount, else -1
	bucket int     // bucket index for Bucket (len(bounds) is +Inf)
	bounds []int64 // histogram bucket bounds in 1/16 units (for HistSum)
	// family is the metric family name (the histogram's base name) and
	// whether it explodes in the cardinality-explosion scenario.
	family  string
	explode bool
}

var exposition = buildExposition()

// Families lists the metric family names of the exposition.
func Families() []string {
	var out []string
	for _, e := range exposition {
		if len(out) == 0 || out[len(out)-1] != e.family {
			out = append(out, e.family)
		}
	}
	return out
}

// MetricNames lists the distinct __name__ values of the exposition.
func MetricNames() []string {
	var out []string
	for _, e := range exposition {
		if !slices.Contains(out, e.name) {
			out = append(out, e.name)
		}
	}
	return out
}

func buildExposition() []entry {
	var es []entry
	hist := 0
	counter := func(name, help string, labels ...[]Label) {
		if len(labels) == 0 {
			labels = [][]Label{nil}
		}
		for _, ls := range labels {
			es = append(es, entry{name: name, kind: Counter, labels: ls, help: help, hist: -1, family: name})
		}
	}
	gauge := func(name, help string, labels ...[]Label) {
		if len(labels) == 0 {
			labels = [][]Label{nil}
		}
		for _, ls := range labels {
			es = append(es, entry{name: name, kind: Gauge, labels: ls, help: help, hist: -1, family: name})
		}
	}
	histogram := func(name, help string, bounds []string, labels ...[]Label) {
		b16 := make([]int64, len(bounds))
		for i, b := range bounds {
			f, _ := strconv.ParseFloat(b, 64)
			b16[i] = max(1, int64(f*16))
		}
		for _, ls := range labels {
			for i := 0; i <= len(bounds); i++ {
				le := "+Inf"
				if i < len(bounds) {
					le = bounds[i]
				}
				es = append(es, entry{name: name + "_bucket", kind: Bucket, labels: append(slices.Clone(ls), Label{"le", le}),
					help: help, unit: "seconds", hist: hist, bucket: i, bounds: b16, family: name})
			}
			es = append(es, entry{name: name + "_sum", kind: HistSum, labels: ls, help: help, unit: "seconds", hist: hist, bounds: b16, family: name})
			es = append(es, entry{name: name + "_count", kind: HistCount, labels: ls, help: help, unit: "seconds", hist: hist, bounds: b16, family: name})
			hist++
		}
	}
	cross := func(name string, values []string, rest [][]Label) [][]Label {
		if rest == nil {
			rest = [][]Label{nil}
		}
		var out [][]Label
		for _, v := range values {
			for _, r := range rest {
				out = append(out, append([]Label{{name, v}}, r...))
			}
		}
		return out
	}
	// 12 counters.
	counter("http_requests_total", "Requests served by method, code and handler.",
		cross("method", []string{"GET", "POST"}, cross("code", []string{"200", "404", "500"}, cross("handler", []string{"/api/v1/query", "/api/v1/write"}, nil)))...)
	// 2 histograms × 12 series.
	histogram("http_request_duration_seconds", "Request latency by handler.",
		[]string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5"},
		cross("handler", []string{"/api/v1/query", "/api/v1/write"}, nil)...)
	// 10 counters.
	counter("node_cpu_seconds_total", "Seconds the CPUs spent in each mode.",
		cross("cpu", []string{"0", "1"}, cross("mode", []string{"idle", "iowait", "irq", "system", "user"}, nil))...)
	fs := [][]Label{
		{{"device", "/dev/sda1"}, {"fstype", "ext4"}, {"mountpoint", "/"}},
		{{"device", "/dev/sdb1"}, {"fstype", "xfs"}, {"mountpoint", "/var/lib/data"}},
		{{"device", "tmpfs"}, {"fstype", "tmpfs"}, {"mountpoint", "/run"}},
	}
	gauge("node_filesystem_avail_bytes", "Filesystem space available to non-root users.", fs...)
	nics := cross("device", []string{"eth0", "eth1", "lo"}, nil)
	counter("node_network_receive_bytes_total", "Bytes received by network device.", nics...)
	counter("node_network_transmit_bytes_total", "Bytes sent by network device.", nics...)
	counter("node_disk_io_time_seconds_total", "Seconds spent doing I/Os.", cross("device", []string{"sda", "sdb", "nvme0n1"}, nil)...)
	gauge("node_load1", "1m load average.")
	gauge("node_load5", "5m load average.")
	gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
	counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")
	gauge("go_goroutines", "Number of goroutines that currently exist.")
	gauge("go_memstats_heap_alloc_bytes", "Bytes allocated on the heap and still in use.")
	gauge("container_memory_working_set_bytes", "Current working set of the container in bytes.",
		cross("container", []string{"app", "istio-proxy", "log-shipper"}, nil)...)
	gauge("kafka_consumergroup_lag", "Consumer group lag in records.",
		cross("topic", []string{"orders", "payments"}, cross("partition", []string{"0", "1", "2", "3"}, nil))...)
	// 2 histograms × 10 series.
	histogram("rpc_client_duration_seconds", "Outgoing RPC latency by service.",
		[]string{"0.01", "0.05", "0.1", "0.5", "1", "5", "10"},
		cross("service", []string{"inventory", "pricing"}, nil)...)
	gauge("app_queue_depth", "Items waiting in each work queue.", cross("queue", []string{"email", "export", "reindex", "webhooks"}, nil)...)
	gauge("target_up", "1 when the target answered its last scrape.")
	if len(es) != SeriesPerInstance {
		panic(fmt.Sprintf("gen: exposition has %d series, want %d", len(es), SeriesPerInstance))
	}
	for i := range es {
		es[i].explode = es[i].family == ExplodeFamily
	}
	return es
}

// ExplodeFamily is the family that gains a new label value every round in
// the cardinality-explosion scenario, as when a deploy starts labelling
// request counters with a session ID.
const ExplodeFamily = "http_requests_total"

var (
	zones      = []string{"eu-west-1a", "eu-west-1b", "eu-west-1c"}
	namespaces = []string{"checkout", "catalog", "payments", "search", "identity", "shipping", "ads"}
	apps       = []string{"api", "worker", "frontend", "indexer", "gateway"}
)

// SeriesID identifies one series the generator ever wrote: the slot (its
// place in the population), the generation of the slot's instance (bumped
// by churn) and, for exploding series, the round that named it.
type SeriesID struct {
	Slot    int32
	Gen     uint32
	Explode uint32 // round index + 1 for exploding series, 0 otherwise
}

// Population is the set of series slots of a run.
type Population struct {
	opts Options
}

// NewPopulation validates opts and returns the population they describe.
func NewPopulation(opts Options) (*Population, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Population{opts: opts}, nil
}

// Options returns the options the population was made from.
func (p *Population) Options() Options { return p.opts }

// Instances is the number of instances (the last may be partial).
func (p *Population) Instances() int {
	return (p.opts.Series + SeriesPerInstance - 1) / SeriesPerInstance
}

// Jobs is the number of distinct job label values.
func (p *Population) Jobs() int { return (p.Instances() + InstancesPerJob - 1) / InstancesPerJob }

// JobName is the job label value of job j.
func JobName(j int) string { return fmt.Sprintf("job-%03d", j) }

// Exploding reports whether the slot's series gains a new session_id every
// round.
func (p *Population) Exploding(slot int) bool {
	if p.opts.ExplodeFraction <= 0 || !exposition[slot%SeriesPerInstance].explode {
		return false
	}
	return unit(mix(p.opts.Seed, 0xe5, uint64(slot/SeriesPerInstance))) < p.opts.ExplodeFraction
}

// Churns reports whether instance inst is replaced (a new pod) at churn
// epoch epoch (epochs start at 1).
func (p *Population) Churns(epoch uint32, inst int) bool {
	if p.opts.ChurnFraction <= 0 || epoch == 0 {
		return false
	}
	return unit(mix(p.opts.Seed, 0xc4, uint64(epoch)<<32|uint64(inst))) < p.opts.ChurnFraction
}

// podValue is the pod label of an instance at a generation. It has a fixed
// width so that churn patches it in place.
func (p *Population) podValue(inst int, gen uint32) string {
	// An odd multiplier is a bijection on uint32, so no two instances share
	// a pod name; the seed only changes which names.
	h := uint32(inst)*2654435761 ^ uint32(mix(p.opts.Seed, 0x90, 0))
	return fmt.Sprintf("%s-%08x-%s", apps[inst%len(apps)], h, base36(uint64(gen), 5))
}

func explodeValue(round uint32) string { return base36(uint64(round), 8) }

func base36(v uint64, width int) string {
	s := strconv.FormatUint(v, 36)
	if len(s) > width {
		panic(fmt.Sprintf("gen: %d does not fit %d base-36 digits", v, width))
	}
	return strings.Repeat("0", width-len(s)) + s
}

// Labels returns the metric name and the other labels of a series, sorted
// by name, exactly as written.
func (p *Population) Labels(id SeriesID) (name string, labels []Label) {
	slot := int(id.Slot)
	e := &exposition[slot%SeriesPerInstance]
	inst := slot / SeriesPerInstance
	ls := make([]Label, 0, 12+len(e.labels))
	ls = append(ls,
		Label{"job", JobName(inst / InstancesPerJob)},
		Label{"instance", fmt.Sprintf("10.%d.%d.%d:9100", 1+inst>>16&0xff, inst>>8&0xff, inst&0xff)},
		Label{"namespace", namespaces[inst%len(namespaces)]},
		Label{PodLabel, p.podValue(inst, id.Gen)},
		Label{"node", fmt.Sprintf("node-%04d", (inst*7919)%max(1, p.Instances()/4+1))},
		Label{"zone", zones[inst%len(zones)]},
		Label{"env", "prod"},
		Label{RunLabel, p.opts.RunID},
	)
	ls = append(ls, e.labels...)
	if p.Exploding(slot) {
		ls = append(ls, Label{ExplodeLabel, explodeValue(id.Explode)})
	}
	slices.SortFunc(ls, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
	return e.name, ls
}

// MetricName is the __name__ of the slot's series.
func MetricName(slot int) string { return exposition[slot%SeriesPerInstance].name }

// KindOf is how the slot's values evolve.
func KindOf(slot int) Kind { return exposition[slot%SeriesPerInstance].kind }

// mix is a stateless 64-bit hash of a seed, a domain and a value
// (splitmix64 finaliser), for decisions that must not depend on order.
func mix(seed uint64, domain byte, v uint64) uint64 {
	x := seed ^ uint64(domain)<<56 ^ v*0x9e3779b97f4a7c15
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func unit(x uint64) float64 { return float64(x>>11) / (1 << 53) }
