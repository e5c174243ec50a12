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

	"backuprepo/shared"
)

// Metrics are the control plane's Prometheus metrics. The front door updates UploadsInFlight;
// everything else is maintained by this package.
type Metrics struct {
	// UploadsInFlight counts uploads currently streaming through this process.
	UploadsInFlight prometheus.Gauge

	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	bytesIn  *prometheus.CounterVec
	bytesOut *prometheus.CounterVec
}

// NewMetrics registers the control plane's metrics, the Go runtime and process collectors, and
// a collector that reads the cluster view at scrape time, on reg (never the global registry).
func NewMetrics(reg *prometheus.Registry, cluster ClusterView) (*Metrics, error) {
	labels := []string{"method", "route", "code"}
	m := &Metrics{
		registry: reg,
		UploadsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "br_uploads_in_flight",
			Help: "Uploads currently streaming through this process.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "br_http_requests_total",
			Help: "HTTP requests answered, by method, route pattern and status code.",
		}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "br_http_request_duration_seconds",
			Help: "Time to answer HTTP requests, by method, route pattern and status code.",
			// Up to an hour: uploads and downloads of large backups pass through this router.
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
	}
	for _, c := range []prometheus.Collector{
		m.UploadsInFlight, m.requests, m.duration, m.bytesIn, m.bytesOut,
		newClusterCollector(cluster),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// methodLabel keeps the method label bounded whatever clients send.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// middleware records every request by route pattern (not path, to keep label cardinality
// bounded) once the router has matched it.
func (m *Metrics) middleware(next http.Handler) http.Handler {
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
			method := methodLabel(r.Method)
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK // the handler wrote nothing; net/http sends 200
			}
			code := strconv.Itoa(status)
			m.requests.WithLabelValues(method, route, code).Inc()
			m.duration.WithLabelValues(method, route, code).Observe(time.Since(start).Seconds())
			m.bytesIn.WithLabelValues(route).Add(float64(body.n.Load()))
			m.bytesOut.WithLabelValues(route).Add(float64(ww.BytesWritten()))
		}()
		next.ServeHTTP(ww, r)
	})
}

// countingReader counts request body bytes; atomic because a handler may read the body in a
// goroutine while the deferred recording runs after it returns.
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

// clusterCollector reads the gossip view at scrape time, so the numbers are never staler than
// the view itself.
type clusterCollector struct {
	cluster ClusterView
	free    *prometheus.Desc
	total   *prometheus.Desc
	members *prometheus.Desc
}

// memberStates are always exported, zero included, so that dashboards and alerts see a 0 and
// not an absent series.
var memberStates = []shared.NodeState{shared.NodeAlive, shared.NodeSuspect, shared.NodeDead,
	shared.NodeDraining, shared.NodeLeft}

func newClusterCollector(cluster ClusterView) *clusterCollector {
	return &clusterCollector{
		cluster: cluster,
		free: prometheus.NewDesc("br_node_free_bytes",
			"Free bytes on a data node's disks, as last announced over gossip.", []string{"node"}, nil),
		total: prometheus.NewDesc("br_node_total_bytes",
			"Total bytes of a data node's disks, as last announced over gossip.", []string{"node"}, nil),
		members: prometheus.NewDesc("br_cluster_members",
			"Data nodes known to the gossip cluster, by state.", []string{"state"}, nil),
	}
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.free
	ch <- c.total
	ch <- c.members
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	counts := make(map[shared.NodeState]int, len(memberStates))
	seen := make(map[string]bool)
	for _, n := range c.cluster.Nodes() {
		counts[n.State]++
		if seen[n.Name] {
			continue // a duplicate series would make the whole scrape fail
		}
		seen[n.Name] = true
		ch <- prometheus.MustNewConstMetric(c.free, prometheus.GaugeValue, float64(n.FreeBytes()), n.Name)
		ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(n.TotalBytes()), n.Name)
	}
	for _, s := range memberStates {
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}
