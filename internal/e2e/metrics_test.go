package e2e

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// freeAddr returns a loopback address with a port free at the time of the call.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// scrape reads the service's /metrics.
func (s *service) scrape() map[string]*dto.MetricFamily {
	s.t.Helper()
	resp, err := http.Get(s.metricsURL)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return families
}

// sample is the value of the series of family with exactly labels
// (a counter's or gauge's value, a histogram's count); 0 when absent.
func sample(families map[string]*dto.MetricFamily, family string, labels map[string]string) float64 {
	f := families[family]
	if f == nil {
		return 0
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			match = match && labels[l.GetName()] == l.GetValue()
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return 0
}

// TestMetricsMatchWhatHappened provisions a cluster with metrics on and
// checks that a scrape tells what the test saw through the API: each step
// once with its outcome, the operation, the cluster's phase, the job, the
// status reads by route, requests to the management cluster, and the
// event stream open through it with the delivery lag of each event it got.
func TestMetricsMatchWhatHappened(t *testing.T) {
	t.Parallel()
	s := startService(t, options{metrics: true})
	stream := s.countEvents()
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	provisionAndFinish(t, s, "prod", seedSpecWithoutAddons(t))

	// The stream's events, each with its delivery lag, and the stream open.
	for deadline := time.Now().Add(10 * time.Second); ; {
		got := s.scrape()
		lags, received := sample(got, "lok8s_event_delivery_lag_seconds", map[string]string{}), float64(stream.events.Load())
		if lags == received && received >= 10 && sample(got, "lok8s_event_streams", map[string]string{}) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("event stream: %v events received, %v delivery lags observed, lok8s_event_streams %v",
				received, lags, sample(got, "lok8s_event_streams", map[string]string{}))
		}
		time.Sleep(50 * time.Millisecond)
	}
	stream.close()
	for deadline := time.Now().Add(10 * time.Second); sample(s.scrape(), "lok8s_event_streams", map[string]string{}) != 0; {
		if time.Now().After(deadline) {
			t.Fatal("lok8s_event_streams still counts the closed stream")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// River marks the job completed, and reports it, only after the
	// operation's last write, which the status shows: wait for that report.
	completedRun := map[string]string{"kind": "provision", "result": "completed"}
	for deadline := time.Now().Add(10 * time.Second); sample(s.scrape(), "lok8s_job_runs_total", completedRun) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("River reported no completed run of the provision job within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	st := s.mustDo(http.MethodGet, "/v1/clusters/prod/status", "", "", nil, http.StatusOK)
	before := s.scrape()
	const reads = 3
	for range reads {
		s.mustDo(http.MethodGet, "/v1/clusters/prod/status", "", "", nil, http.StatusOK)
	}
	completedBefore := s.completedJobs()
	after := s.scrape()

	op := st["operation"].(map[string]any)
	steps := op["steps"].([]any)
	if len(steps) < 5 {
		t.Fatalf("steps in the status: %v", steps)
	}
	for _, it := range steps {
		step := it.(map[string]any)
		labels := map[string]string{"provider": "hetzner", "kind": "provision", "step": step["name"].(string), "outcome": step["state"].(string)}
		if got := sample(after, "lok8s_step_duration_seconds", labels); got != 1 {
			t.Errorf("step %v ended %v: %v observations in lok8s_step_duration_seconds, want 1", step["name"], step["state"], got)
		}
	}
	checks := []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"lok8s_operations_total", map[string]string{"kind": "provision", "outcome": "succeeded"}, 1},
		{"lok8s_clusters", map[string]string{"phase": "Provisioned"}, 1},
		{"lok8s_job_runs_total", completedRun, 1},
	}
	for _, c := range checks {
		if got := sample(after, c.family, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.family, c.labels, got, c.want)
		}
	}
	if got := sample(after, "lok8s_jobs", map[string]string{"state": "completed"}); got < completedBefore || got > s.completedJobs() || got < 1 {
		t.Errorf("lok8s_jobs{state=completed} = %v; River's table held %v before the scrape", got, completedBefore)
	}
	status := map[string]string{"route": "/v1/clusters/{name}/status", "method": "GET", "code": "200"}
	if got := sample(after, "lok8s_http_requests_total", status) - sample(before, "lok8s_http_requests_total", status); got != reads {
		t.Errorf("status reads counted between the scrapes: %v, want %d", got, reads)
	}
	var mgmtRequests float64
	for _, m := range after["lok8s_management_requests_total"].GetMetric() {
		mgmtRequests += m.GetCounter().GetValue()
	}
	if mgmtRequests < 10 {
		t.Errorf("requests to the management cluster counted: %v", mgmtRequests)
	}
}

// eventCounter is an event stream of the tenant's, read to its end.
type eventCounter struct {
	events atomic.Int64
	close  func()
}

// countEvents opens GET /v1/events and counts the events it carries until
// close is called.
func (s *service) countEvents() *eventCounter {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req) //nolint:bodyclose // closed by the reading goroutine below
	if err != nil {
		cancel()
		s.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		s.t.Fatalf("open event stream: %s", resp.Status)
	}
	c := &eventCounter{}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		defer resp.Body.Close()
		lines := bufio.NewScanner(resp.Body)
		for lines.Scan() {
			if strings.HasPrefix(lines.Text(), "id: ") {
				c.events.Add(1)
			}
		}
	}()
	c.close = func() { cancel(); <-ended }
	s.t.Cleanup(c.close)
	return c
}

// completedJobs counts River's completed jobs.
func (s *service) completedJobs() float64 {
	s.t.Helper()
	var n float64
	if err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM river_job WHERE state = 'completed'`).Scan(&n); err != nil {
		s.t.Fatal(err)
	}
	return n
}
