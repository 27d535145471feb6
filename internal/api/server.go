// Package api is the service's HTTP API: a chi router under /v1 with bearer
// token auth, tenant scoping, RFC 9457 problem+json errors and request
// limits, the lok8s CLI's hosted-mode API under /api (a second view of the
// same clusters), plus /healthz, /readyz and /openapi.yaml.
package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"lok8s.dev/provisioner/internal/access"
	"lok8s.dev/provisioner/internal/kubeconfigs"
	"lok8s.dev/provisioner/internal/service"
	"lok8s.dev/provisioner/internal/store"
)

// DefaultMaxBodyBytes caps request bodies unless Config says otherwise.
const DefaultMaxBodyBytes = 1 << 20

// Config is what the API needs: what its service needs (service.Config,
// whose fields it also reads: the store, the keyring, the pipeline's
// steps), and what only HTTP needs.
type Config struct {
	service.Config
	// Kubeconfigs gives the service's own (CAPI's) workload kubeconfigs:
	// the stored one, or a rotating one read from the management cluster
	// each time. They never leave the service: downloads are issued.
	Kubeconfigs *kubeconfigs.Source
	// IssueKubeconfig issues a principal's kubeconfig on the workload
	// cluster that admin (CAPI's kubeconfig) reaches; nil: access.Issue.
	IssueKubeconfig func(ctx context.Context, admin []byte, cluster string, p access.Principal, ttl time.Duration) (access.Issued, error)
	// Events wakes the event streams (nil: streams answer 503).
	Events EventsHub
	// Heartbeat is how often an idle stream sends a comment (default 15s).
	Heartbeat time.Duration
	// Streams, when set, is told of event streams opened and closed and of
	// each event written (the service's metrics).
	Streams StreamObserver
	// OpenAPI is the API description served at /openapi.yaml.
	OpenAPI      []byte
	MaxBodyBytes int64
	// MaxInFlight bounds the requests this replica works at once (event
	// streams, /healthz and /readyz aside); beyond it a request is answered
	// at once with 503 overloaded and Retry-After, instead of queueing
	// without bound (default DefaultMaxInFlight; negative: no bound).
	MaxInFlight int
}

// DefaultMaxInFlight is Config.MaxInFlight's default.
const DefaultMaxInFlight = 256

func (c Config) validate() error {
	if c.Kubeconfigs == nil {
		return errors.New("api: Config.Kubeconfigs is required")
	}
	return nil
}

// Server handles the API's requests.
type Server struct {
	Config
	store  *store.Store
	logger *slog.Logger
	router chi.Router
	// endStreams is closed by EndStreams: every event stream returns.
	endStreams chan struct{}
	// xmin wakes the streams holding events back (see streamEvents).
	xmin    *xminWatch
	endOnce sync.Once
	// inFlight holds a token per request being worked (nil: no bound).
	inFlight chan struct{}
	// svc runs the use cases the handlers decode requests for.
	svc *service.Service
}

// Service is the service the API is a front end of: the dashboard calls
// it directly.
func (s *Server) Service() *service.Service { return s.svc }

// EndStreams ends every open event stream at once (clients resume by
// Last-Event-ID elsewhere): graceful shutdown registers it with
// http.Server.RegisterOnShutdown, since a stream never ends on its own.
func (s *Server) EndStreams() { s.endOnce.Do(func() { close(s.endStreams) }) }

// New builds the API handler.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	svc, err := service.New(cfg.Config)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Heartbeat = cmp.Or(cfg.Heartbeat, DefaultHeartbeat)
	cfg.MaxBodyBytes = cmp.Or(cfg.MaxBodyBytes, DefaultMaxBodyBytes)
	cfg.MaxInFlight = cmp.Or(cfg.MaxInFlight, DefaultMaxInFlight)
	s := &Server{Config: cfg, store: cfg.Store, logger: cfg.Logger, endStreams: make(chan struct{}), svc: svc}
	s.xmin = &xminWatch{store: cfg.Store}
	if cfg.MaxInFlight > 0 {
		s.inFlight = make(chan struct{}, cfg.MaxInFlight)
	}
	s.router = s.routes()
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

func (s *Server) routes() chi.Router {
	r := chi.NewRouter()
	r.Use(s.withRequestID, s.logRequests, s.shed, s.recoverPanics, s.limitBody, s.refuseBadText)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.writeProblem(w, r, service.NotFound("no such endpoint: "+r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		s.writeProblem(w, r, &service.Error{Status: http.StatusMethodNotAllowed, Slug: "method-not-allowed",
			Title: "Method not allowed", Detail: r.Method + " is not allowed on " + r.URL.Path})
	})

	// Unknown query parameters are refused (refuseUnknownQuery): here at
	// once, and behind authentication where a token is needed, so that a
	// request without one hears 401 first.
	open := r.With(s.refuseUnknownQuery)
	open.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	open.Get("/readyz", s.ready)
	open.Get("/openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(s.OpenAPI)
	})

	r.Route("/v1", func(r chi.Router) {
		r.Use(s.authenticate, s.refuseUnknownQuery)
		r.Get("/catalog", s.catalog)
		r.Route("/clusters", func(r chi.Router) {
			r.Post("/", s.createCluster)
			r.Get("/", s.listClusters)
			r.Get("/{name}", s.getCluster)
			r.Get("/{name}/status", s.clusterStatus)
			r.Get("/{name}/kubeconfig", s.clusterKubeconfig)
			r.Get("/{name}/manifests", s.clusterManifests)
			r.Get("/{name}/events", s.streamClusterEvents)
			r.Delete("/{name}", s.deleteCluster)
			r.Put("/{name}", s.replaceCluster)
			r.Patch("/{name}", s.patchCluster)
			r.Post("/{name}/retry", s.retryCluster)
			r.Get("/{name}/operations", s.listOperations)
			r.Post("/{name}/operations/{id}/cancel", s.cancelOperation)
		})
		r.Get("/events", s.streamAllEvents)
		r.Route("/credentials", func(r chi.Router) {
			r.Get("/", s.listCredentials)
			r.Put("/{name}", s.putCredential)
			r.Get("/{name}", s.getCredential)
			r.Delete("/{name}", s.deleteCredential)
		})
		r.Route("/tenants", func(r chi.Router) {
			r.Use(s.requireAdmin)
			r.Post("/", s.createTenant)
			r.Post("/{tenant}/tokens", s.createToken)
			r.Get("/{tenant}/tokens", s.listTokens)
			r.Delete("/{tenant}/tokens/{id}", s.revokeToken)
			r.Get("/{tenant}/quota", s.getTenantQuota)
			r.Put("/{tenant}/quota", s.putTenantQuota)
			r.Get("/{tenant}/hosted-profiles/{provider}", s.getHostedProfile)
			r.Put("/{tenant}/hosted-profiles/{provider}", s.putHostedProfile)
		})
		r.Get("/quota", s.getOwnQuota)
		r.Route("/tokens", func(r chi.Router) {
			r.Get("/", s.listOwnTokens)
			r.Post("/", s.createOwnToken)
			r.Delete("/{id}", s.revokeOwnToken)
		})
	})
	// The hosted-mode API of the lok8s CLI (hosted.go): the same clusters,
	// store, pipeline and auth, by id and domain.
	r.Route("/api", func(r chi.Router) {
		r.With(s.refuseUnknownQuery).Post("/clusters/register", s.hostedRegister) // the CLI sends no token
		r.Group(func(r chi.Router) {
			r.Use(s.authenticate, s.refuseUnknownQuery)
			r.Post("/clusters", s.hostedCreate)
			r.Get("/clusters", s.hostedList)
			r.Delete("/clusters", s.hostedDeleteByDomain)
			r.Get("/clusters/{id}", s.hostedGet)
			r.Get("/clusters/{id}/kubeconfig", s.hostedKubeconfig)
			r.Delete("/clusters/{id}", s.hostedDelete)
		})
	})
	return r
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.logger.WarnContext(ctx, "not ready: database unreachable", "error", err)
		s.writeProblem(w, r, &service.Error{Status: http.StatusServiceUnavailable, Slug: "not-ready", Title: "Not ready",
			Detail: "the database is unreachable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func requestID(ctx context.Context) string { return service.RequestID(ctx) }

// validRequestID bounds what a client may pass as X-Request-Id, since it
// ends up in logs.
var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func (s *Server) withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !validRequestID.MatchString(id) {
			id = uuid.NewString()
		}
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(service.WithRequestID(r.Context(), id)))
	})
}

// statusRecorder remembers the status and tenant of a response, for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
	tenant string
}

func (r *statusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// logRequests writes one access log line a request: never headers or bodies,
// which may hold tokens or credentials.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		s.logger.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("request_id", requestID(r.Context())),
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", rec.status),
			slog.String("tenant", rec.tenant),
			slog.Duration("duration", time.Since(start)))
	})
}

// shed answers 503 overloaded, with Retry-After, to a request that finds
// MaxInFlight requests already being worked: past capacity the replica
// turns work away at once, so latency and memory stay bounded, and a load
// balancer or client retries elsewhere or later. Event streams (long-lived
// and idle), /healthz and /readyz are not counted.
func (s *Server) shed(next http.Handler) http.Handler {
	if s.inFlight == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p == "/healthz" || p == "/readyz" || p == "/v1/events" || strings.HasSuffix(p, "/events") {
			next.ServeHTTP(w, r)
			return
		}
		select {
		case s.inFlight <- struct{}{}:
			defer func() { <-s.inFlight }()
			next.ServeHTTP(w, r)
		default:
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterOverloaded))
			s.writeProblem(w, r, errOverloaded())
		}
	})
}

func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler { //nolint:errorlint // a panic value, not a returned error: net/http's own check
					panic(v)
				}
				s.writeProblem(w, r, fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// refuseBadText answers a path that holds a NUL byte or invalid UTF-8
// (/v1/clusters/%FF) with 404, since no resource can have that name, and
// such an Idempotency-Key with 400: Postgres cannot compare such text
// (SQLSTATE 22021), so it never reaches the store.
func (s *Server) refuseBadText(next http.Handler) http.Handler {
	bad := func(v string) bool { return strings.ContainsRune(v, 0) || !utf8.ValidString(v) }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case bad(r.URL.Path):
			s.writeProblem(w, r, service.NotFound("no such resource: the request path is not valid UTF-8 text"))
		case bad(r.Header.Get("Idempotency-Key")):
			s.writeProblem(w, r, service.BadRequest("the Idempotency-Key header must be valid UTF-8 text without NUL bytes"))
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, s.MaxBodyBytes)
		}
		next.ServeHTTP(w, r)
	})
}
