package e2e

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/apitest"
	"lok8s.dev/provisioner/internal/app"
	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/testenv"
	"lok8s.dev/provisioner/internal/watch"
)

var validator *apitest.Validator

func TestMain(m *testing.M) {
	var err error
	if validator, err = apitest.NewValidator(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testenv.Main(m)
}

// service is the whole program, started the way cmd/server starts it,
// against a fresh database and the shared envtest management cluster.
type service struct {
	t     *testing.T
	url   string
	dbURL string
	db    *pgxpool.Pool
	env   *testenv.Env
	// workload is the workload cluster's apiserver (by default env itself).
	workload *testenv.Env
	// addonNamespace is where the CNI and CCM run on the workload cluster.
	addonNamespace string
	token          string // a fresh tenant's token
	tenant         string
	admin          string // the admin token
	client         *http.Client
	// metricsURL is the /metrics of the service started with options.metrics.
	metricsURL string
	// clouds are the cloud stand-ins playing the tenant's clusters.
	clouds map[string]*cloud
}

// options tune a service for a test.
type options struct {
	wrapTransport func(http.RoundTripper) http.RoundTripper
	dbURL         string
	templatesDir  string
	// namedClusters are management cluster domains configured in
	// LOK8S_KUBECONFIG_DIR (all pointing at the shared envtest).
	namedClusters []string
	// rescueAfter and jobTimeout tune River's rescue of jobs whose worker died.
	rescueAfter, jobTimeout time.Duration
	// adminToken and encryptionKey, when set, are shared with another
	// instance of the service on the same database.
	adminToken    string
	encryptionKey string
	// tenant and token, when set, are used instead of a fresh tenant.
	tenant, token string
	// addonsDir and addonValuesDir configure the addon catalogue and the
	// operator's overrides.
	addonsDir, addonValuesDir string
	// workload, when set, is the workload cluster the kubeconfig Secret
	// points at (default: the management cluster itself).
	workload *testenv.Env
	// readTimeout and maxUnauthenticatedConns tune the HTTP server's
	// protection against slow clients (zero: the defaults).
	readTimeout             time.Duration
	maxUnauthenticatedConns int
	// maxConns caps the connections open at once (app.Config.MaxConns).
	maxConns int
	// streamHeartbeat paces idle event streams (zero: the default).
	streamHeartbeat time.Duration
	// orphanCheckInterval and orphanGrace pace the check for operations
	// whose River job was cancelled outside the service (zero: defaults).
	orphanCheckInterval, orphanGrace time.Duration
	// mgmt, when set, is the management cluster (default: the shared envtest).
	mgmt *testenv.Env
	// addonNamespace is where the catalogue runs cilium and the ccm.
	addonNamespace string
	// checkInterval paces the wait steps (default 200ms);
	// watchedCheckInterval paces them when the watcher wakes them (zero:
	// the service's default).
	checkInterval, watchedCheckInterval time.Duration
	// mgmtKubeconfig, when set, is how the service reaches the management
	// cluster (default: env's admin); tenantRole is LOK8S_MGMT_TENANT_ROLE.
	mgmtKubeconfig []byte
	tenantRole     string
	// metrics serves /metrics on a listener of its own (service.metricsURL).
	metrics bool
	// apiOnly runs no workers (LOK8S_WORKERS=0): the replica serves the
	// API and campaigns for the watcher lease, but works no job.
	apiOnly bool
	// leaseNamespace and leaseName, when set, locate the watcher lease
	// (default: testElection's).
	leaseNamespace, leaseName string
	// spans, when set, receives the service's OpenTelemetry spans
	// (tracing on); logs, when set, also receives its log records.
	spans *tracetest.InMemoryExporter
	logs  slog.Handler
}

// newAdminToken is a fresh admin token of the length the service
// requires, for a service (or a fleet of them) a test starts itself.
func newAdminToken() string { return "admin-token-" + randomName("") + "-padding-padding" }

func randomName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func startService(t *testing.T, opts options) *service {
	t.Helper()
	env := opts.mgmt
	if env == nil {
		env = testenv.Shared(t)
	}
	kubeconfig := kubeconfigFile(t, env)
	if opts.mgmtKubeconfig != nil {
		kubeconfig = filepath.Join(t.TempDir(), "mgmt.yaml")
		if err := os.WriteFile(kubeconfig, opts.mgmtKubeconfig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if opts.dbURL == "" {
		opts.dbURL = dbtest.New(t)
	}
	kubeconfigDir := ""
	if len(opts.namedClusters) > 0 {
		kubeconfigDir = t.TempDir()
		for _, domain := range opts.namedClusters {
			if err := os.WriteFile(filepath.Join(kubeconfigDir, domain+".yaml"), env.Kubeconfig(), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if opts.addonsDir == "" {
		// Every provisioning test installs a CNI and a CCM: without them no
		// node becomes Ready (the cloud stand-in plays that faithfully).
		w := newSharedAddonWorld(t)
		opts.addonsDir, opts.addonNamespace = w.catalogDir, w.namespace
	}
	if opts.adminToken == "" {
		opts.adminToken = newAdminToken()
	}
	if opts.checkInterval == 0 {
		opts.checkInterval = 200 * time.Millisecond
	}
	if opts.encryptionKey == "" {
		opts.encryptionKey = seal.NewKey()
	}
	key, err := seal.ParseKey(opts.encryptionKey)
	if err != nil {
		t.Fatal(err)
	}
	var metricsAddr string
	if opts.metrics {
		metricsAddr = freeAddr(t)
	}
	election := testElection(opts.dbURL)
	if opts.leaseNamespace != "" {
		election.Namespace = opts.leaseNamespace
	}
	if opts.leaseName != "" {
		election.Name = opts.leaseName
	}
	workers := 4
	if opts.apiOnly {
		workers = 0
	}
	cfg := app.Config{
		MetricsAddr: metricsAddr,
		Addr:        "127.0.0.1:0", DatabaseURL: opts.dbURL, AdminToken: opts.adminToken,
		EncryptionKey: key, MgmtKubeconfig: kubeconfig, MgmtTenantRole: opts.tenantRole, KubeconfigDir: kubeconfigDir, TemplatesDir: opts.templatesDir,
		JobRescueAfter: opts.rescueAfter, JobTimeout: opts.jobTimeout,
		AddonsDir: opts.addonsDir, AddonValuesDir: opts.addonValuesDir, ChartCacheDir: t.TempDir(), AddonTimeout: 30 * time.Second,
		Workers: workers, CheckInterval: opts.checkInterval, WatchedCheckInterval: opts.watchedCheckInterval, ProvisionTimeout: 2 * time.Minute,
		JobMaxAttempts: 6, ShutdownTimeout: 10 * time.Second,
		ReadTimeout: opts.readTimeout, MaxUnauthenticatedConns: opts.maxUnauthenticatedConns, MaxConns: opts.maxConns,
		OrphanCheckInterval: opts.orphanCheckInterval, OrphanGrace: opts.orphanGrace, StreamHeartbeat: opts.streamHeartbeat,
		WrapManagementTransport: opts.wrapTransport,
		Election:                election,
		Logger:                  slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if opts.spans != nil {
		cfg.Tracing.Exporter = opts.spans
	}
	if opts.logs != nil {
		cfg.Logger = slog.New(teeHandler{cfg.Logger.Handler(), opts.logs})
	}
	addr, stop := serve(t, cfg, 30*time.Second)
	t.Cleanup(stop)
	pool, err := pgxpool.New(context.Background(), opts.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if opts.workload == nil {
		opts.workload = env
	}
	s := &service{t: t, url: "http://" + addr, dbURL: opts.dbURL, db: pool, env: env, workload: opts.workload, addonNamespace: opts.addonNamespace,
		client: &http.Client{Transport: validator.RoundTripper(t, nil), Timeout: 30 * time.Second}}
	s.admin = cfg.AdminToken
	if metricsAddr != "" {
		s.metricsURL = "http://" + metricsAddr + "/metrics"
	}
	if opts.tenant != "" {
		s.tenant, s.token = opts.tenant, opts.token
		return s
	}
	// Each test works as its own tenant, so its objects get a namespace of
	// their own on the shared management cluster.
	s.tenant, s.token = s.newTenant("e2e-")
	return s
}

// newTenant makes a tenant (a random name with prefix) through the API
// with the admin token, and a token "e2e" of it.
func (s *service) newTenant(prefix string) (name, token string) {
	s.t.Helper()
	name = randomName(prefix)
	s.mustDo(http.MethodPost, "/v1/tenants", s.admin, "application/json", []byte(`{"name":"`+name+`"}`), http.StatusCreated)
	token = s.mustDo(http.MethodPost, "/v1/tenants/"+name+"/tokens", s.admin, "application/json", []byte(`{"name":"e2e"}`), http.StatusCreated)["token"].(string)
	return name, token
}

// serve runs the whole service with cfg and returns the address it
// listens on, and stop, which ends it and waits up to stopWithin for it to
// finish. It does not return before the service is ready.
func serve(tb testing.TB, cfg app.Config, stopWithin time.Duration) (addr string, stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- app.Serve(ctx, cfg, ready) }()
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		tb.Fatalf("service did not start: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		tb.Fatal("service did not start in 60s")
	}
	return addr, func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("service stopped with: %v", err)
			}
		case <-time.After(stopWithin):
			tb.Errorf("service did not stop in %s", stopWithin)
		}
	}
}

// testElection is the watcher lease of the services on database dbURL:
// services (and server processes, leaseEnv) sharing a database are one
// fleet and campaign for one lease, while the many tests sharing the
// envtest management cluster keep apart. The timing is short, so that a
// service started after another on the same database stopped takes over
// its watcher within seconds.
func testElection(dbURL string) watch.Election {
	h := fnv.New32a()
	h.Write([]byte(dbURL))
	return watch.Election{Namespace: "default", Name: fmt.Sprintf("lok8s-watcher-%08x", h.Sum32()),
		LeaseDuration: testLeaseDuration, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second}
}

// testLeaseDuration is the tests' lease duration (testElection).
const testLeaseDuration = 4 * time.Second

// leaseEnv is testElection as a server process's environment.
func leaseEnv(dbURL string) []string {
	e := testElection(dbURL)
	return []string{"LOK8S_LEASE_NAMESPACE=" + e.Namespace, "LOK8S_LEASE_NAME=" + e.Name,
		"LOK8S_LEASE_DURATION=" + e.LeaseDuration.String(), "LOK8S_LEASE_RENEW_DEADLINE=" + e.RenewDeadline.String(),
		"LOK8S_LEASE_RETRY_PERIOD=" + e.RetryPeriod.String()}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// namespace is where the tenant's clusters live on the management cluster.
func (s *service) namespace() string { return "lok8s-" + s.tenant }

// request sends method path to the service at base with the bearer token
// (and contentType, unless "") and returns the answer's status and body.
func request(client *http.Client, base, token, method, path, contentType string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data, nil
}

// decodeObject decodes an answer's body that is a JSON object; any other
// body (empty, text) is an empty map.
func decodeObject(data []byte) (map[string]any, error) {
	out := map[string]any{}
	if len(data) > 0 && strings.HasPrefix(strings.TrimSpace(string(data)), "{") {
		if err := json.Unmarshal(data, &out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// do sends a request (token "" is the tenant's).
func (s *service) do(method, path, token, contentType string, body []byte) (int, []byte) {
	s.t.Helper()
	status, data, err := request(s.client, s.url, cmp.Or(token, s.token), method, path, contentType, body)
	if err != nil {
		s.t.Fatal(err)
	}
	return status, data
}

func (s *service) mustDo(method, path, token, contentType string, body []byte, want int) map[string]any {
	s.t.Helper()
	status, data := s.do(method, path, token, contentType, body)
	if status != want {
		s.t.Fatalf("%s %s: %d, want %d: %s", method, path, status, want, data)
	}
	out, err := decodeObject(data)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return out
}

func (s *service) putCredential(name, body string) {
	s.t.Helper()
	s.mustDo(http.MethodPut, "/v1/credentials/"+name, "", "application/json", []byte(body), http.StatusCreated)
}

func (s *service) submit(specYAML string) map[string]any {
	s.t.Helper()
	return s.mustDo(http.MethodPost, "/v1/clusters", "", "application/yaml", []byte(specYAML), http.StatusAccepted)
}

// status polls GET status until cond holds, failing after timeout.
func (s *service) waitStatus(name string, timeout time.Duration, cond func(map[string]any) bool) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	var last map[string]any
	for time.Now().Before(deadline) {
		last = s.mustDo(http.MethodGet, "/v1/clusters/"+name+"/status", "", "", nil, http.StatusOK)
		if cond(last) {
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
	raw, _ := json.MarshalIndent(last, "", "  ")
	s.t.Fatalf("cluster %s: condition not met in %s; last status:\n%s", name, timeout, raw)
	return nil
}

func stepOf(status map[string]any, name string) map[string]any {
	op, _ := status["operation"].(map[string]any)
	steps, _ := op["steps"].([]any)
	for _, st := range steps {
		if m := st.(map[string]any); m["name"] == name {
			return m
		}
	}
	return nil
}

func stepState(status map[string]any, name string) string {
	if st := stepOf(status, name); st != nil {
		return st["state"].(string)
	}
	return ""
}

// get fetches an object from the management cluster, failing the test if absent.
func (s *service) get(gvk schema.GroupVersionKind, namespace, name string) *unstructured.Unstructured {
	s.t.Helper()
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(gvk)
	if err := s.env.Client.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, obj); err != nil {
		s.t.Fatalf("get %s %s/%s: %v", gvk.Kind, namespace, name, err)
	}
	return obj
}

func (s *service) workloadKubeconfig() []byte {
	if s.workload != nil {
		return s.workload.Kubeconfig()
	}
	return s.env.Kubeconfig()
}
