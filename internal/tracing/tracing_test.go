package tracing

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestOffIsNoOp: with no endpoint and no exporter, the provider is
// OpenTelemetry's no-op one: spans carry no trace, the middleware and the
// transport pass requests through untouched, and no goroutine (batcher,
// exporter connection) is started.
func TestOffIsNoOp(t *testing.T) {
	before := runtime.NumGoroutine()
	tr, err := Setup(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := tr.Provider().Tracer("test").Start(context.Background(), "x")
	span.End()
	if tr.Enabled() || span.SpanContext().IsValid() || TraceID(ctx) != "" || Inject(ctx) != nil {
		t.Fatalf("tracing off, yet a span was recorded: enabled %v, span %v", tr.Enabled(), span.SpanContext())
	}
	var seen trace.SpanContext
	h := tr.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		seen = trace.SpanContextFromContext(r.Context())
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/v1/clusters", nil))
	if seen.IsValid() {
		t.Fatalf("the off middleware started a span: %v", seen)
	}
	base := http.DefaultTransport
	if rt := tr.ManagementTransport("", base); rt != base {
		t.Fatalf("the off transport wraps the management cluster's: %T", rt)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("goroutines: %d before, %d after setting up tracing off", before, after)
	}
}

// TestOTLPExportsOverHTTP: with an endpoint, spans reach an OTLP/HTTP
// receiver (a stand-in that records the requests) at the latest at
// shutdown.
func TestOTLPExportsOverHTTP(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []*http.Request
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer receiver.Close()
	tr, err := Setup(context.Background(), Config{EndpointURL: receiver.URL + "/v1/traces"})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Provider().Tracer("test").Start(context.Background(), "x")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) == 0 || got[0].URL.Path != "/v1/traces" || got[0].Header.Get("Content-Type") != "application/x-protobuf" {
		t.Fatalf("OTLP requests received: %d %v", len(got), got)
	}
}

// TestTraceIDsInLogsAndAcrossJobs: a record logged with a span's context
// carries its trace_id and span_id, one without none; a context injected
// into a map (a job's metadata) and extracted continues the same trace.
func TestTraceIDsInLogsAndAcrossJobs(t *testing.T) {
	t.Parallel()
	tr, err := Setup(context.Background(), Config{Exporter: tracetest.NewInMemoryExporter()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tr.Shutdown(context.Background()) }()
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil))).With("job", 1)
	ctx, span := tr.Provider().Tracer("test").Start(context.Background(), "request")
	defer span.End()
	log.InfoContext(ctx, "in a span")
	log.InfoContext(context.Background(), "outside")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	var in, out map[string]any
	if len(lines) != 2 || json.Unmarshal(lines[0], &in) != nil || json.Unmarshal(lines[1], &out) != nil {
		t.Fatalf("log: %s", buf.String())
	}
	if in["trace_id"] != span.SpanContext().TraceID().String() || in["span_id"] != span.SpanContext().SpanID().String() || in["job"] != 1.0 {
		t.Errorf("log line in a span: %v, want trace %s span %s", in, span.SpanContext().TraceID(), span.SpanContext().SpanID())
	}
	if _, has := out["trace_id"]; has {
		t.Errorf("log line outside a span has a trace id: %v", out)
	}

	carried := Inject(ctx)
	if carried["traceparent"] == "" {
		t.Fatalf("injected: %v", carried)
	}
	job, jobSpan := tr.Provider().Tracer("test").Start(Extract(context.Background(), carried), "job")
	defer jobSpan.End()
	if TraceID(job) != TraceID(ctx) {
		t.Fatalf("the job's trace %s is not the request's %s", TraceID(job), TraceID(ctx))
	}
}
