// Package promtarget runs, for the harness' own tests, a real target:
// Prometheus' own remote-write receiver (storage/remote, 1.0 and 2.0) in
// front of a real prometheus/tsdb, and the instant-query endpoint of the
// Prometheus HTTP API on Prometheus' PromQL engine. It can be told to
// misbehave while still answering 2xx — drop, duplicate or alter one
// sample — or to answer 503 after storing a request, so that the loss
// check can be shown to catch exactly those faults.
package promtarget

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb"
)

// Fault makes the target misbehave once. Counting is over the float
// samples of series named Metric, in the order they are appended; 0
// disables a fault.
type Fault struct {
	Metric string
	// DropNth acknowledges but does not store the n-th sample.
	DropNth int
	// DuplicateNth also stores the n-th sample again 1 ms later.
	DuplicateNth int
	// AlterNth stores the n-th sample with its value plus one.
	AlterNth int
	// Fail503Nth answers the n-th write request with 503 after storing it.
	Fail503Nth int
}

// Server is a running target.
type Server struct {
	URL string
	DB  *tsdb.DB

	fault    Fault
	mu       sync.Mutex
	seen     int
	requests int
	// Dropped, Duplicated and Altered report the samples the faults hit.
	Dropped, Duplicated, Altered []Sample
}

// Sample identifies a sample a fault hit.
type Sample struct {
	Labels labels.Labels
	T      int64
}

// Start runs a target until the test ends.
func Start(t testing.TB, fault Fault) *Server {
	t.Helper()
	opts := tsdb.DefaultOptions()
	db, err := tsdb.Open(t.TempDir(), slog.New(slog.DiscardHandler), nil, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{DB: db, fault: fault}
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	mux := http.NewServeMux()
	write := remote.NewWriteHandler(slog.New(slog.DiscardHandler), nil, appendable{s},
		remoteapi.MessageTypes{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType}, false, false, false)
	mux.Handle("/api/v1/write", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests++
		n := s.requests
		s.mu.Unlock()
		if n != s.fault.Fail503Nth {
			write.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		write.ServeHTTP(rec, r)
		http.Error(w, "stored, but answering 503 on purpose", http.StatusServiceUnavailable)
	}))
	mux.HandleFunc("/api/v1/query", func(w http.ResponseWriter, r *http.Request) { s.query(w, r, engine) })
	srv := httptest.NewServer(mux)
	s.URL = srv.URL
	t.Cleanup(func() {
		srv.Close()
		_ = db.Close()
	})
	return s
}

type appendable struct{ s *Server }

func (a appendable) Appender(ctx context.Context) storage.Appender {
	return &faultyAppender{Appender: a.s.DB.Appender(ctx), s: a.s}
}

type faultyAppender struct {
	storage.Appender
	s *Server
}

func (f *faultyAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	s := f.s
	if s.fault.Metric == "" || l.Get(labels.MetricName) != s.fault.Metric {
		return f.Appender.Append(ref, l, t, v)
	}
	s.mu.Lock()
	s.seen++
	n := s.seen
	s.mu.Unlock()
	switch n {
	case s.fault.DropNth:
		s.mu.Lock()
		s.Dropped = append(s.Dropped, Sample{l.Copy(), t})
		s.mu.Unlock()
		return ref, nil
	case s.fault.AlterNth:
		s.mu.Lock()
		s.Altered = append(s.Altered, Sample{l.Copy(), t})
		s.mu.Unlock()
		return f.Appender.Append(ref, l, t, v+1)
	case s.fault.DuplicateNth:
		ref, err := f.Appender.Append(ref, l, t, v)
		if err != nil {
			return ref, err
		}
		s.mu.Lock()
		s.Duplicated = append(s.Duplicated, Sample{l.Copy(), t + 1})
		s.mu.Unlock()
		return f.Appender.Append(ref, l, t+1, v)
	}
	return f.Appender.Append(ref, l, t, v)
}

// query serves /api/v1/query in the Prometheus API's JSON shapes.
func (s *Server) query(w http.ResponseWriter, r *http.Request, engine *promql.Engine) {
	fail := func(code int, err error) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": "bad_data", "error": err.Error()})
	}
	if err := r.ParseForm(); err != nil {
		fail(http.StatusBadRequest, err)
		return
	}
	ts := time.Now()
	if v := r.Form.Get("time"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			fail(http.StatusBadRequest, fmt.Errorf("bad time %q", v))
			return
		}
		ts = time.UnixMilli(int64(math.Round(f * 1000)))
	}
	q, err := engine.NewInstantQuery(r.Context(), s.DB, nil, r.Form.Get("query"), ts)
	if err != nil {
		fail(http.StatusBadRequest, err)
		return
	}
	defer q.Close()
	res := q.Exec(r.Context())
	if res.Err != nil {
		fail(http.StatusUnprocessableEntity, res.Err)
		return
	}
	type series struct {
		Metric map[string]string `json:"metric"`
		Value  []any             `json:"value,omitempty"`
		Values [][]any           `json:"values,omitempty"`
	}
	point := func(t int64, v float64) []any {
		return []any{float64(t) / 1000, strconv.FormatFloat(v, 'f', -1, 64)}
	}
	var kind string
	out := []series{}
	switch v := res.Value.(type) {
	case promql.Vector:
		kind = "vector"
		for _, smp := range v {
			out = append(out, series{Metric: smp.Metric.Map(), Value: point(smp.T, smp.F)})
		}
	case promql.Matrix:
		kind = "matrix"
		for _, ser := range v {
			sr := series{Metric: ser.Metric.Map()}
			for _, p := range ser.Floats {
				sr.Values = append(sr.Values, point(p.T, p.F))
			}
			out = append(out, sr)
		}
	case promql.Scalar:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "scalar", "result": point(v.T, v.V)}})
		return
	default:
		fail(http.StatusBadRequest, fmt.Errorf("unsupported result type %T", res.Value))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": kind, "result": out}})
}
