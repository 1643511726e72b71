// Package load drives sustained ingest against one target: senders that
// each own a set of batches (so every series has exactly one sender and
// its samples stay in order), a pacer for a target rate, retries as a
// remote-write client does them, end-to-end markers polled through the
// query API, /proc sampling of local target processes, and at the end the
// loss and counter checks.
package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weir-metrics/weir/loadtest/check"
	"github.com/weir-metrics/weir/loadtest/gen"
	"github.com/weir-metrics/weir/loadtest/procstat"
	"github.com/weir-metrics/weir/loadtest/query"
	"github.com/weir-metrics/weir/loadtest/report"
)

// Target is where the load goes.
type Target struct {
	Name string
	// WriteURL receives the requests; QueryURL is the base URL of the
	// Prometheus query API holding what was written (they differ for a
	// forwarding agent such as vmagent).
	WriteURL, QueryURL string
	// MetricsURLs are scraped for weir's own counters before and after.
	MetricsURLs []string
	// Tenant is sent as X-Scope-OrgID with writes and queries.
	Tenant string
	// PIDs are local processes of the target to measure, by name.
	PIDs map[string]int
}

// Config is the scenario.
type Config struct {
	Name string
	Gen  gen.Options
	// Rate is the target rate in samples/s; 0 sends as fast as possible.
	Rate        float64
	Duration    time.Duration
	Concurrency int
	// ChurnInterval is the length of a churn epoch.
	ChurnInterval time.Duration
	// MarkerInterval is the time between end-to-end markers; 0 sends none.
	MarkerInterval time.Duration
	// MarkerTimeout gives up on one marker.
	MarkerTimeout time.Duration
	// RequestTimeout bounds one HTTP attempt.
	RequestTimeout time.Duration
	// MaxRetries is how often a request with an unknown outcome is
	// retried before the sender moves on.
	MaxRetries int
	// SettleTimeout bounds the wait, after the load, for the target to
	// make everything queryable.
	SettleTimeout time.Duration
	// SampleInterval is the timeline's resolution.
	SampleInterval time.Duration
	// Verify runs the loss check.
	Verify bool
	Check  check.Options
}

// Scenario describes c for a report.
func (c *Config) Scenario() report.Scenario {
	return report.Scenario{
		Name: c.Name, Protocol: string(c.Gen.Protocol), Series: c.Gen.Series, BatchSize: c.Gen.BatchSize,
		Rate: c.Rate, DurationSeconds: c.Duration.Seconds(), Concurrency: c.Concurrency,
		ChurnFraction: c.Gen.ChurnFraction, ChurnSeconds: c.ChurnInterval.Seconds(),
		ExplodeFraction: c.Gen.ExplodeFraction, Seed: c.Gen.Seed,
	}
}

// ContentType is the Content-Type and Content-Encoding of a protocol's
// requests.
func ContentType(p gen.Protocol) (contentType, encoding, version string) {
	switch p {
	case gen.PRW2:
		return "application/x-protobuf;proto=io.prometheus.write.v2.Request", "snappy", "2.0.0"
	case gen.Influx:
		return "text/plain; charset=utf-8", "", ""
	default:
		return "application/x-protobuf", "snappy", "0.1.0"
	}
}

type runner struct {
	cfg    Config
	target Target
	log    *slog.Logger
	pop    *gen.Population
	hc     *http.Client
	qc     *query.Client
	start  time.Time

	acked, sent, refused, unknown, requests atomic.Uint64
	mu                                      sync.Mutex
	latencies                               []float64 // of the current interval
	allLatencies                            []float64
	errors                                  map[string]uint64
	intervalErrors                          uint64
	e2e                                     []float64 // of the current interval
	allE2E                                  []float64
	markersTimedOut                         int
	markersAcked                            uint64
	markersUnknown                          uint64
	markerSeq                               uint64
}

// Run drives the scenario against the target and checks the result.
func Run(ctx context.Context, cfg Config, target Target, log *slog.Logger) (*report.Run, error) {
	pop, err := gen.NewPopulation(cfg.Gen)
	if err != nil {
		return nil, err
	}
	if cfg.Concurrency < 1 {
		return nil, fmt.Errorf("concurrency must be at least 1, got %d", cfg.Concurrency)
	}
	transport := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        cfg.Concurrency + 8,
		MaxIdleConnsPerHost: cfg.Concurrency + 8,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	hdr := http.Header{}
	if target.Tenant != "" {
		hdr.Set("X-Scope-OrgID", target.Tenant)
	}
	r := &runner{
		cfg: cfg, target: target, log: log, pop: pop,
		hc:     &http.Client{Transport: transport, Timeout: cfg.RequestTimeout},
		errors: map[string]uint64{},
	}
	r.qc = &query.Client{BaseURL: target.QueryURL, Header: hdr, HTTP: &http.Client{Transport: transport, Timeout: 2 * time.Minute}}
	defer transport.CloseIdleConnections()
	return r.run(ctx)
}

func (r *runner) run(ctx context.Context) (*report.Run, error) {
	cfg := r.cfg
	res := &report.Run{Target: r.target.Name, URL: r.target.WriteURL, RunID: cfg.Gen.RunID}
	if err := r.preflight(ctx); err != nil {
		return nil, err
	}
	var countersBefore check.Counters
	if len(r.target.MetricsURLs) > 0 {
		c, err := check.ReadCounters(ctx, r.hc, r.target.MetricsURLs, r.target.Tenant)
		if err != nil {
			return nil, fmt.Errorf("reading the target's counters: %w", err)
		}
		countersBefore = c
	}

	batches := r.pop.Batches()
	ledgers := make([]*check.BatchLedger, len(batches))
	for i, b := range batches {
		ledgers[i] = check.NewBatchLedger(b)
	}
	procStart := map[string]procstat.Sample{}
	for name, pid := range r.target.PIDs {
		s, err := procstat.Read(pid)
		if err != nil {
			return nil, err
		}
		procStart[name] = s
	}
	genStart := procstat.Self()
	hostStart, _ := procstat.HostBusy()

	r.start = time.Now()
	res.LoadStarted = r.start
	loadCtx, stopLoad := context.WithDeadline(ctx, r.start.Add(cfg.Duration))
	defer stopLoad()
	samplerDone := make(chan struct{})
	stopSampler := make(chan struct{})
	go func() {
		defer close(samplerDone)
		res.Timeline = r.sample(stopSampler)
	}()
	var markers sync.WaitGroup
	if cfg.MarkerInterval > 0 {
		markers.Add(1)
		go func() { defer markers.Done(); r.markers(loadCtx) }()
	}
	var senders sync.WaitGroup
	for s := 0; s < cfg.Concurrency; s++ {
		var mine []int
		for b := s; b < len(batches); b += cfg.Concurrency {
			mine = append(mine, b)
		}
		senders.Add(1)
		go func() {
			defer senders.Done()
			r.send(loadCtx, batches, ledgers, mine)
		}()
	}
	senders.Wait()
	loadEnd := time.Now()
	res.Seconds = loadEnd.Sub(r.start).Seconds()
	markers.Wait()
	genCPU := procstat.Self() - genStart
	hostEnd, _ := procstat.HostBusy()
	targetDuringLoad := map[string]float64{}
	for name, pid := range r.target.PIDs {
		if s, err := procstat.Read(pid); err == nil {
			targetDuringLoad[name] = s.CPUSeconds - procStart[name].CPUSeconds
		}
	}
	other := hostEnd - hostStart - genCPU
	for _, v := range targetDuringLoad {
		other -= v
	}
	res.OtherCPUCores = max(0, other/res.Seconds)
	if ctx.Err() != nil {
		close(stopSampler)
		<-samplerDone
		return nil, ctx.Err()
	}

	// Wait until a marker written after the last request is queryable.
	if cfg.MarkerInterval > 0 {
		mctx, cancel := context.WithTimeout(ctx, cfg.SettleTimeout)
		lat, ok := r.marker(mctx)
		cancel()
		if ok {
			res.CaughtUp = true
			res.CatchUpSeconds = time.Since(loadEnd).Seconds()
			r.log.Info("the target caught up", "final_marker_ms", lat, "after_load_s", res.CatchUpSeconds)
		} else {
			res.Failures = append(res.Failures, fmt.Sprintf("the final marker was not queryable within %s", cfg.SettleTimeout))
		}
	}
	close(stopSampler)
	<-samplerDone

	for name, pid := range r.target.PIDs {
		s, err := procstat.Read(pid)
		if err != nil {
			res.Failures = append(res.Failures, err.Error())
			continue
		}
		p := report.Process{Name: name, PID: pid, CPUSeconds: s.CPUSeconds - procStart[name].CPUSeconds, PeakRSSBytes: s.PeakRSSBytes}
		res.Processes = append(res.Processes, p)
	}

	res.Requests = r.requests.Load()
	res.SamplesSent = r.sent.Load()
	res.SamplesAcked = r.acked.Load()
	res.SamplesRefused = r.refused.Load()
	res.SamplesUnknown = r.unknown.Load()
	res.Errors = r.errors
	res.AcceptedPerSecond = float64(res.SamplesAcked) / res.Seconds
	if res.CaughtUp {
		res.EndToEndPerSecond = float64(res.SamplesAcked) / (res.Seconds + res.CatchUpSeconds)
	}
	res.WriteLatency = report.ComputePercentiles(r.allLatencies)
	res.EndToEnd = report.ComputePercentiles(r.allE2E)
	res.MarkersTimedOut = r.markersTimedOut
	var rates []float64
	for _, p := range res.Timeline {
		if p.T <= res.Seconds {
			rates = append(rates, p.AcceptedRate)
		}
	}
	sort.Float64s(rates)
	if len(rates) > 0 {
		res.MedianPerSecond = rates[len(rates)/2]
	}
	res.Generator = report.Generator{CPUSeconds: genCPU}
	if res.SamplesSent > 0 {
		res.Generator.CPUMicrosPerSample = genCPU / float64(res.SamplesSent) * 1e6
		res.Generator.MaxSamplesPerCore = float64(res.SamplesSent) / genCPU
	}
	for _, l := range ledgers {
		_, _, series := l.Totals()
		res.SeriesWritten += int(series)
	}
	for i := range res.Processes {
		p := &res.Processes[i]
		if p.CPUSeconds > 0 {
			p.SamplesPerCPUSecond = float64(res.SamplesAcked) / p.CPUSeconds
		}
		if res.SeriesWritten > 0 {
			p.PeakRSSPerSeries = float64(p.PeakRSSBytes) / float64(res.SeriesWritten)
		}
	}

	if cfg.Verify {
		r.log.Info("checking that every acknowledged sample is queryable", "target", r.target.Name, "series", res.SeriesWritten)
		vctx, cancel := context.WithTimeout(ctx, cfg.SettleTimeout+5*time.Minute)
		deadline := time.Now().Add(cfg.SettleTimeout)
		for {
			// weir answers strong reads only once its sink consumed what
			// was written before the query; other targets ignore the header.
			r.qc.Header.Set("X-Read-Consistency", "strong")
			c, err := check.Verify(vctx, r.qc, r.pop, ledgers, cfg.Check)
			if err != nil {
				// weir answers a strong read it cannot serve yet with 503.
				if time.Now().Before(deadline) && vctx.Err() == nil {
					r.log.Info("the query API cannot answer yet, retrying", "err", err)
					time.Sleep(2 * time.Second)
					continue
				}
				res.Failures = append(res.Failures, "loss check: "+err.Error())
				break
			}
			res.Check = c
			// A pipeline may still be catching up: missing samples are
			// only a loss once the settle time has passed.
			if c.OK || c.Missing == 0 || time.Now().After(deadline) {
				break
			}
			r.log.Info("samples still missing, target may be catching up", "missing", c.Missing)
			time.Sleep(2 * time.Second)
		}
		cancel()
		r.qc.Header.Del("X-Read-Consistency")
	}
	if countersBefore != nil {
		acked := res.SamplesAcked + r.markersAcked
		var last *check.CounterCheck
		deadline := time.Now().Add(cfg.SettleTimeout)
		for {
			after, err := check.ReadCounters(ctx, r.hc, r.target.MetricsURLs, r.target.Tenant)
			if err != nil {
				res.Failures = append(res.Failures, "reading counters: "+err.Error())
				break
			}
			last = check.CheckCounters(after.Sub(countersBefore), acked, res.SamplesUnknown+r.markersUnknown)
			if last == nil || last.OK || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		res.Counters = last
	}
	res.OK = len(res.Failures) == 0 && (res.Check == nil || res.Check.OK) && (res.Counters == nil || res.Counters.OK)
	if cfg.Verify && res.Check == nil {
		res.OK = false
	}
	return res, nil
}

// preflight makes sure the target answers before the clock starts, and
// writes a first marker so that what a target does once per tenant (weir
// creates the tenant's topics) is not counted as load.
func (r *runner) preflight(ctx context.Context) error {
	if _, err := r.qc.Instant(ctx, "vector(1)", time.Now()); err != nil {
		return fmt.Errorf("the query API at %s does not answer: %w", r.target.QueryURL, err)
	}
	if r.cfg.MarkerInterval <= 0 {
		return nil
	}
	mctx, cancel := context.WithTimeout(ctx, r.cfg.SettleTimeout)
	defer cancel()
	start := time.Now()
	if _, ok := r.marker(mctx); !ok {
		return fmt.Errorf("a first marker written to %s did not become queryable at %s within %s", r.target.WriteURL, r.target.QueryURL, r.cfg.SettleTimeout)
	}
	r.log.Info("first write is queryable", "target", r.target.Name, "after", time.Since(start).Round(time.Millisecond))
	// The warm-up marker is not part of the run's latencies.
	// It is written before the counters are first read, so it is not
	// part of their accounting either.
	r.mu.Lock()
	r.e2e, r.allE2E = nil, nil
	r.markersAcked, r.markersUnknown = 0, 0
	r.mu.Unlock()
	return nil
}

func (r *runner) send(ctx context.Context, batches []*gen.Batch, ledgers []*check.BatchLedger, mine []int) {
	cfg := r.cfg
	var roundDur time.Duration
	if cfg.Rate > 0 {
		roundDur = time.Duration(float64(cfg.Gen.Series) / cfg.Rate * float64(time.Second))
	}
	ctype, enc, ver := ContentType(cfg.Gen.Protocol)
	lastTS := make(map[int]int64, len(mine))
	for round := 0; ; round++ {
		for _, bi := range mine {
			b, l := batches[bi], ledgers[bi]
			if roundDur > 0 {
				due := r.start.Add(time.Duration(round)*roundDur + roundDur*time.Duration(bi)/time.Duration(len(batches)))
				if d := time.Until(due); d > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(d):
					}
				}
			}
			if ctx.Err() != nil {
				return
			}
			if cfg.ChurnInterval > 0 {
				b.Churn(uint32(time.Since(r.start) / cfg.ChurnInterval))
			}
			ts := time.Now().UnixMilli()
			ts += ts & 1 // even, so the checker's window bounds (odd) fall between samples
			if ts <= lastTS[bi] {
				ts = lastTS[bi] + 2
			}
			lastTS[bi] = ts
			body, err := b.Next(ts)
			if err != nil {
				r.log.Error("generating a request", "err", err)
				return
			}
			l.Observe(b)
			acked, extra, refused := r.post(ctx, body, ctype, enc, ver)
			n := uint64(b.Len())
			r.sent.Add(n)
			l.Outcome(b, ts, acked, extra)
			switch {
			case acked:
				r.acked.Add(n)
			case refused:
				r.refused.Add(n)
			default:
				r.unknown.Add(n)
			}
		}
	}
}

// post sends body, retrying outcomes that a remote-write client retries
// (connection errors, timeouts, 429 and 5xx) with exponential backoff. It
// returns whether a 2xx came, how many attempts had an unknown outcome and
// whether the target refused the request for good (another 4xx).
func (r *runner) post(ctx context.Context, body []byte, ctype, enc, ver string) (acked bool, unknown int, refused bool) {
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		status, err := r.do(context.WithoutCancel(ctx), r.target.WriteURL, body, ctype, enc, ver)
		switch {
		case err == nil && status/100 == 2:
			return true, unknown, false
		case err == nil && status/100 == 4 && status != http.StatusTooManyRequests:
			return false, unknown, true
		}
		unknown++
		if attempt >= r.cfg.MaxRetries || ctx.Err() != nil {
			return false, unknown, false
		}
		select {
		case <-ctx.Done():
			return false, unknown, false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// do makes one attempt and records its latency and status.
func (r *runner) do(ctx context.Context, url string, body []byte, ctype, enc, ver string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", ctype)
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	if ver != "" {
		req.Header.Set("X-Prometheus-Remote-Write-Version", ver)
	}
	if r.target.Tenant != "" {
		req.Header.Set("X-Scope-OrgID", r.target.Tenant)
	}
	start := time.Now()
	resp, err := r.hc.Do(req)
	r.requests.Add(1)
	if err != nil {
		key := "connection"
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			key = "timeout"
		}
		r.mu.Lock()
		r.errors[key]++
		r.intervalErrors++
		r.mu.Unlock()
		return 0, err
	}
	var msg []byte
	if resp.StatusCode/100 != 2 {
		msg, _ = io.ReadAll(io.LimitReader(resp.Body, 512))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	ms := float64(time.Since(start).Microseconds()) / 1000
	r.mu.Lock()
	r.latencies = append(r.latencies, ms)
	r.allLatencies = append(r.allLatencies, ms)
	if resp.StatusCode/100 != 2 {
		first := r.errors[strconv.Itoa(resp.StatusCode)] == 0
		r.errors[strconv.Itoa(resp.StatusCode)]++
		r.intervalErrors++
		if first {
			r.log.Warn("target answered with an error", "status", resp.StatusCode, "body", string(bytes.TrimSpace(msg)))
		}
		// A sender is told when to come back from overload; an answer
		// that does not say is a fault of the target worth counting.
		if (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && resp.Header.Get("Retry-After") == "" {
			r.errors[strconv.Itoa(resp.StatusCode)+" without Retry-After"]++
		}
	}
	r.mu.Unlock()
	return resp.StatusCode, nil
}

// markers writes a marker every MarkerInterval and measures how long it
// takes to become queryable.
func (r *runner) markers(ctx context.Context) {
	t := time.NewTicker(r.cfg.MarkerInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.MarkerTimeout)
		r.marker(mctx)
		cancel()
	}
}

// marker writes one marker and polls for it; it returns the latency in
// milliseconds and whether it became visible.
func (r *runner) marker(ctx context.Context) (float64, bool) {
	r.mu.Lock()
	r.markerSeq++
	seq := r.markerSeq
	r.mu.Unlock()
	start := time.Now()
	body := gen.MarkerBody(r.cfg.Gen.Protocol, r.cfg.Gen.RunID, seq, start.UnixMilli())
	ctype, enc, ver := ContentType(r.cfg.Gen.Protocol)
	acked, unknown, _ := r.post(ctx, body, ctype, enc, ver)
	r.mu.Lock()
	r.markersUnknown += uint64(unknown)
	r.mu.Unlock()
	if !acked {
		r.mu.Lock()
		r.markersTimedOut++
		r.mu.Unlock()
		return 0, false
	}
	sel := query.Selector(query.Eq("__name__", gen.MarkerName), query.Eq(gen.RunLabel, r.cfg.Gen.RunID))
	poll := 10 * time.Millisecond
	for {
		res, err := r.qc.Instant(ctx, sel, time.Now())
		if err == nil {
			for _, s := range res {
				if s.Value >= float64(seq) {
					ms := float64(time.Since(start).Microseconds()) / 1000
					r.mu.Lock()
					r.markersAcked++
					r.e2e = append(r.e2e, ms)
					r.allE2E = append(r.allE2E, ms)
					r.mu.Unlock()
					return ms, true
				}
			}
		}
		select {
		case <-ctx.Done():
			r.mu.Lock()
			r.markersAcked++ // written, just not seen in time
			r.markersTimedOut++
			r.mu.Unlock()
			return 0, false
		case <-time.After(poll):
		}
		// Fine resolution for the usual tens of milliseconds, without
		// loading the target with queries when it is slow.
		poll = min(poll*3/2, 250*time.Millisecond)
	}
}

// sample records the timeline until stop is closed.
func (r *runner) sample(stop <-chan struct{}) []report.Point {
	interval := r.cfg.SampleInterval
	t := time.NewTicker(interval)
	defer t.Stop()
	var out []report.Point
	prev := time.Now()
	prevAcked, prevReq := r.acked.Load(), r.requests.Load()
	prevGen := procstat.Self()
	prevHost, _ := procstat.HostBusy()
	prevProc := map[string]float64{}
	for name, pid := range r.target.PIDs {
		if s, err := procstat.Read(pid); err == nil {
			prevProc[name] = s.CPUSeconds
		}
	}
	for {
		select {
		case <-stop:
			return out
		case <-t.C:
		}
		now := time.Now()
		dt := now.Sub(prev).Seconds()
		acked, req := r.acked.Load(), r.requests.Load()
		p := report.Point{
			T:            now.Sub(r.start).Seconds(),
			AcceptedRate: float64(acked-prevAcked) / dt,
			RequestRate:  float64(req-prevReq) / dt,
			EndToEndMax:  -1,
		}
		g := procstat.Self()
		p.GeneratorCPU = (g - prevGen) / dt
		prevGen = g
		host, _ := procstat.HostBusy()
		p.OtherCPU = (host - prevHost) / dt
		prevHost = host
		p.OtherCPU -= p.GeneratorCPU
		r.mu.Lock()
		lat := r.latencies
		r.latencies = nil
		e2e := r.e2e
		r.e2e = nil
		p.Errors = r.intervalErrors
		r.intervalErrors = 0
		r.mu.Unlock()
		pc := report.ComputePercentiles(lat)
		p.WriteP50, p.WriteP99 = pc.P50, pc.P99
		for _, v := range e2e {
			p.EndToEndMax = math.Max(p.EndToEndMax, v)
		}
		if len(r.target.PIDs) > 0 {
			p.ProcessCPU = map[string]float64{}
			p.ProcessRSSMiB = map[string]float64{}
			for name, pid := range r.target.PIDs {
				s, err := procstat.Read(pid)
				if err != nil {
					continue
				}
				p.ProcessCPU[name] = (s.CPUSeconds - prevProc[name]) / dt
				p.OtherCPU -= p.ProcessCPU[name]
				p.ProcessRSSMiB[name] = float64(s.RSSBytes) / (1 << 20)
				prevProc[name] = s.CPUSeconds
			}
		}
		p.OtherCPU = max(0, p.OtherCPU)
		out = append(out, p)
		prev, prevAcked, prevReq = now, acked, req
	}
}
