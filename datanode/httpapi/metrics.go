package httpapi

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"backuprepo/datanode/disk"
)

// metrics are the data node's Prometheus metrics; names match the control plane's where the
// meaning is the same, so one dashboard reads both.
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	bytesIn  *prometheus.CounterVec
	bytesOut *prometheus.CounterVec
	inFlight prometheus.Gauge
	uploads  *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry, store *disk.Store) (*metrics, error) {
	labels := []string{"method", "route", "code"}
	m := &metrics{
		registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "br_http_requests_total",
			Help: "HTTP requests answered, by method, route pattern and status code.",
		}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "br_http_request_duration_seconds",
			Help: "Time to answer HTTP requests, by method, route pattern and status code.",
			// Up to an hour: large backups stream through these routes.
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}, labels),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "br_http_request_bytes_total",
			Help: "Request body bytes read, by route pattern.",
		}, []string{"route"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "br_http_response_bytes_total",
			Help: "Response body bytes written, by route pattern.",
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "br_uploads_in_flight",
			Help: "Uploads admitted and not yet answered on this node.",
		}),
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "br_datanode_uploads_total",
			Help: "Uploads that reached the node after admission, by outcome (ok or the refusal code).",
		}, []string{"outcome"}),
	}
	for _, c := range []prometheus.Collector{
		m.requests, m.duration, m.bytesIn, m.bytesOut, m.inFlight, m.uploads,
		newDiskCollector(store),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return method
	}
	return "OTHER"
}

// middleware records every request by route pattern, not path, to keep label cardinality
// bounded. chi's wrapper forwards ReadFrom, so downloads keep using sendfile.
func (m *metrics) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		body := &countingReader{r: r.Body}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = body
		}
		defer func() {
			route := "unmatched"
			if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
				route = rc.RoutePattern()
			}
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK
			}
			code := strconv.Itoa(status)
			method := methodLabel(r.Method)
			m.requests.WithLabelValues(method, route, code).Inc()
			m.duration.WithLabelValues(method, route, code).Observe(time.Since(start).Seconds())
			m.bytesIn.WithLabelValues(route).Add(float64(body.n.Load()))
			m.bytesOut.WithLabelValues(route).Add(float64(ww.BytesWritten()))
		}()
		next.ServeHTTP(ww, r)
	})
}

// countingReader counts request body bytes; atomic because the upload's reader and the
// deferred recording may run on different goroutines.
type countingReader struct {
	r io.ReadCloser
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

// diskCollector reads the store's capacity at scrape time (statfs, cached a second by the store).
type diskCollector struct {
	store *disk.Store
	free  *prometheus.Desc
	total *prometheus.Desc
}

func newDiskCollector(store *disk.Store) *diskCollector {
	return &diskCollector{
		store: store,
		free:  prometheus.NewDesc("br_disk_free_bytes", "Free bytes of a data disk.", []string{"path"}, nil),
		total: prometheus.NewDesc("br_disk_total_bytes", "Size of a data disk in bytes.", []string{"path"}, nil),
	}
}

func (c *diskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.free
	ch <- c.total
}

func (c *diskCollector) Collect(ch chan<- prometheus.Metric) {
	for _, d := range c.store.Capacity() {
		ch <- prometheus.MustNewConstMetric(c.free, prometheus.GaugeValue, float64(d.Free), d.Path)
		ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(d.Total), d.Path)
	}
}
