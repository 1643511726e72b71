// Command weir-loadtest drives sustained ingest against weir or any other
// Prometheus remote-write (1.0, 2.0) or InfluxDB line-protocol receiver,
// proves through the target's Prometheus query API that nothing it
// acknowledged was lost, and writes a JSON result and an HTML report.
//
//	weir-loadtest -url http://127.0.0.1:9480                  # a running weir
//	weir-loadtest -scenario max -exec 'weir=bin/weir all --data-dir {dir} --http.addr {addr:http} --kafka.embedded.addr {addr:kafka}' \
//	    -url 'http://{addr:http}' -ready 'http://{addr:http}/-/ready'
//	weir-loadtest -targets compare.json                       # the same scenario against several targets
//	weir-loadtest report -out dir a/result.json b/result.json # merge results side by side
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weir-metrics/weir/loadtest/gen"
	"github.com/weir-metrics/weir/loadtest/launch"
	"github.com/weir-metrics/weir/loadtest/load"
	"github.com/weir-metrics/weir/loadtest/report"
)

const version = "0.1.0"

// scenarios are the named presets; flags given explicitly override them.
var scenarios = map[string]map[string]string{
	// A steady load well inside what one small machine sustains, with
	// the churn of routine pod restarts: latencies under normal load.
	"default": {"series": "10000", "batch": "2000", "concurrency": "4", "rate": "100000", "churn": "0.01", "churn-interval": "10s", "explode": "0"},
	// As fast as the target acknowledges: 20 batches and 20 senders, so 20
	// requests are in flight (a remote-write client's shards) and a
	// target's latency does not cap its throughput.
	"max": {"series": "40000", "batch": "2000", "concurrency": "20", "rate": "0", "churn": "0.01", "churn-interval": "10s", "explode": "0"},
	// A rolling deployment: a tenth of the instances replaced every 5s.
	"churn": {"series": "10000", "batch": "2000", "concurrency": "4", "rate": "100000", "churn": "0.1", "churn-interval": "5s", "explode": "0"},
	// A deploy that labels request counters with a session ID: a fifth of
	// the instances create 12 new series every round.
	"explosion": {"series": "10000", "batch": "2000", "concurrency": "4", "rate": "100000", "churn": "0", "churn-interval": "10s", "explode": "0.2"},
}

// targetSpec is one target of a -targets file.
type targetSpec struct {
	Name       string         `json:"name"`
	Exec       []string       `json:"exec"`
	Ready      []string       `json:"ready"`
	URL        string         `json:"url"`
	WritePath  string         `json:"write_path"`
	QueryURL   string         `json:"query_url"`
	MetricsURL []string       `json:"metrics_url"`
	Tenant     *string        `json:"tenant"`
	PIDs       map[string]int `json:"pids"`
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	if len(os.Args) > 1 && os.Args[1] == "report" {
		if err := mergeReports(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "weir-loadtest report:", err)
			os.Exit(1)
		}
		return
	}
	ok, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "weir-loadtest:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

func run(args []string) (bool, error) {
	fs := flag.NewFlagSet("weir-loadtest", flag.ContinueOnError)
	scenario := fs.String("scenario", "default", "preset: default, max, churn or explosion; explicit flags override it")
	protocol := fs.String("protocol", "prw1", "prw1 (remote-write 1.0), prw2 (remote-write 2.0) or influx (line protocol)")
	name := fs.String("name", "", "the target's name in the report (default: the first -exec name, or \"target\")")
	url := fs.String("url", "http://127.0.0.1:9480", "base URL of the target's write endpoint")
	writePath := fs.String("write-path", "", "path of the write endpoint (default /api/v1/write, or /api/v2/write?precision=ns for influx)")
	queryURL := fs.String("query-url", "", "base URL of the Prometheus query API that holds what was written (default -url)")
	metricsURL := fs.String("metrics-url", "", "comma-separated /metrics URLs whose weir counters are checked (default -url + /metrics; \"none\" for none)")
	tenant := fs.String("tenant", "loadtest", "sent as X-Scope-OrgID with writes and queries; empty sends none")
	series := fs.Int("series", 0, "active series")
	batch := fs.Int("batch", 0, "series (samples) per request")
	rate := fs.Float64("rate", 0, "target rate in samples/s; 0 is as fast as the target acknowledges")
	duration := fs.Duration("duration", time.Minute, "how long to sustain the load")
	concurrency := fs.Int("concurrency", 4, "senders; each owns its series, so one request per sender is in flight")
	churn := fs.Float64("churn", 0, "fraction of instances (100 series each) replaced every churn interval")
	churnInterval := fs.Duration("churn-interval", 10*time.Second, "churn epoch")
	explode := fs.Float64("explode", 0, "fraction of instances whose request counters get a new session_id label every round")
	seed := fs.Uint64("seed", 1, "seed of every label and value")
	runID := fs.String("run-id", "", "value of the loadtest_run label (default lt-<time>)")
	markerInterval := fs.Duration("marker-interval", time.Second, "time between end-to-end latency markers; 0 for none")
	markerTimeout := fs.Duration("marker-timeout", 30*time.Second, "give up on one marker after this long")
	reqTimeout := fs.Duration("timeout", 30*time.Second, "timeout of one write request")
	retries := fs.Int("retries", 10, "retries of a request with an unknown outcome (timeout, 429, 5xx)")
	settle := fs.Duration("settle", 2*time.Minute, "how long the target may take, after the load, to make everything queryable")
	sampleInterval := fs.Duration("sample-interval", time.Second, "resolution of the timeline")
	noVerify := fs.Bool("no-verify", false, "skip the loss check")
	out := fs.String("out", "loadtest-results", "directory for result.json, report.html and the targets' logs")
	targetsFile := fs.String("targets", "", "JSON file listing several targets to run the scenario against, one after the other")
	keep := fs.Bool("keep", false, "keep the data directories of started targets")
	cpuProfile := fs.String("cpuprofile", "", "write the harness' own CPU profile to this file")
	var pids, execs, readies multiFlag
	fs.Var(&pids, "pid", "NAME=PID of a local target process to measure (repeatable)")
	fs.Var(&execs, "exec", "NAME=COMMAND to start the target for the run, with {dir}, {addr:NAME} and {port:NAME} placeholders (repeatable)")
	fs.Var(&readies, "ready", "URL that must answer 200 before the load starts (repeatable; placeholders allowed)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: weir-loadtest [flags]\n       weir-loadtest report -out DIR result.json...\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return false, err
	}
	preset, ok := scenarios[*scenario]
	if !ok {
		return false, fmt.Errorf("-scenario %q is not one of default, max, churn, explosion", *scenario)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for k, v := range preset {
		if !set[k] {
			if err := fs.Set(k, v); err != nil {
				return false, err
			}
		}
	}
	if *runID == "" {
		*runID = "lt-" + strconv.FormatInt(time.Now().Unix(), 36)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	cfg := load.Config{
		Name: *scenario,
		Gen: gen.Options{
			Seed: *seed, Series: *series, BatchSize: *batch, Protocol: gen.Protocol(*protocol),
			ChurnFraction: *churn, ExplodeFraction: *explode,
		},
		Rate: *rate, Duration: *duration, Concurrency: *concurrency, ChurnInterval: *churnInterval,
		MarkerInterval: *markerInterval, MarkerTimeout: *markerTimeout, RequestTimeout: *reqTimeout,
		MaxRetries: *retries, SettleTimeout: *settle, SampleInterval: *sampleInterval, Verify: !*noVerify,
	}
	var specs []targetSpec
	if *targetsFile != "" {
		b, err := os.ReadFile(*targetsFile)
		if err != nil {
			return false, err
		}
		var file struct {
			Targets []targetSpec `json:"targets"`
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&file); err != nil {
			return false, fmt.Errorf("%s: %w", *targetsFile, err)
		}
		if len(file.Targets) == 0 {
			return false, fmt.Errorf("%s lists no targets", *targetsFile)
		}
		specs = file.Targets
	} else {
		s := targetSpec{Name: *name, Exec: execs, Ready: readies, URL: *url, WritePath: *writePath, QueryURL: *queryURL, Tenant: tenant, PIDs: map[string]int{}}
		if *metricsURL != "" {
			s.MetricsURL = strings.Split(*metricsURL, ",")
		}
		for _, p := range pids {
			n, v, ok := strings.Cut(p, "=")
			pid, err := strconv.Atoi(v)
			if !ok || err != nil {
				return false, fmt.Errorf("-pid %q: want NAME=PID", p)
			}
			s.PIDs[n] = pid
		}
		specs = []targetSpec{s}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return false, err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return false, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return false, err
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	result := &report.Result{Version: version, Started: time.Now(), Host: host(), Scenario: cfg.Scenario()}
	allOK := true
	for i, spec := range specs {
		c := cfg
		c.Gen.RunID = *runID
		if len(specs) > 1 {
			c.Gen.RunID = fmt.Sprintf("%s-%d", *runID, i)
		}
		run, err := runTarget(ctx, c, spec, *out, *keep, log)
		if err != nil {
			return false, fmt.Errorf("target %s: %w", spec.Name, err)
		}
		result.Runs = append(result.Runs, run)
		allOK = allOK && run.OK
	}
	jsonPath, htmlPath := filepath.Join(*out, "result.json"), filepath.Join(*out, "report.html")
	if err := result.WriteJSON(jsonPath); err != nil {
		return false, err
	}
	if err := result.WriteHTML(htmlPath); err != nil {
		return false, err
	}
	fmt.Println()
	result.PrintSummary(os.Stdout)
	fmt.Printf("\nresult: %s\nreport: %s\n", jsonPath, htmlPath)
	return allOK, nil
}

func runTarget(ctx context.Context, cfg load.Config, spec targetSpec, out string, keep bool, log *slog.Logger) (*report.Run, error) {
	vars := &launch.Vars{}
	if !keep {
		defer vars.Cleanup()
	}
	expand := func(s string) string {
		v, err := vars.Expand(s)
		if err != nil {
			log.Error("expanding placeholders", "in", s, "err", err)
		}
		return v
	}
	var procs []*launch.Process
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			if err := procs[i].Stop(time.Minute); err != nil {
				log.Warn("stopping target process", "name", procs[i].Name, "err", err)
			}
		}
	}()
	pids := map[string]int{}
	for k, v := range spec.PIDs {
		pids[k] = v
	}
	for _, e := range spec.Exec {
		p, err := launch.Start(expand(e), out)
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
		pids[p.Name] = p.PID()
		log.Info("started target process", "name", p.Name, "pid", p.PID(), "log", p.Log)
	}
	for _, r := range spec.Ready {
		if err := launch.WaitReady(ctx, expand(r), procs, 2*time.Minute); err != nil {
			return nil, err
		}
	}
	if len(spec.Exec) > 0 && !strings.Contains(spec.URL, "{addr:") {
		log.Warn("the target was started with -exec but -url names no {addr:…} of it: the load goes to whatever listens there", "url", spec.URL)
	}
	name := spec.Name
	if name == "" && len(procs) > 0 {
		name = procs[0].Name
	}
	if name == "" {
		name = "target"
	}
	base := strings.TrimRight(expand(spec.URL), "/")
	wp := spec.WritePath
	if wp == "" {
		wp = "/api/v1/write"
		if cfg.Gen.Protocol == gen.Influx {
			wp = "/api/v2/write?precision=ns"
		}
	}
	t := load.Target{Name: name, WriteURL: base + wp, QueryURL: base, PIDs: pids}
	if spec.QueryURL != "" {
		t.QueryURL = strings.TrimRight(expand(spec.QueryURL), "/")
	}
	if spec.Tenant != nil {
		t.Tenant = *spec.Tenant
	} else {
		t.Tenant = "loadtest"
	}
	switch {
	case len(spec.MetricsURL) == 1 && spec.MetricsURL[0] == "none":
	case len(spec.MetricsURL) > 0:
		for _, u := range spec.MetricsURL {
			t.MetricsURLs = append(t.MetricsURLs, expand(u))
		}
	default:
		t.MetricsURLs = []string{base + "/metrics"}
	}
	log.Info("starting load", "target", name, "write", t.WriteURL, "query", t.QueryURL, "series", cfg.Gen.Series, "rate", cfg.Rate, "duration", cfg.Duration, "run_id", cfg.Gen.RunID)
	return load.Run(ctx, cfg, t, log)
}

func mergeReports(args []string) error {
	fs := flag.NewFlagSet("weir-loadtest report", flag.ContinueOnError)
	out := fs.String("out", "loadtest-results", "directory for the merged result.json and report.html")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("name the result.json files to merge")
	}
	var merged *report.Result
	for _, p := range fs.Args() {
		r, err := report.ReadJSON(p)
		if err != nil {
			return err
		}
		if merged == nil {
			merged = r
			continue
		}
		merged.Runs = append(merged.Runs, r.Runs...)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if err := merged.WriteJSON(filepath.Join(*out, "result.json")); err != nil {
		return err
	}
	if err := merged.WriteHTML(filepath.Join(*out, "report.html")); err != nil {
		return err
	}
	merged.PrintSummary(os.Stdout)
	return nil
}

func host() report.Host {
	h := report.Host{CPUs: runtime.NumCPU(), GoOS: runtime.GOOS + "/" + runtime.GOARCH}
	h.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return h
}
