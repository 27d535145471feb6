package e2e

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// teeHandler hands each record to both handlers.
type teeHandler struct{ a, b slog.Handler }

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.a.Enabled(ctx, l) || h.b.Enabled(ctx, l)
}

func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	_ = h.a.Handle(ctx, r.Clone())
	return h.b.Handle(ctx, r)
}

func (h teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{h.a.WithAttrs(as), h.b.WithAttrs(as)}
}

func (h teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{h.a.WithGroup(name), h.b.WithGroup(name)}
}

// logRecords keeps every record logged, with its own attributes.
type logRecords struct {
	mu      sync.Mutex
	records []map[string]string
}

func (l *logRecords) handler() slog.Handler { return recordingHandler{l} }

// find returns the attributes of the first record with message msg whose
// attribute key has value, if any.
func (l *logRecords) find(msg, key, value string) map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.records {
		if r["msg"] == msg && r[key] == value {
			return r
		}
	}
	return nil
}

type recordingHandler struct{ l *logRecords }

func (recordingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h recordingHandler) Handle(_ context.Context, r slog.Record) error {
	attrs := map[string]string{"msg": r.Message}
	r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
	h.l.mu.Lock()
	h.l.records = append(h.l.records, attrs)
	h.l.mu.Unlock()
	return nil
}

func (h recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordingHandler) WithGroup(string) slog.Handler      { return h }

// spanAttr is span's string attribute key ("" when absent).
func spanAttr(span tracetest.SpanStub, key attribute.Key) string {
	for _, kv := range span.Attributes {
		if kv.Key == key {
			return kv.Value.String()
		}
	}
	return ""
}

// submitSpan finds the server span of the POST /v1/clusters that started
// the trace.
func submitSpan(t *testing.T, spans tracetest.SpanStubs) tracetest.SpanStub {
	t.Helper()
	for _, s := range spans {
		if s.Name == "POST /v1/clusters" && s.SpanKind == trace.SpanKindServer {
			return s
		}
	}
	names := make([]string, 0, len(spans))
	for _, s := range spans {
		names = append(names, s.Name)
	}
	t.Fatalf("no server span POST /v1/clusters among %d spans: %v", len(spans), names)
	return tracetest.SpanStub{}
}

// TestOneTraceFromRequestToManagementCluster provisions a cluster with
// tracing on (the spans go to an in-memory exporter through the same setup
// OTLP uses) and follows one trace: POST /v1/clusters → each run of the
// River job → each step the status lists → requests to the management
// cluster, every span's parent in the chain above it.
func TestOneTraceFromRequestToManagementCluster(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	s := startService(t, options{spans: exp})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	provisionAndFinish(t, s, "prod", seedSpecWithoutAddons(t))
	st := s.mustDo(http.MethodGet, "/v1/clusters/prod/status", "", "", nil, http.StatusOK)

	spans := exp.GetSpans()
	root := submitSpan(t, spans)
	traceID := root.SpanContext.TraceID()
	inTrace := map[trace.SpanID]tracetest.SpanStub{}
	for _, sp := range spans {
		if sp.SpanContext.TraceID() == traceID {
			inTrace[sp.SpanContext.SpanID()] = sp
		}
	}
	parentName := func(sp tracetest.SpanStub) string { return inTrace[sp.Parent.SpanID()].Name }

	jobs, stepOutcomes, mgmtUnderStep := 0, map[string]string{}, 0
	for _, sp := range inTrace {
		switch {
		case sp.Name == "job provision":
			jobs++
			if sp.Parent.SpanID() != root.SpanContext.SpanID() {
				t.Errorf("job span's parent is %q, not the request's span", parentName(sp))
			}
		case strings.HasPrefix(sp.Name, "step "):
			if parentName(sp) != "job provision" {
				t.Errorf("%s's parent is %q, not a job run", sp.Name, parentName(sp))
			}
			if spanAttr(sp, "lok8s.provider") != "hetzner" || spanAttr(sp, "lok8s.kind") != "provision" {
				t.Errorf("%s attributes: %v", sp.Name, sp.Attributes)
			}
			if outcome := spanAttr(sp, "lok8s.outcome"); outcome != "rechecking" {
				stepOutcomes[strings.TrimPrefix(sp.Name, "step ")] = outcome
			}
		case strings.HasPrefix(sp.Name, "management "):
			// Up the chain (client-go may nest nothing, or its own spans) to a step.
			for p, hops := sp, 0; hops < 5; hops++ {
				var ok bool
				if p, ok = inTrace[p.Parent.SpanID()]; !ok {
					break
				}
				if strings.HasPrefix(p.Name, "step ") {
					mgmtUnderStep++
					break
				}
			}
		}
	}
	if jobs == 0 {
		t.Fatalf("no job span in the request's trace (%d spans in it)", len(inTrace))
	}
	for _, it := range st["operation"].(map[string]any)["steps"].([]any) {
		step := it.(map[string]any)
		if got := stepOutcomes[step["name"].(string)]; got != step["state"] {
			t.Errorf("step %v ended %v; its span in the trace: outcome %q", step["name"], step["state"], got)
		}
	}
	if mgmtUnderStep == 0 {
		t.Errorf("no management cluster request span under a step span in the trace")
	}
	t.Logf("trace %s: %d spans, %d job runs, %d management requests under steps", traceID, len(inTrace), jobs, mgmtUnderStep)
}

// TestFailureRecordCarriesTraceID: the management cluster forbids the
// apply; the operation fails, and its failure record (in the status and in
// the step event) names the trace of POST /v1/clusters, the trace id the
// "step failed" log line carries; the metrics count the failure by code.
func TestFailureRecordCarriesTraceID(t *testing.T) {
	t.Parallel()
	forbid := func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPatch && strings.Contains(r.URL.Path, "cluster.x-k8s.io") {
				body := `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,"message":"forbidden by the test"}`
				return &http.Response{StatusCode: http.StatusForbidden, Header: http.Header{"Content-Type": {"application/json"}},
					Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
			}
			return next.RoundTrip(r)
		})
	}
	exp := tracetest.NewInMemoryExporter()
	logs := &logRecords{}
	s := startService(t, options{spans: exp, logs: logs.handler(), wrapTransport: forbid, metrics: true})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	s.submit(seedSpecWithoutAddons(t))
	failed := s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return st["phase"] == "Failed" })

	record, _ := failed["error"].(map[string]any)
	traceID, _ := record["traceId"].(string)
	if record["step"] != "apply" || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(traceID) {
		raw, _ := json.Marshal(record)
		t.Fatalf("failure record: %s", raw)
	}
	if want := submitSpan(t, exp.GetSpans()).SpanContext.TraceID().String(); traceID != want {
		t.Errorf("failure record's trace %s, POST /v1/clusters's %s", traceID, want)
	}
	if line := logs.find("step failed", "step", "apply"); line == nil || line["trace_id"] != traceID {
		t.Errorf("the step failed log line: %v, want trace_id %s", line, traceID)
	}
	if ev := s.findEvent("/v1/clusters/prod/events", `"traceId":"`+traceID+`"`); !strings.Contains(ev, `"step":"apply"`) {
		t.Errorf("step event: %s", ev)
	}
	failure := map[string]string{"provider": "hetzner", "kind": "provision", "step": "apply", "code": record["code"].(string), "final": "true"}
	if got := sample(s.scrape(), "lok8s_step_failures_total", failure); got != 1 {
		t.Errorf("lok8s_step_failures_total%v = %v, want 1", failure, got)
	}
}
