// Package app wires the service together: the store, the keyring, the
// provider catalog, the management clusters and their watchers, the River
// queue with the pipeline, and the HTTP API. cmd/server reads the
// configuration and calls Serve; end-to-end tests call it the same way.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"riverqueue.com/riverui"

	provisioner "lok8s.dev/provisioner"
	"lok8s.dev/provisioner/internal/addons"
	"lok8s.dev/provisioner/internal/api"
	"lok8s.dev/provisioner/internal/capi"
	"lok8s.dev/provisioner/internal/changes"
	"lok8s.dev/provisioner/internal/connguard"
	"lok8s.dev/provisioner/internal/events"
	"lok8s.dev/provisioner/internal/gitops"
	"lok8s.dev/provisioner/internal/jobs"
	"lok8s.dev/provisioner/internal/kubeconfigs"
	"lok8s.dev/provisioner/internal/metrics"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/readmodel"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/service"
	"lok8s.dev/provisioner/internal/store"
	"lok8s.dev/provisioner/internal/tracing"
	"lok8s.dev/provisioner/internal/watch"
	"lok8s.dev/provisioner/internal/web"
)

// Config is the service's configuration. Zero fields take the default of
// the package that owns them (WithDefaults); cmd/server fills it from the
// environment.
type Config struct {
	// Addr is where the API listens (default DefaultAddr), DatabaseURL the
	// Postgres database (default DefaultDatabaseURL).
	Addr          string
	DatabaseURL   string
	AdminToken    string
	EncryptionKey []byte
	OldKeys       [][]byte
	// MgmtKubeconfig is the SaaS management cluster's kubeconfig; "" uses
	// in-cluster config when MgmtInCluster (the service runs in a pod).
	MgmtKubeconfig string
	MgmtInCluster  bool
	// MgmtQPS and MgmtBurst bound the requests per second to each
	// management cluster (mgmt.Registry; zero: mgmt.DefaultQPS and
	// mgmt.DefaultBurst).
	MgmtQPS   float32
	MgmtBurst int
	// MetricsAddr, when set, is where /metrics is served (its own
	// listener, so it is never exposed with the API).
	MetricsAddr string
	// Tracing says where OpenTelemetry spans go (zero: tracing off).
	Tracing tracing.Config
	// MgmtTenantRole is the ClusterRole the service binds to itself in each
	// tenant namespace of the default management cluster ("" binds none).
	MgmtTenantRole string
	KubeconfigDir  string
	// TemplatesDir, when set, replaces the embedded provider templates.
	TemplatesDir string
	// AddonsDir, when set, replaces the embedded addon catalogue;
	// AddonValuesDir holds the operator's <addon>.yaml value overrides;
	// ChartCacheDir keeps downloaded charts (required to install addons);
	// AddonTimeout bounds one addon's install (0: the installer's default).
	AddonsDir      string
	AddonValuesDir string
	ChartCacheDir  string
	AddonTimeout   time.Duration
	Workers        int
	// CheckInterval and ProvisionTimeout pace and bound the wait steps.
	CheckInterval time.Duration
	// WatchedCheckInterval paces them instead when the management
	// cluster's watcher serves and wakes them (jobs.Deps; zero: the default).
	WatchedCheckInterval time.Duration
	ProvisionTimeout     time.Duration
	// EventRetention is how long events are kept (0: for ever).
	EventRetention time.Duration
	// JobMaxAttempts, JobTimeout and JobRescueAfter tune River: jobs.Config's
	// MaxAttempts, StepTimeout and RescueAfter.
	JobMaxAttempts int
	JobTimeout     time.Duration
	JobRescueAfter time.Duration
	// WrapManagementTransport, when set, wraps every management cluster
	// client's transport (instrumentation; tests inject faults with it).
	WrapManagementTransport func(http.RoundTripper) http.RoundTripper
	// StreamHeartbeat is how often an idle event stream sends a comment
	// and checks its token or session is still valid (zero: api's default).
	StreamHeartbeat time.Duration
	// OrphanCheckInterval and OrphanGrace: see jobs.Config (zero: defaults).
	OrphanCheckInterval, OrphanGrace time.Duration
	// ReadTimeout bounds reading a request (headers and body), IdleTimeout
	// how long a keep-alive connection may idle, MaxConns how many
	// connections the API listener holds open at once (beyond it they are
	// answered 503 overloaded and closed), MaxUnauthenticatedConns how many of
	// them may wait for a first authenticated request (zero: the Default*
	// values).
	ReadTimeout, IdleTimeout          time.Duration
	MaxConns, MaxUnauthenticatedConns int
	// MaxInFlight bounds the requests worked at once (api.Config; zero:
	// api.DefaultMaxInFlight).
	MaxInFlight int
	// ShutdownTimeout bounds each part of the graceful stop (the HTTP
	// server, the queue, the watchers; default DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
	// Election is the lease a replica holds on a management cluster to
	// run its watcher, the one writer of observed status (zero fields:
	// watch's defaults; Identity "": watch.NewIdentity).
	Election watch.Election
	Logger   *slog.Logger
}

// AdminTenant is the tenant of the bootstrap admin token.
const AdminTenant = "admin"

// Migrate connects to the database and applies all migrations.
func Migrate(ctx context.Context, cfg Config) error {
	cfg = cfg.WithDefaults()
	pool, err := store.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	return store.Migrate(ctx, pool, cfg.Logger)
}

// LoadCatalog loads the provider templates: TemplatesDir when set, else the
// embedded ones.
func LoadCatalog(templatesDir string) (*capi.Catalog, error) {
	var fsys fs.FS
	if templatesDir != "" {
		fsys = os.DirFS(templatesDir)
	} else {
		sub, err := fs.Sub(provisioner.Templates, "templates")
		if err != nil {
			return nil, err
		}
		fsys = sub
	}
	cat, err := capi.LoadCatalog(fsys)
	if err != nil {
		return nil, fmt.Errorf("load provider templates: %w", err)
	}
	return cat, nil
}

// LoadCatalogs loads the provider templates (LoadCatalog) and the addon
// catalogue (LoadAddons): "" for either loads the embedded one.
func LoadCatalogs(templatesDir, addonsDir string) (*capi.Catalog, *addons.Catalog, error) {
	catalog, err := LoadCatalog(templatesDir)
	if err != nil {
		return nil, nil, err
	}
	addonCatalog, err := LoadAddons(addonsDir)
	if err != nil {
		return nil, nil, err
	}
	return catalog, addonCatalog, nil
}

// LoadAddons loads the addon catalogue: dir when set, else the embedded one.
func LoadAddons(dir string) (*addons.Catalog, error) {
	var fsys fs.FS
	if dir != "" {
		fsys = os.DirFS(dir)
	} else {
		sub, err := fs.Sub(provisioner.Addons, "addons")
		if err != nil {
			return nil, err
		}
		fsys = sub
	}
	cat, err := addons.LoadCatalog(fsys)
	if err != nil {
		return nil, fmt.Errorf("load addon catalogue: %w", err)
	}
	return cat, nil
}

// WithCatalog sets what the API asks of providers and addons from the
// catalogs: the provider catalog that submitted specs are read against,
// the installed providers, the spec sections that select each, each
// provider's credential fields, and the addon names spec.bootstrap may use
// and their roles.
func WithCatalog(cfg api.Config, catalog *capi.Catalog, addonCatalog *addons.Catalog) api.Config {
	cfg.SpecOptions = catalog.ValidateOptions(cfg.SpecOptions)
	cfg.SpecOptions.KnownAddons = addonCatalog.Names()
	cfg.Catalog = catalog
	cfg.AddonRoles = addonCatalog.Roles()
	cfg.CredentialProviders, cfg.Providers = nil, nil
	for _, p := range catalog.Providers() {
		cfg.CredentialProviders = append(cfg.CredentialProviders, p.Name)
		view := service.ProviderView{Name: p.Name, Sections: p.Sections(), Flavors: p.Flavors()}
		if req := p.Manifest.Requirements; req != nil {
			view.Kubernetes = service.VersionRangeView{Min: req.Kubernetes.Min, Max: req.Kubernetes.Max}
			view.RequiredAddons = req.Addons
		}
		cfg.Providers = append(cfg.Providers, view)
	}
	// Git credentials, for private GitOps repositories (spec.gitops.secretName).
	cfg.CredentialProviders = append(cfg.CredentialProviders, GitCredentialProvider)
	cfg.CredentialFields = func(provider string) ([]service.CredentialField, bool) {
		if provider == GitCredentialProvider {
			fields := make([]service.CredentialField, 0, len(gitops.CredentialFields))
			for _, f := range gitops.CredentialFields {
				fields = append(fields, service.CredentialField{Name: f})
			}
			return fields, true
		}
		p := catalog.Provider(provider)
		if p == nil {
			return nil, false
		}
		var fields []service.CredentialField
		for _, k := range p.CredentialKeys() {
			fields = append(fields, service.CredentialField{Name: k.Field, Required: k.Required})
		}
		return fields, true
	}
	return cfg
}

// Defaults of the Config fields of the same names.
const (
	DefaultAddr        = ":8080"
	DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/lok8s?sslmode=disable"
	// DefaultShutdownTimeout bounds each part of a graceful stop.
	DefaultShutdownTimeout = 30 * time.Second
	// DefaultReadTimeout bounds reading a request, headers and body.
	DefaultReadTimeout = 30 * time.Second
	// DefaultIdleTimeout closes keep-alive connections idle that long.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultMaxConns bounds the connections open at once: requests being
	// worked (api.DefaultMaxInFlight), event streams and idle keep-alive
	// connections together. Each costs a goroutine, whose stack grows to
	// about 16 KB serving requests, and 8 KB of buffers, and adds as much
	// again to the heap the garbage collector lets grow before it runs:
	// 30 to 50 KB, up to 25 MB at 512 (docs/performance.md, Overload). Twice
	// api.DefaultMaxInFlight: past it a connection is refused at once.
	DefaultMaxConns = 512
	// DefaultMaxUnauthenticatedConns bounds the connections that have not
	// yet carried an authenticated request.
	DefaultMaxUnauthenticatedConns = 512
	// MaxHeaderBytes bounds a request's headers (net/http's default is 1
	// MB, which every open connection could hold).
	MaxHeaderBytes = 32 << 10
)

// WithDefaults returns c with each zero field set to its default, taken
// from the package that owns the setting (jobs, addons, api, mgmt, watch)
// or, for the service's own, the Default values above.
func (c Config) WithDefaults() Config {
	c.Addr = cmp.Or(c.Addr, DefaultAddr)
	c.DatabaseURL = cmp.Or(c.DatabaseURL, DefaultDatabaseURL)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	q := c.queueConfig().WithDefaults()
	c.JobMaxAttempts, c.JobTimeout, c.JobRescueAfter = q.MaxAttempts, q.StepTimeout, q.RescueAfter
	c.OrphanCheckInterval, c.OrphanGrace = q.OrphanCheckInterval, q.OrphanGrace
	c.CheckInterval = cmp.Or(c.CheckInterval, jobs.DefaultCheckInterval)
	c.WatchedCheckInterval = cmp.Or(c.WatchedCheckInterval, jobs.DefaultWatchedCheckInterval)
	c.ProvisionTimeout = cmp.Or(c.ProvisionTimeout, jobs.DefaultWaitTimeout)
	c.AddonTimeout = addons.Config{Timeout: c.AddonTimeout}.WithDefaults().Timeout
	c.MaxInFlight = cmp.Or(c.MaxInFlight, api.DefaultMaxInFlight)
	c.StreamHeartbeat = cmp.Or(c.StreamHeartbeat, api.DefaultHeartbeat)
	c.MgmtQPS = cmp.Or(c.MgmtQPS, mgmt.DefaultQPS)
	c.MgmtBurst = cmp.Or(c.MgmtBurst, mgmt.DefaultBurst)
	c.Election = c.Election.WithDefaults()
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	c.ReadTimeout = cmp.Or(c.ReadTimeout, DefaultReadTimeout)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, DefaultIdleTimeout)
	c.MaxConns = cmp.Or(c.MaxConns, DefaultMaxConns)
	c.MaxUnauthenticatedConns = cmp.Or(c.MaxUnauthenticatedConns, DefaultMaxUnauthenticatedConns)
	return c
}

// queueConfig is the part of jobs.Config that c sets.
func (c Config) queueConfig() jobs.Config {
	return jobs.Config{Workers: c.Workers, MaxAttempts: c.JobMaxAttempts, StepTimeout: c.JobTimeout, RescueAfter: c.JobRescueAfter,
		EventRetention: c.EventRetention, OrphanCheckInterval: c.OrphanCheckInterval, OrphanGrace: c.OrphanGrace}
}

// queueFields names, in c's terms, the jobs.Config fields queueConfig sets.
var queueFields = strings.NewReplacer("Config.Workers", "Workers", "Config.MaxAttempts", "JobMaxAttempts",
	"Config.StepTimeout", "JobTimeout", "Config.RescueAfter", "JobRescueAfter", "Config.EventRetention", "EventRetention",
	"Config.OrphanCheckInterval", "OrphanCheckInterval", "Config.OrphanGrace", "OrphanGrace")

// Validate reports every field of c (after WithDefaults) out of range,
// each error naming the fields (as Config's field names, Election's as
// Election.LeaseDuration) it is about; the packages' own rules (jobs.Config,
// watch.Election) are checked by those packages.
func (c Config) Validate() error {
	var errs []error
	if err := c.queueConfig().Validate(); err != nil {
		errs = append(errs, errors.New(queueFields.Replace(err.Error())))
	}
	election := c.Election
	if election.Identity == "" {
		election.Identity = "validate" // Serve makes one
	}
	if err := election.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"CheckInterval", c.CheckInterval}, {"WatchedCheckInterval", c.WatchedCheckInterval}, {"ProvisionTimeout", c.ProvisionTimeout},
		{"AddonTimeout", c.AddonTimeout}, {"StreamHeartbeat", c.StreamHeartbeat}, {"ShutdownTimeout", c.ShutdownTimeout},
		{"ReadTimeout", c.ReadTimeout}, {"IdleTimeout", c.IdleTimeout},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("app: %s must be positive, got %v", d.field, d.v))
		}
	}
	if c.MgmtQPS <= 0 || c.MgmtBurst < 1 {
		errs = append(errs, fmt.Errorf("app: MgmtQPS (%v) and MgmtBurst (%d) must be positive", c.MgmtQPS, c.MgmtBurst))
	}
	if c.MaxConns < 1 || c.MaxUnauthenticatedConns < 1 {
		errs = append(errs, fmt.Errorf("app: MaxConns (%d) and MaxUnauthenticatedConns (%d) must be positive", c.MaxConns, c.MaxUnauthenticatedConns))
	}
	return errors.Join(errs...)
}

// GitCredentialProvider is the provider of git credentials.
const GitCredentialProvider = "git"

// Serve migrates the database, then serves the API and works jobs until ctx
// ends, and then stops gracefully. ready, when not nil, receives the address
// it listens on.
func Serve(ctx context.Context, cfg Config, ready chan<- string) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	log := cfg.Logger
	traces, err := tracing.Setup(ctx, cfg.Tracing)
	if err != nil {
		return err
	}
	defer func() {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := traces.Shutdown(c); err != nil {
			log.Warn("spans not exported at shutdown", "error", err)
		}
	}()
	if traces.Enabled() {
		log = slog.New(tracing.LogHandler(log.Handler()))
	}
	pool, err := store.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := store.Migrate(ctx, pool, log); err != nil {
		return err
	}
	st := store.New(pool, log)
	keyring, err := seal.NewKeyring(cfg.EncryptionKey, cfg.OldKeys...)
	if err != nil {
		return err
	}
	if _, err := st.EnsureAdminToken(ctx, AdminTenant, api.HashToken(cfg.AdminToken)); err != nil {
		return err
	}
	catalog, addonCatalog, err := LoadCatalogs(cfg.TemplatesDir, cfg.AddonsDir)
	if err != nil {
		return err
	}
	var installer *addons.Installer
	if cfg.ChartCacheDir != "" {
		if installer, err = addons.NewInstaller(addons.Config{CacheDir: cfg.ChartCacheDir, Logger: log, Timeout: cfg.AddonTimeout}); err != nil {
			return err
		}
	}
	var overrides fs.FS
	if cfg.AddonValuesDir != "" {
		overrides = os.DirFS(cfg.AddonValuesDir)
	}
	var observe *metrics.Metrics
	if cfg.MetricsAddr != "" {
		observe = newMetrics(st, log)
	}
	registry := &mgmt.Registry{DefaultKubeconfig: cfg.MgmtKubeconfig, InCluster: cfg.MgmtInCluster, KubeconfigDir: cfg.KubeconfigDir,
		WrapTransport: cfg.WrapManagementTransport, QPS: cfg.MgmtQPS, Burst: cfg.MgmtBurst, TenantRole: cfg.MgmtTenantRole}
	kubeconfigSource := &kubeconfigs.Source{Store: st, Keyring: keyring, Clusters: registry, Catalog: catalog}
	pipeline := jobs.NewPipeline(jobs.Deps{
		Store: st, Keyring: keyring, Catalog: catalog, Clusters: registry, Kubeconfigs: kubeconfigSource,
		Addons: addonCatalog, Installer: installer, AddonOverrides: overrides,
		CheckInterval: cfg.CheckInterval, WatchedCheckInterval: cfg.WatchedCheckInterval, WaitTimeout: cfg.ProvisionTimeout,
	})
	// Requests to management clusters: timed (metrics) and, within a
	// traced request or job, spans (each passes requests through when off).
	registry.Instrument = func(domain string, next http.RoundTripper) http.RoundTripper {
		return traces.ManagementTransport(domain, observe.ManagementTransport(domain, next))
	}
	var observer jobs.Observer
	var streams api.StreamObserver
	if observe != nil {
		observer, streams = observe, observe
	}
	queue, err := jobs.NewQueue(pool, jobs.Config{
		Observer: observer, Tracer: traces.Provider(),
		Store: st, Logger: log, Pipeline: pipeline, Workers: cfg.Workers,
		MaxAttempts: cfg.JobMaxAttempts, StepTimeout: cfg.JobTimeout, RescueAfter: cfg.JobRescueAfter,
		EventRetention: cfg.EventRetention, OrphanCheckInterval: cfg.OrphanCheckInterval, OrphanGrace: cfg.OrphanGrace,
	})
	if err != nil {
		return err
	}
	hub := events.NewHub()
	reads := readmodel.New(log)
	// The change feed reads on a connection of its own: a busy pool delays
	// neither the streams' wake-ups nor the read model's freshness.
	feedPool, err := store.OneConnection(ctx, pool)
	if err != nil {
		return fmt.Errorf("change feed: %w", err)
	}
	defer feedPool.Close()
	feed := changes.NewFeed(store.New(feedPool, log), log, hub.Apply, reads.Apply)
	avail := &availability{catalog: catalog, registry: registry}
	handler, err := api.New(WithCatalog(api.Config{
		Config: service.Config{
			Store: st, Keyring: keyring, Logger: log, Reads: reads,
			Enqueue: queue.Enqueue, CancelJob: queue.CancelJob, StepNames: pipeline.StepNames,
			ManagementClusterKnown: registry.Known,
			ProviderMissing:        avail.providerMissing, ManagementClusters: avail.managementClusters,
		},
		Events: hub, Heartbeat: cfg.StreamHeartbeat, Streams: streams, OpenAPI: provisioner.OpenAPI,
		Kubeconfigs: kubeconfigSource, MaxInFlight: cfg.MaxInFlight,
	}, catalog, addonCatalog))
	if err != nil {
		return err
	}

	// The dashboard at /, beside the API (which keeps /v1, /healthz, /readyz
	// and /openapi.yaml).
	riverUI, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints: riverui.NewEndpoints(queue.Client(), nil), Logger: log, Prefix: web.RiverUIPath,
	})
	if err != nil {
		return fmt.Errorf("river UI: %w", err)
	}
	if err := riverUI.Start(ctx); err != nil {
		return fmt.Errorf("river UI: %w", err)
	}
	root, err := web.New(web.Config{Store: st, API: handler, Service: handler.Service(), Logger: log, RiverUI: riverUI, Keyring: keyring})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	// Memory per connection is bounded: at most MaxConns are open (beyond
	// them a new connection is answered at once with 503 overloaded and
	// Retry-After, the API's own, and closed, unless the idlest keep-alive
	// one has idled a second: it is closed to make room) and headers are
	// at most MaxHeaderBytes. Slow clients: a request's headers and body must
	// arrive within the read timeouts, an idle keep-alive connection is
	// closed, and at most MaxUnauthenticatedConns connections wait for a
	// first authenticated request. No write timeout: event streams set a
	// deadline per write.
	limiter := connguard.NewLimiter(cfg.MaxConns)
	overloaded, retryAfter := api.Overloaded()
	limiter.Refusal = connguard.Refusal(retryAfter, "application/problem+json", overloaded)
	ln = limiter.Listener(ln)
	guard := connguard.New(cfg.MaxUnauthenticatedConns)
	srv := &http.Server{Handler: observe.Middleware(traces.Middleware(root)), ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: MaxHeaderBytes,
		ReadTimeout: cfg.ReadTimeout, IdleTimeout: cfg.IdleTimeout,
		ConnState: func(c net.Conn, state http.ConnState) {
			limiter.ConnState(c, state)
			guard.ConnState(c, state)
		},
		ConnContext: guard.ConnContext,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn)}

	// Every goroutine the service starts besides the server and the queue
	// (the change feed, one watcher per management cluster) runs in this
	// group, stopped and waited for at shutdown.
	var group sync.WaitGroup
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	election := cfg.Election
	if election.Identity == "" {
		election.Identity = watch.NewIdentity()
	}
	if err := election.Validate(); err != nil {
		return err
	}
	election.OnLeading = observe.Leading
	startWatchers(watchCtx, &group, registry, st, queue, election, observe, log)
	group.Go(func() {
		if err := feed.Run(watchCtx); err != nil {
			log.Error("change feed stopped", "error", err)
		}
	})
	if err := queue.Start(ctx); err != nil {
		return err
	}
	// Event streams never end on their own: end them as soon as shutdown
	// begins, or Shutdown waits its whole budget for them.
	srv.RegisterOnShutdown(handler.EndStreams)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if observe != nil {
		stopMetrics, err := serveMetrics(cfg.MetricsAddr, observe, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	log.Info("listening", "addr", ln.Addr().String())
	if ready != nil {
		ready <- ln.Addr().String()
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests and jobs")
	timeout := cfg.ShutdownTimeout
	// HTTP and the queue stop side by side, each within its own budget.
	var httpErr, queueErr error
	var stopping sync.WaitGroup
	stopping.Go(func() {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		if httpErr = srv.Shutdown(c); httpErr != nil {
			httpErr = fmt.Errorf("http: %w", httpErr)
		}
	})
	stopping.Go(func() {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		queueErr = queue.Stop(c)
	})
	stopping.Wait()
	stopWatching()
	done := make(chan struct{})
	go func() { group.Wait(); close(done) }()
	var groupErr error
	select {
	case <-done:
	case <-time.After(timeout):
		groupErr = errors.New("watchers and the event hub did not stop in time")
	}
	if err := errors.Join(httpErr, queueErr, groupErr); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// newMetrics makes the service's metrics, with the gauges st is asked for
// at each scrape (the Grafana dashboard's test lists their names, with a
// nil st).
func newMetrics(st *store.Store, log *slog.Logger) *metrics.Metrics {
	m := metrics.New()
	m.Gauges("clusters", "Live clusters by phase.", "phase", st.ClustersByPhase, log)
	m.Gauges("jobs", "River jobs by state (scheduled: waiting for their next check or retry).", "state", st.JobsByState, log)
	return m
}

// serveMetrics serves m at addr's /metrics until the returned stop is called.
func serveMetrics(addr string, m *metrics.Metrics, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "error", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}

// startWatchers campaigns for the watcher lease of each configured
// management cluster (the SaaS default, when a kubeconfig is set or the
// service runs in a pod, and every named one) and runs that cluster's
// watcher while this replica holds its lease.
func startWatchers(ctx context.Context, group *sync.WaitGroup, registry *mgmt.Registry, st *store.Store, queue *jobs.Queue,
	election watch.Election, observe *metrics.Metrics, log *slog.Logger) {
	// A change the watcher records may be what a waiting step waits for:
	// run it now rather than at its next check. The job may be another
	// replica's: Wake makes it due in the database, where whichever
	// replica's queue is free takes it. A job in another step is left
	// alone: when it reaches a wait, its first check reads the recorded
	// state, which already holds the change.
	wake := func(ctx context.Context, tenant uuid.UUID, name string) {
		id, step, err := st.ActiveJob(ctx, tenant, name)
		if err == nil && id != 0 && jobs.WaitsOnWatcher(step) {
			err = queue.Wake(ctx, id)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("could not wake the cluster's job", "cluster", name, "tenant", tenant, "error", err)
		}
	}
	domains, err := registry.Domains()
	if err != nil {
		log.Warn("no watchers for named management clusters", "error", err)
	}
	if registry.DefaultConfigured() {
		domains = append(domains, "")
	}
	for _, domain := range domains {
		mc, err := registry.Cluster(domain)
		if err != nil {
			log.Warn("cannot watch management cluster", "domain", domain, "error", err)
			continue
		}
		group.Go(func() {
			w := watch.New(mc, st, log)
			w.OnChange(wake)
			w.OnLag(observe.WatcherLag)
			if err := w.RunElected(ctx, election); err != nil {
				log.Error("watcher election stopped", "domain", domain, "error", err)
			}
		})
	}
}
