// Package metrics is the service's Prometheus instrumentation: one
// registry per server, served on its own listener (LOK8S_METRICS_ADDR).
// HTTP requests by route and code, pipeline steps by provider, kind, step
// and outcome, operations by outcome, River jobs, clusters by phase,
// requests to each management cluster, each watcher's leader state and
// lag, open event streams and their delivery lag. A nil *Metrics records
// nothing, so code under test needs none.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "lok8s"

// Metrics holds the service's collectors.
type Metrics struct {
	reg *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	steps        *prometheus.HistogramVec
	failures     *prometheus.CounterVec
	operations   *prometheus.CounterVec
	jobWait      *prometheus.HistogramVec
	jobRun       *prometheus.HistogramVec
	jobsEnded    *prometheus.CounterVec
	mgmtRequests *prometheus.CounterVec
	mgmtDuration *prometheus.HistogramVec
	leader       *prometheus.GaugeVec
	watcherLag   *prometheus.HistogramVec
	streams      prometheus.Gauge
	eventLag     prometheus.Histogram

	// collectors are those registered, for Names.
	mu         sync.Mutex
	collectors []prometheus.Collector
}

// New makes the collectors and registers them, with Go's and the process's.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status code."}, []string{"route", "method", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "Time to answer an HTTP request (event streams: their whole life), by route pattern and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"route", "method"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "step_duration_seconds",
			Help: "Pipeline steps ended, by provider, operation kind, step and outcome (succeeded, skipped, failed, retried): " +
				"from the step's first start to its end, waits included.",
			Buckets: []float64{.05, .25, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 2700}}, []string{"provider", "kind", "step", "outcome"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "step_failures_total",
			Help: "Step failures by provider, operation kind, step, failure code (as in the status) and final " +
				"(true: the operation failed; false: the step is retried)."}, []string{"provider", "kind", "step", "code", "final"}),
		operations: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "operations_total",
			Help: "Operations ended, by kind and outcome (succeeded, failed)."}, []string{"kind", "outcome"}),
		jobWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "job_queue_wait_seconds",
			Help: "Time River jobs waited available before a worker took them, by kind.", Buckets: prometheus.DefBuckets}, []string{"kind"}),
		jobRun: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "job_run_seconds",
			Help: "Time one run of a River job took, by kind.", Buckets: prometheus.DefBuckets}, []string{"kind"}),
		jobsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "job_runs_total",
			Help: "Runs of River jobs by kind and how they ended (completed, snoozed, failed, cancelled)."}, []string{"kind", "result"}),
		mgmtRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "management_requests_total",
			Help: "Requests to management clusters' API servers, by cluster (\"\" is the SaaS default), method and code (\"error\": no answer)."},
			[]string{"cluster", "method", "code"}),
		mgmtDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "management_request_duration_seconds",
			Help:    "Latency of requests to management clusters' API servers, by cluster and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}, []string{"cluster", "method"}),
		leader: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "watcher_leader",
			Help: "1 while this replica holds the management cluster's watcher lease and runs its watcher (\"\" is the SaaS default), else 0."},
			[]string{"management_cluster"}),
		watcherLag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "watcher_lag_seconds",
			Help:    "Time from a watched object's change reaching this replica's watcher to the cluster's observed status recorded, by management cluster.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"management_cluster"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "event_streams",
			Help: "Event streams (Server-Sent Events: /v1/events, /v1/clusters/{name}/events) open now."}),
		eventLag: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "event_delivery_lag_seconds",
			Help: "Time from an event's creation (its transaction's start) to its write to a stream, for events " +
				"created while the stream was open (not those replayed after Last-Event-ID).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
	}
	m.register(m.httpRequests, m.httpDuration, m.steps, m.failures, m.operations, m.jobWait, m.jobRun, m.jobsEnded,
		m.mgmtRequests, m.mgmtDuration, m.streams, m.eventLag, m.leader, m.watcherLag,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// register registers cs and remembers them for Names.
func (m *Metrics) register(cs ...prometheus.Collector) {
	m.reg.MustRegister(cs...)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.collectors = append(m.collectors, cs...)
}

// fqName reads a metric's name from its Desc, which has no accessor.
var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Names lists the name of every metric registered (a histogram's series
// add _bucket, _sum and _count to it), sorted: what dashboards and alerts
// may name.
func (m *Metrics) Names() []string {
	m.mu.Lock()
	cs := slices.Clone(m.collectors)
	m.mu.Unlock()
	descs := make(chan *prometheus.Desc)
	go func() {
		defer close(descs)
		for _, c := range cs {
			c.Describe(descs)
		}
	}()
	seen := map[string]bool{}
	for d := range descs {
		if match := fqName.FindStringSubmatch(d.String()); match != nil {
			seen[match[1]] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Handler serves the registry in Prometheus's exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Middleware counts and times each request by the route pattern it
// matched (so /v1/clusters/{name} is one series, whatever the name;
// "unmatched" for a path no route has). It must wrap the outermost chi
// router: it gives that router the routing context it then fills.
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rctx := chi.NewRouteContext()
		r = r.WithContext(context.WithValue(r.Context(), chi.RouteCtxKey, rctx))
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := rctx.RoutePattern()
		if route == "" {
			route = "unmatched"
		}
		m.httpRequests.WithLabelValues(route, r.Method, strconv.Itoa(rec.code)).Inc()
		m.httpDuration.WithLabelValues(route, r.Method).Observe(time.Since(start).Seconds())
	})
}

// Step records a pipeline step that ended.
func (m *Metrics) Step(provider, kind, step, outcome string, took time.Duration) {
	if m == nil {
		return
	}
	m.steps.WithLabelValues(provider, kind, step, outcome).Observe(took.Seconds())
}

// StepFailure records a step's failure with its code.
func (m *Metrics) StepFailure(provider, kind, step, code string, final bool) {
	if m == nil {
		return
	}
	m.failures.WithLabelValues(provider, kind, step, code, strconv.FormatBool(final)).Inc()
}

// Operation records an operation that ended.
func (m *Metrics) Operation(kind, outcome string) {
	if m == nil {
		return
	}
	m.operations.WithLabelValues(kind, outcome).Inc()
}

// Job records one run of a River job.
func (m *Metrics) Job(kind, result string, queueWait, run time.Duration) {
	if m == nil {
		return
	}
	m.jobsEnded.WithLabelValues(kind, result).Inc()
	m.jobRun.WithLabelValues(kind).Observe(run.Seconds())
	if queueWait > 0 {
		m.jobWait.WithLabelValues(kind).Observe(queueWait.Seconds())
	}
}

// ManagementTransport instruments the transport to management cluster
// domain ("" is the SaaS default).
func (m *Metrics) ManagementTransport(domain string, next http.RoundTripper) http.RoundTripper {
	if m == nil {
		return next
	}
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		start := time.Now()
		resp, err := next.RoundTrip(r)
		code := "error"
		if err == nil {
			code = strconv.Itoa(resp.StatusCode)
		}
		m.mgmtRequests.WithLabelValues(domain, r.Method, code).Inc()
		if !isWatch(r) {
			m.mgmtDuration.WithLabelValues(domain, r.Method).Observe(time.Since(start).Seconds())
		}
		return resp, err
	})
}

// Leading records whether this replica leads management cluster domain's
// watcher.
func (m *Metrics) Leading(domain string, leading bool) {
	if m == nil {
		return
	}
	v := 0.0
	if leading {
		v = 1
	}
	m.leader.WithLabelValues(domain).Set(v)
}

// WatcherLag records how long a change took from the watcher's informer
// to the store.
func (m *Metrics) WatcherLag(domain string, d time.Duration) {
	if m == nil {
		return
	}
	m.watcherLag.WithLabelValues(domain).Observe(d.Seconds())
}

// StreamOpened counts an event stream open until closed is called.
func (m *Metrics) StreamOpened() (closed func()) {
	if m == nil {
		return func() {}
	}
	m.streams.Inc()
	return m.streams.Dec
}

// EventDelivered records the lag of an event written to a stream.
func (m *Metrics) EventDelivered(lag time.Duration) {
	if m == nil {
		return
	}
	m.eventLag.Observe(lag.Seconds())
}

// Gauges registers gauges read at each scrape: name, help and label, and
// read, which returns the value of each label value. A read that fails is
// logged and leaves the gauge out of that scrape.
func (m *Metrics) Gauges(name, help, label string, read func(context.Context) (map[string]float64, error), log *slog.Logger) {
	if m == nil {
		return
	}
	m.register(&gaugeCollector{
		desc: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, []string{label}, nil),
		read: read, log: log,
	})
}

// gaugeCollector asks read for its values when scraped.
type gaugeCollector struct {
	desc *prometheus.Desc
	read func(context.Context) (map[string]float64, error)
	log  *slog.Logger
}

func (g *gaugeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *gaugeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	values, err := g.read(ctx)
	if err != nil {
		g.log.Warn("metrics: read gauges", "metric", g.desc.String(), "error", err)
		return
	}
	for label, v := range values {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v, label)
	}
}

func isWatch(r *http.Request) bool { return r.URL.Query().Get("watch") == "true" }

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// statusRecorder remembers the status code written, and passes Flush on
// (event streams flush each event).
type statusRecorder struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wroteHeader {
		s.code, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wroteHeader = true
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection (write deadlines).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
