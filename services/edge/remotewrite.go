package edge

import (
	"mime"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/golang/snappy"
	"github.com/weir-metrics/weir/pkg/auth"
	"github.com/weir-metrics/weir/pkg/limits"
	"github.com/weir-metrics/weir/pkg/prw"
	"github.com/weir-metrics/weir/pkg/record"
	"github.com/weir-metrics/weir/pkg/seriescache"
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
	// Per series: its key in the edge's series cache, its series hash,
	// whether that is known yet; and the series to add to the cache.
	keys   []seriescache.Key
	hashes []uint64
	known  []bool
	learn  []int
	hasher record.Hasher
}

var writeStates = newFreeList[writeState](idleStates)

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
		st := writeStates.get()
		defer func() {
			if pooled(st.body, st.decoded) {
				writeStates.put(st)
			}
		}()

		ten, err := e.auth.Tenant(r)
		if err != nil {
			e.refuseRemoteWrite(w, "", 0, authRefusal(w, err))
			return
		}
		lim := e.overrides.For(ten)
		version, rf := remoteWriteVersion(r.Header.Get("Content-Type"))
		if rf != nil {
			e.refuseRemoteWrite(w, ten, 0, rf)
			return
		}
		source := record.SourcePRW1
		if version == prw.V2 {
			source = record.SourcePRW2
		}
		if enc := r.Header.Get("Content-Encoding"); enc != "" && enc != "snappy" {
			e.refuseRemoteWrite(w, ten, 0, refuse(http.StatusUnsupportedMediaType, "unsupported_content_encoding",
				"unsupported Content-Encoding %q: remote-write bodies must be snappy block encoded", enc))
			return
		}

		rsv := e.inflight.reserve(ten, lim)
		defer rsv.release()
		if rf := readBody(r, &st.body, ten, lim, &rsv); rf != nil {
			e.refuseRemoteWrite(w, ten, 0, rf)
			return
		}
		e.metrics.requestBytes.WithLabelValues(source).Observe(float64(len(st.body)))
		// What decoding the series will take is reserved before the body
		// is inflated, from the size its snappy header gives: a request
		// that would pass a bound is refused without spending the CPU. A
		// header that does not decode, or gives more than
		// max_decompressed_bytes, is refused by decodeSnappy.
		if n, err := snappy.DecodedLen(st.body); err == nil && int64(n) <= lim.MaxDecompressedBytes {
			if rf := rsv.grow(remoteWriteMemoryPerByte * int64(n)); rf != nil {
				e.refuseRemoteWrite(w, ten, 0, rf)
				return
			}
		}
		if rf := e.inflight.decode(r.Context(), ten, func() *refusal { return decodeSnappy(st.body, &st.decoded, ten, lim, &rsv) }); rf != nil {
			e.refuseRemoteWrite(w, ten, 0, rf)
			return
		}
		st.req.Reset()
		if err := st.req.Unmarshal(version, st.decoded); err != nil {
			e.refuseRemoteWrite(w, ten, 0, refuse(http.StatusBadRequest, "invalid_protobuf", "decoding %s request: %v", source, err))
			return
		}
		samples, histograms, exemplars := st.req.Counts()
		e.metrics.samplesReceived.WithLabelValues(ten, source).Add(float64(samples + histograms))
		if err := e.normalize(st, ten); err != nil {
			e.refuseRemoteWrite(w, ten, samples+histograms, refuse(http.StatusBadRequest, "invalid_series", "%v", err))
			return
		}
		wr := write{
			tenant:     ten,
			source:     source,
			received:   received,
			limits:     lim,
			usage:      limits.Usage{RequestBytes: int64(len(st.body)), DecompressedBytes: int64(len(st.decoded))},
			series:     st.req.Series,
			samples:    samples,
			histograms: histograms,
			exemplars:  exemplars,
			builder:    &st.builder,
			hashes:     st.hashes,
		}
		if rf := e.admit(r.Context(), &wr); rf != nil {
			e.refuseRemoteWrite(w, ten, samples+histograms, rf)
			return
		}
		writeCounts(w, samples, histograms, exemplars)
		w.WriteHeader(http.StatusNoContent)
	})
}

// normalize normalises the decoded series (prw.TimeSeries.Normalize) and
// computes their series hashes, taking both from the series cache for
// series it knows by their label bytes and teaching it the others.
func (e *Edge) normalize(st *writeState, tenant string) error {
	series := st.req.Series
	n := len(series)
	st.keys = slices.Grow(st.keys[:0], n)[:n]
	st.hashes = slices.Grow(st.hashes[:0], n)[:n]
	st.known = slices.Grow(st.known[:0], n)[:n]
	clear(st.known)
	t := e.seriesCache.Tenant(tenant)
	for i := range series {
		st.keys[i] = seriescache.Key{}
		if raw := st.req.RawLabels(i); raw != nil {
			st.keys[i] = e.seriesCache.Key(t, raw)
		}
	}
	e.seriesCache.Get(st.keys, series, st.hashes, st.known)
	st.learn = st.learn[:0]
	for i := range series {
		ts := &series[i]
		if st.known[i] {
			if err := ts.CheckHistograms(); err != nil {
				return err
			}
			continue
		}
		if err := ts.Normalize(); err != nil {
			return err
		}
		st.hashes[i] = st.hasher.Hash(tenant, ts.Labels)
		st.learn = append(st.learn, i)
	}
	e.seriesCache.Put(st.keys, series, st.hashes, st.learn)
	return nil
}

func writeCounts(w http.ResponseWriter, samples, histograms, exemplars int) {
	h := w.Header()
	h.Set(headerSamplesWritten, strconv.Itoa(samples))
	h.Set(headerHistogramsWritten, strconv.Itoa(histograms))
	h.Set(headerExemplarsWritten, strconv.Itoa(exemplars))
}

// refuseRemoteWrite answers a refused remote-write request in plain text:
// nothing of it was written.
func (e *Edge) refuseRemoteWrite(w http.ResponseWriter, ten string, samples int, rf *refusal) {
	e.countRefusal(ten, samples, rf)
	writeCounts(w, 0, 0, 0)
	setRetryAfter(w.Header(), rf)
	http.Error(w, rf.msg, rf.status)
}

// authRefusal turns an authentication error into a refusal; 401 answers
// name the schemes a sender may use.
func authRefusal(w http.ResponseWriter, err error) *refusal {
	e, ok := err.(*auth.Error)
	if !ok {
		return refuse(http.StatusInternalServerError, "internal", "resolving the tenant: %v", err)
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Add("WWW-Authenticate", `Bearer realm="weir"`)
		w.Header().Add("WWW-Authenticate", `Basic realm="weir"`)
	}
	return &refusal{status: e.Status, reason: e.Reason, msg: e.Msg}
}
