package edge

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/golang/snappy"

	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
	"github.com/weir-metrics/weir/pkg/tenant"
)

// Remote-write response headers (remote-write 2.0 specification).
const (
	headerSamplesWritten    = "X-Prometheus-Remote-Write-Samples-Written"
	headerHistogramsWritten = "X-Prometheus-Remote-Write-Histograms-Written"
	headerExemplarsWritten  = "X-Prometheus-Remote-Write-Exemplars-Written"
)

// writeState holds the buffers of one request; pooled so steady-state
// requests allocate little.
type writeState struct {
	body    []byte
	decoded []byte
	req     prw.Request
	builder record.Builder
}

var writeStates = sync.Pool{New: func() any { return new(writeState) }}

// refusal is a request the edge answers with an error status.
type refusal struct {
	status int
	reason string // the reason label of the refusal metrics
	msg    string
}

func (r *refusal) Error() string { return r.msg }

func refuse(status int, reason, format string, args ...any) *refusal {
	return &refusal{status: status, reason: reason, msg: fmt.Sprintf(format, args...)}
}

// remoteWriteVersion picks the message type from Content-Type as the
// remote-write specifications define it. An empty Content-Type is 1.0, as
// Prometheus' own receiver treats it.
func remoteWriteVersion(contentType string) (prw.Version, *refusal) {
	if contentType == "" {
		return prw.V1, nil
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/x-protobuf" {
		return 0, refuse(http.StatusUnsupportedMediaType, "unsupported_content_type",
			"unsupported Content-Type %q: remote-write needs application/x-protobuf, optionally with proto=prometheus.WriteRequest or proto=io.prometheus.write.v2.Request", contentType)
	}
	switch params["proto"] {
	case "", "prometheus.WriteRequest":
		return prw.V1, nil
	case "io.prometheus.write.v2.Request":
		return prw.V2, nil
	}
	return 0, refuse(http.StatusUnsupportedMediaType, "unsupported_content_type",
		"unsupported remote-write message %q: this receiver accepts prometheus.WriteRequest and io.prometheus.write.v2.Request", params["proto"])
}

func (e *Edge) remoteWriteHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received := time.Now()
		st := writeStates.Get().(*writeState)
		defer writeStates.Put(st)

		ten := tenant.FromHeader(r.Header)
		if err := tenant.ValidateID(ten); err != nil {
			e.writeRefusal(w, "", 0, refuse(http.StatusBadRequest, "invalid_tenant", "X-Scope-OrgID: %v", err))
			return
		}
		version, rf := remoteWriteVersion(r.Header.Get("Content-Type"))
		if rf != nil {
			e.writeRefusal(w, ten, 0, rf)
			return
		}
		source := record.SourcePRW1
		if version == prw.V2 {
			source = record.SourcePRW2
		}
		if enc := r.Header.Get("Content-Encoding"); enc != "" && enc != "snappy" {
			e.writeRefusal(w, ten, 0, refuse(http.StatusUnsupportedMediaType, "unsupported_content_encoding",
				"unsupported Content-Encoding %q: remote-write bodies must be snappy block encoded", enc))
			return
		}

		if rf := e.readBody(r, st); rf != nil {
			e.writeRefusal(w, ten, 0, rf)
			return
		}
		e.metrics.requestBytes.WithLabelValues(source).Observe(float64(len(st.body)))
		if rf := e.decodeSnappy(st); rf != nil {
			e.writeRefusal(w, ten, 0, rf)
			return
		}
		st.req.Reset()
		if err := st.req.Unmarshal(version, st.decoded); err != nil {
			e.writeRefusal(w, ten, 0, refuse(http.StatusBadRequest, "invalid_protobuf", "decoding %s request: %v", source, err))
			return
		}
		samples, histograms, exemplars := st.req.Counts()
		total := samples + histograms
		e.metrics.samplesReceived.WithLabelValues(ten, source).Add(float64(total))
		for i := range st.req.Series {
			if err := st.req.Series[i].Normalize(); err != nil {
				e.writeRefusal(w, ten, total, refuse(http.StatusBadRequest, "invalid_series", "%v", err))
				return
			}
		}
		if total == 0 && exemplars == 0 {
			writeCounts(w, 0, 0, 0)
			w.WriteHeader(http.StatusNoContent)
			return
		}

		if err := e.topics.EnsureTenant(r.Context(), ten); err != nil {
			e.log.Warn("cannot create tenant topics", "tenant", ten, "err", err)
			e.writeRefusal(w, ten, total, refuse(http.StatusServiceUnavailable, "kafka_unavailable", "Kafka is not available: %v", err))
			return
		}
		encoded, err := st.builder.Build(ten, st.req.Series, e.cfg.Kafka.Partitions, e.cfg.Kafka.MaxRecordBytes)
		if err != nil {
			var tooLarge *record.SeriesTooLargeError
			if errors.As(err, &tooLarge) {
				e.writeRefusal(w, ten, total, refuse(http.StatusBadRequest, "series_too_large", "%v", err))
				return
			}
			e.writeRefusal(w, ten, total, refuse(http.StatusInternalServerError, "internal", "encoding records: %v", err))
			return
		}
		if err := e.produce(r.Context(), ten, e.newRecords(ten, source, received, encoded)); err != nil {
			e.writeRefusal(w, ten, total, refuse(http.StatusServiceUnavailable, "kafka_unavailable",
				"Kafka did not acknowledge the write in time, nothing of this request is acknowledged; retry: %v", err))
			return
		}
		e.metrics.samplesWritten.WithLabelValues(ten, source).Add(float64(total))
		e.metrics.exemplarsWritten.WithLabelValues(ten).Add(float64(exemplars))
		writeCounts(w, samples, histograms, exemplars)
		w.WriteHeader(http.StatusNoContent)
	})
}

// readBody reads the request body into st.body, refusing bodies above the
// configured limit before reading them when Content-Length says so.
func (e *Edge) readBody(r *http.Request, st *writeState) *refusal {
	limit := e.cfg.Edge.MaxRequestBytes
	if r.ContentLength > limit {
		return refuse(http.StatusRequestEntityTooLarge, "body_too_large",
			"request body of %d bytes exceeds edge.max_request_bytes (%d); send smaller batches", r.ContentLength, limit)
	}
	buf := st.body[:0]
	if r.ContentLength > 0 && int64(cap(buf)) < r.ContentLength {
		buf = make([]byte, 0, r.ContentLength)
	}
	lr := io.LimitReader(r.Body, limit+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			st.body = buf
			return refuse(http.StatusBadRequest, "body_read_error", "reading request body: %v", err)
		}
	}
	st.body = buf
	if int64(len(buf)) > limit {
		return refuse(http.StatusRequestEntityTooLarge, "body_too_large",
			"request body exceeds edge.max_request_bytes (%d); send smaller batches", limit)
	}
	return nil
}

// decodeSnappy inflates st.body into st.decoded. The decoded length is
// read from the snappy header and checked before anything is allocated, so
// a bomb costs nothing.
func (e *Edge) decodeSnappy(st *writeState) *refusal {
	n, err := snappy.DecodedLen(st.body)
	if err != nil {
		return refuse(http.StatusBadRequest, "invalid_snappy", "decoding snappy body: %v", err)
	}
	if int64(n) > e.cfg.Edge.MaxDecompressedBytes {
		return refuse(http.StatusRequestEntityTooLarge, "decompressed_too_large",
			"body decompresses to %d bytes, more than edge.max_decompressed_bytes (%d); send smaller batches", n, e.cfg.Edge.MaxDecompressedBytes)
	}
	if cap(st.decoded) < n {
		st.decoded = make([]byte, n)
	}
	out, err := snappy.Decode(st.decoded[:cap(st.decoded)], st.body)
	if err != nil {
		return refuse(http.StatusBadRequest, "invalid_snappy", "decoding snappy body: %v", err)
	}
	st.decoded = out
	return nil
}

func writeCounts(w http.ResponseWriter, samples, histograms, exemplars int) {
	h := w.Header()
	h.Set(headerSamplesWritten, strconv.Itoa(samples))
	h.Set(headerHistogramsWritten, strconv.Itoa(histograms))
	h.Set(headerExemplarsWritten, strconv.Itoa(exemplars))
}

// writeRefusal answers a refused request: nothing of it was written. For
// 503 it asks the sender to retry after a second.
func (e *Edge) writeRefusal(w http.ResponseWriter, ten string, samples int, rf *refusal) {
	e.metrics.requestsRefused.WithLabelValues(ten, rf.reason).Inc()
	if samples > 0 {
		e.metrics.samplesRefused.WithLabelValues(ten, rf.reason).Add(float64(samples))
	}
	writeCounts(w, 0, 0, 0)
	if rf.status == http.StatusServiceUnavailable || rf.status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	if rf.status >= 500 {
		e.log.Warn("write refused", "tenant", ten, "status", rf.status, "reason", rf.reason, "err", rf.msg)
	} else {
		e.log.Debug("write refused", "tenant", ten, "status", rf.status, "reason", rf.reason, "err", rf.msg)
	}
	http.Error(w, rf.msg, rf.status)
}
