package edge

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/weir-metrics/weir/pkg/influx"
	"github.com/weir-metrics/weir/pkg/limits"
	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
)

// influxAPI is the InfluxDB API generation an endpoint imitates; it decides
// parameter names and the shape of error answers.
type influxAPI uint8

const (
	influxV1 influxAPI = 1 // POST /write, what Telegraf's outputs.influxdb sends
	influxV2 influxAPI = 2 // POST /api/v2/write, what outputs.influxdb_v2 sends
)

// influxState holds the buffers of one line-protocol request; pooled so
// steady-state requests allocate little.
type influxState struct {
	body    []byte
	decoded []byte
	batch   influx.Batch
	builder record.Builder
}

var influxStates = newFreeList[influxState](idleStates)

// influxWriteHandler serves line-protocol writes. A request is written
// entirely or not at all: the first line that does not parse refuses it
// with 400 naming the line and column, as InfluxDB 2 does.
func (e *Edge) influxWriteHandler(api influxAPI) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received := time.Now()
		q := r.URL.Query()
		db, hint := q.Get("db"), q.Get("db")
		if api == influxV2 {
			db, hint = q.Get("bucket"), q.Get("org")
		}
		ten, err := e.auth.InfluxTenant(r, hint)
		if err != nil {
			e.refuseInflux(w, api, "", 0, authRefusal(w, err))
			return
		}
		lim := e.overrides.For(ten)
		precision, err := influx.ParsePrecision(q.Get("precision"), api == influxV1)
		if err != nil {
			e.refuseInflux(w, api, ten, 0, refuse(http.StatusBadRequest, "invalid_precision", "%v", err))
			return
		}
		enc := r.Header.Get("Content-Encoding")
		if enc != "" && enc != "identity" && enc != "gzip" {
			e.refuseInflux(w, api, ten, 0, refuse(http.StatusUnsupportedMediaType, "unsupported_content_encoding",
				"unsupported Content-Encoding %q: send gzip or identity", enc))
			return
		}

		st := influxStates.get()
		defer func() {
			if pooled(st.body, st.decoded) {
				influxStates.put(st)
			}
		}()
		rsv := e.inflight.reserve(ten, lim)
		defer rsv.release()
		if rf := readBody(r, &st.body, ten, lim, &rsv); rf != nil {
			e.refuseInflux(w, api, ten, 0, rf)
			return
		}
		e.metrics.requestBytes.WithLabelValues(record.SourceInflux).Observe(float64(len(st.body)))
		data := st.body
		if enc == "gzip" {
			if rf := e.inflight.decode(r.Context(), ten, func() *refusal { return gunzip(st.body, &st.decoded, ten, lim, &rsv) }); rf != nil {
				e.refuseInflux(w, api, ten, 0, rf)
				return
			}
			data = st.decoded
		}
		if rf := rsv.grow(lineProtocolMemoryPerByte * int64(len(data))); rf != nil {
			e.refuseInflux(w, api, ten, 0, rf)
			return
		}
		strs, _ := influx.ParseStringFields(lim.InfluxStringFields)
		opts := influx.Options{
			Precision:     precision,
			DatabaseLabel: lim.InfluxDatabaseLabel,
			Database:      db,
			StringFields:  strs,
			KeepNames:     lim.InfluxKeepNames,
			Now:           received,
		}
		// Parse normalises the series (and refuses lines whose series
		// cannot be), as admit needs them.
		b := &st.batch
		if err := b.Parse(data, &opts); err != nil {
			reason := "invalid_line_protocol"
			var invalid *prw.InvalidSeriesError
			if errors.As(err, &invalid) {
				reason = "invalid_series"
			}
			e.refuseInflux(w, api, ten, 0, refuse(http.StatusBadRequest, reason, "%v", err))
			return
		}
		samples := b.Samples()
		e.metrics.samplesReceived.WithLabelValues(ten, record.SourceInflux).Add(float64(samples))
		wr := write{
			tenant:   ten,
			source:   record.SourceInflux,
			received: received,
			limits:   lim,
			usage:    limits.Usage{RequestBytes: int64(len(st.body)), DecompressedBytes: int64(len(data))},
			series:   b.Series,
			samples:  samples,
			builder:  &st.builder,
		}
		if rf := e.admit(r.Context(), &wr); rf != nil {
			e.refuseInflux(w, api, ten, samples, rf)
			return
		}
		if b.StringFieldsDropped > 0 {
			e.metrics.fieldsDropped.WithLabelValues(ten, "string_field").Add(float64(b.StringFieldsDropped))
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// refuseInflux answers a refused line-protocol write the way InfluxDB
// does, so clients log the reason: 2.x as {"code", "message"}, 1.x as
// {"error"} plus the X-Influxdb-Error header.
//
// Telegraf's outputs.influxdb (1.x) drops a batch on any 4xx and keeps it
// for the next flush on 5xx; it has no notion of 429. A rate-limited /write
// is therefore answered 503, as InfluxDB 1.x itself answers write
// overload, so the data is retried rather than lost.
func (e *Edge) refuseInflux(w http.ResponseWriter, api influxAPI, ten string, samples int, rf *refusal) {
	e.countRefusal(ten, samples, rf)
	status := rf.status
	if api == influxV1 && status == http.StatusTooManyRequests {
		status = http.StatusServiceUnavailable
	}
	setRetryAfter(w.Header(), rf)
	var body any
	if api == influxV2 {
		body = struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}{influxCode(status), rf.msg}
	} else {
		w.Header().Set("X-Influxdb-Error", headerSafe(rf.msg))
		body = struct {
			Error string `json:"error"`
		}{rf.msg}
	}
	writeJSON(w, status, body)
}

// influxCode is InfluxDB 2's error code of a status.
func influxCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusRequestEntityTooLarge:
		return "request too large"
	case http.StatusUnsupportedMediaType:
		return "unsupported media type"
	case http.StatusTooManyRequests:
		return "too many requests"
	case http.StatusServiceUnavailable:
		return "unavailable"
	}
	return "internal error"
}

// headerSafe keeps a message usable as a header value.
func headerSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 1024 {
		s = s[:1024]
	}
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// influxQueryHandler answers InfluxDB 1.x's /query for what Telegraf's
// outputs.influxdb sends: CREATE DATABASE at start, answered as a success
// (weir has no databases to create). Any other statement is refused: weir
// is queried with PromQL.
func (e *Edge) influxQueryHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			w.Header().Set("Allow", "GET, POST")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use GET or POST"})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if err := r.ParseForm(); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "reading the query: " + err.Error()})
			return
		}
		if _, err := e.auth.InfluxTenant(r, r.Form.Get("db")); err != nil {
			rf := authRefusal(w, err)
			writeJSON(w, rf.status, map[string]string{"error": rf.msg})
			return
		}
		var results []map[string]int
		for _, stmt := range strings.Split(r.Form.Get("q"), ";") {
			stmt = strings.TrimSpace(stmt)
			if stmt == "" {
				continue
			}
			if len(stmt) < len("CREATE DATABASE") || !strings.EqualFold(stmt[:len("CREATE DATABASE")], "CREATE DATABASE") {
				writeJSON(w, http.StatusBadRequest, map[string]string{
					"error": "weir answers only CREATE DATABASE on /query (Telegraf sends it at start); query weir with PromQL at /api/v1/query",
				})
				return
			}
			results = append(results, map[string]int{"statement_id": len(results)})
		}
		if len(results) == 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": `missing required parameter "q"`})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"results": results})
	})
}

// influxBuild names weir in the headers InfluxDB clients read.
const influxBuild = "weir"

// servePing answers GET and HEAD /ping as InfluxDB does: 204, or 200 with
// the version when verbose.
func (e *Edge) servePing(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Influxdb-Build", influxBuild)
	w.Header().Set("X-Influxdb-Version", influxBuild)
	if v := r.URL.Query().Get("verbose"); v == "true" || v == "1" {
		writeJSON(w, http.StatusOK, map[string]string{"version": influxBuild})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// serveHealth answers GET /health as InfluxDB 2 does: pass once the edge
// can write to Kafka.
func (e *Edge) serveHealth(w http.ResponseWriter, _ *http.Request) {
	type health struct {
		Name    string   `json:"name"`
		Message string   `json:"message"`
		Status  string   `json:"status"`
		Checks  []string `json:"checks"`
		Version string   `json:"version"`
	}
	if err := e.Ready(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, health{"weir", err.Error(), "fail", []string{}, influxBuild})
		return
	}
	writeJSON(w, http.StatusOK, health{"weir", "ready for queries and writes", "pass", []string{}, influxBuild})
}
