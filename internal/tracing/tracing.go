// Package tracing is the service's OpenTelemetry tracing: one trace from
// an API request (POST /v1/clusters) through the River job it enqueues and
// each pipeline step down to the requests to the management cluster. It is
// off unless an OTLP endpoint is configured (cmd/server reads the standard
// OTEL_EXPORTER_OTLP_* variables) or an exporter is injected (tests): off,
// its provider is OpenTelemetry's no-op one, which starts no goroutine and
// opens no connection. No global OpenTelemetry state is set: every user is
// handed the provider.
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// The OTLP protocols (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// Config says where spans go.
type Config struct {
	// EndpointURL is the OTLP traces endpoint, used as is: for
	// http/protobuf the full URL (…/v1/traces), for grpc scheme, host and
	// port. "" with no Exporter turns tracing off.
	EndpointURL string
	// Protocol is ProtocolHTTP (the default) or ProtocolGRPC.
	Protocol string
	// ServiceName names the service in its spans' resource ("" is "lok8s").
	ServiceName string
	// Exporter, when set, receives every span as it ends, instead of OTLP
	// (tests: tracetest.NewInMemoryExporter).
	Exporter sdktrace.SpanExporter
}

// Enabled reports whether c turns tracing on.
func (c Config) Enabled() bool { return c.EndpointURL != "" || c.Exporter != nil }

// Tracing is the service's tracer provider and what uses it.
type Tracing struct {
	provider trace.TracerProvider
	// sdk is the provider when tracing is on, for Shutdown.
	sdk *sdktrace.TracerProvider
}

// Setup builds the tracer provider c asks for: OTLP with a batching
// processor, an injected exporter with a synchronous one, or (neither) the
// no-op provider.
func Setup(ctx context.Context, c Config) (*Tracing, error) {
	if !c.Enabled() {
		return &Tracing{provider: noop.NewTracerProvider()}, nil
	}
	name := c.ServiceName
	if name == "" {
		name = "lok8s"
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", name)))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if c.Exporter != nil {
		opts = append(opts, sdktrace.WithSyncer(c.Exporter))
	} else {
		exp, err := otlpExporter(ctx, c)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	sdk := sdktrace.NewTracerProvider(opts...)
	return &Tracing{provider: sdk, sdk: sdk}, nil
}

// otlpExporter makes the OTLP exporter of c's protocol. The exporter
// itself reads the other OTEL_EXPORTER_OTLP_* variables (headers,
// certificates, timeout, compression); the endpoint given here wins over
// the variables'.
func otlpExporter(ctx context.Context, c Config) (sdktrace.SpanExporter, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch c.Protocol {
	case "", ProtocolHTTP:
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(c.EndpointURL))
	case ProtocolGRPC:
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(c.EndpointURL))
	default:
		return nil, fmt.Errorf("tracing: unsupported OTLP protocol %q (use %s or %s)", c.Protocol, ProtocolHTTP, ProtocolGRPC)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter for %s: %w", c.EndpointURL, err)
	}
	return exp, nil
}

// Enabled reports whether spans are recorded and exported.
func (t *Tracing) Enabled() bool { return t != nil && t.sdk != nil }

// Provider is the tracer provider (the no-op one when tracing is off).
func (t *Tracing) Provider() trace.TracerProvider {
	if t == nil {
		return noop.NewTracerProvider()
	}
	return t.provider
}

// Shutdown exports the spans still buffered and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	if err := t.sdk.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}

// Propagator carries a trace context across processes and into jobs: the
// W3C traceparent (and tracestate).
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// untraced are the paths whose requests get no span: probes, polled every
// few seconds, would drown the traces worth reading.
var untraced = map[string]bool{"/healthz": true, "/readyz": true}

// Middleware starts a server span for each request (a child of the
// caller's traceparent, if it sends one), named by the chi route pattern
// the request matched. next must be (or lead to) the outermost chi router.
// Off, it returns next.
func (t *Tracing) Middleware(next http.Handler) http.Handler {
	if !t.Enabled() {
		return next
	}
	named := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Give the router the routing context it fills, unless an outer
		// middleware (the metrics) already did.
		rctx := chi.RouteContext(r.Context())
		if rctx == nil {
			rctx = chi.NewRouteContext()
			r = r.WithContext(context.WithValue(r.Context(), chi.RouteCtxKey, rctx))
		}
		next.ServeHTTP(w, r)
		if route := rctx.RoutePattern(); route != "" {
			span := trace.SpanFromContext(r.Context())
			span.SetName(r.Method + " " + route)
			span.SetAttributes(attribute.String("http.route", route))
		}
	})
	return otelhttp.NewHandler(named, "http",
		otelhttp.WithTracerProvider(t.provider), otelhttp.WithPropagators(Propagator),
		otelhttp.WithFilter(func(r *http.Request) bool { return !untraced[r.URL.Path] }),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }))
}

// ManagementTransport makes each request to a management cluster a client
// span, a child of the span in the request's context: only requests made
// within a traced request or job are traced (the watchers' own requests
// would each start a trace of one span). domain names the management
// cluster ("" is the SaaS default). Off, it returns next.
func (t *Tracing) ManagementTransport(domain string, next http.RoundTripper) http.RoundTripper {
	if !t.Enabled() {
		return next
	}
	return otelhttp.NewTransport(next,
		otelhttp.WithTracerProvider(t.provider), otelhttp.WithPropagators(Propagator),
		otelhttp.WithFilter(func(r *http.Request) bool { return trace.SpanContextFromContext(r.Context()).IsValid() }),
		otelhttp.WithSpanOptions(trace.WithAttributes(attribute.String("lok8s.management_cluster", domainName(domain)))),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "management " + r.Method }))
}

func domainName(domain string) string {
	if domain == "" {
		return "saas-default"
	}
	return domain
}

// Inject returns the W3C trace context of ctx's span as a map
// (traceparent, tracestate), nil when ctx has no span to carry.
func Inject(ctx context.Context) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	carrier := propagation.MapCarrier{}
	Propagator.Inject(ctx, carrier)
	return carrier
}

// Extract returns ctx with the remote span context carried in m (from
// Inject), or ctx as it is when m carries none.
func Extract(ctx context.Context, m map[string]string) context.Context {
	if len(m) == 0 {
		return ctx
	}
	return Propagator.Extract(ctx, propagation.MapCarrier(m))
}

// TraceID is the id of ctx's trace, "" outside one.
func TraceID(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return sc.TraceID().String()
	}
	return ""
}

// LogHandler adds trace_id and span_id to each record logged with a
// context that carries a span (logger.InfoContext and the like), so a log
// line leads to its trace and back.
func LogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

type logHandler struct{ slog.Handler }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{h.Handler.WithAttrs(attrs)}
}

func (h logHandler) WithGroup(name string) slog.Handler { return logHandler{h.Handler.WithGroup(name)} }
