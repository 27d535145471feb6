package api_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"github.com/google/uuid"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	provisioner "lok8s.dev/provisioner"
	"lok8s.dev/provisioner/internal/api"
	"lok8s.dev/provisioner/internal/apitest"
	"lok8s.dev/provisioner/internal/app"
	"lok8s.dev/provisioner/internal/changes"
	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/events"
	"lok8s.dev/provisioner/internal/jobs"
	"lok8s.dev/provisioner/internal/kubeconfigs"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/readmodel"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/service"
	"lok8s.dev/provisioner/internal/store"
)

var validator *apitest.Validator

// TestMain checks, after every test ran, that each operation openapi.yaml
// describes was exercised through the validating middleware.
func TestMain(m *testing.M) {
	var err error
	validator, err = apitest.NewValidator()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 && !testing.Short() && flagRunAll() {
		if missing := validator.Unexercised(); len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "openapi.yaml operations no test exercised: %v\n", missing)
			code = 1
		}
	}
	os.Exit(code)
}

// flagRunAll reports whether the whole package ran (no -run filter).
func flagRunAll() bool {
	for _, a := range os.Args {
		if strings.HasPrefix(a, "-test.run") {
			return false
		}
	}
	return true
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type bundle struct {
	t          testing.TB
	url        string
	dbURL      string
	pool       *pgxpool.Pool
	adminToken string
	logs       *syncBuffer
	mgmtDir    string
	queries    *queryCounter // statements sent, counted with setupOptions.bench
	reads      *readmodel.Model
	// handler is the API handler itself (no validator), for benchmarks.
	handler http.Handler
	// store, enqueue and steps are what the handler's service writes
	// with, for the writes benchmark's store-only reference.
	store   *store.Store
	enqueue store.EnqueueFunc
	steps   func(store.OperationKind) []string
}

func setup(t testing.TB) *bundle {
	t.Helper()
	return setupWith(t, setupOptions{})
}

// setupOptions vary setup: events runs an event hub; dbURL shares a
// database with another server (a second replica).
type setupOptions struct {
	events      bool
	dbURL       string
	maxInFlight int
	// bench serves the handler without the OpenAPI validator and with
	// the production pool size, as cmd/server does.
	bench bool
	// heartbeat of the event streams (200 ms when zero).
	heartbeat time.Duration
	// noReads serves every read from Postgres (no read model); readsDB,
	// when set, makes the read model listen to another database, so it
	// hears of no change but those the server makes itself.
	noReads bool
	readsDB string
}

func setupWith(t testing.TB, opts setupOptions) *bundle {
	t.Helper()
	dbURL := opts.dbURL
	if dbURL == "" {
		dbURL = dbtest.New(t)
	}
	cfg := dbtest.PoolConfig(t, dbURL)
	queries := &queryCounter{}
	if opts.bench { // production's pool
		cfg.MaxConns, cfg.ConnConfig.Tracer = store.DefaultMaxConns, queries
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.bench { // as in production: JSON at INFO, not kept in memory
		logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	st := store.New(pool, logger)
	key, _ := seal.ParseKey(seal.NewKey())
	keyring, _ := seal.NewKeyring(key)
	catalog, addonCatalog, err := app.LoadCatalogs("", "")
	if err != nil {
		t.Fatal(err)
	}
	pipeline := jobs.NewPipeline(jobs.Deps{Store: st, Keyring: keyring, Catalog: catalog})
	// Insert-only: these tests look at what the API stores and enqueues;
	// the jobs package's tests run the workers.
	queue, err := jobs.NewQueue(pool, jobs.Config{Store: st, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	adminToken := api.NewToken()
	if _, err := st.EnsureAdminToken(context.Background(), "acme", api.HashToken(adminToken)); err != nil {
		t.Fatal(err)
	}
	// The change feed, as cmd/server runs it: on a connection of its own,
	// to the read model's database when that is another.
	runFeed := func(dbURL string, handlers ...func(changes.Batch)) {
		if len(handlers) == 0 {
			return
		}
		cfg, err := pgxpool.ParseConfig(dbURL)
		if err != nil {
			t.Fatal(err)
		}
		cfg.MaxConns = 1
		cfg.ConnConfig.RuntimeParams["application_name"] = feedApplication
		feedPool, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(feedPool.Close)
		feed := changes.NewFeed(store.New(feedPool, logger), logger, handlers...)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = feed.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	var hub api.EventsHub
	var handlers []func(changes.Batch)
	if opts.events {
		h := events.NewHub()
		handlers = append(handlers, h.Apply)
		hub = h
	}
	var reads *readmodel.Model
	if !opts.noReads {
		reads = readmodel.New(logger)
		if opts.readsDB != "" {
			runFeed(opts.readsDB, reads.Apply)
		} else {
			handlers = append(handlers, reads.Apply)
		}
	}
	runFeed(dbURL, handlers...)
	mgmtDir := t.TempDir()
	if err := os.WriteFile(mgmtDir+"/mgmt.example.com.yaml", []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	handler, err := api.New(app.WithCatalog(api.Config{
		Config: service.Config{
			Store: st, Keyring: keyring, Logger: logger, Reads: reads,
			Enqueue: queue.Enqueue, CancelJob: queue.CancelJob, StepNames: pipeline.StepNames,
			ManagementClusterKnown: (&mgmt.Registry{KubeconfigDir: mgmtDir}).Known,
		},
		Events: hub, Heartbeat: cmp.Or(opts.heartbeat, 200*time.Millisecond),
		OpenAPI:     provisioner.OpenAPI,
		Kubeconfigs: &kubeconfigs.Source{Store: st, Keyring: keyring, Catalog: catalog, Clusters: &mgmt.Registry{KubeconfigDir: mgmtDir}},
		MaxInFlight: opts.maxInFlight,
	}, catalog, addonCatalog))
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = handler
	if !opts.bench {
		h = validator.Middleware(t, handler)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &bundle{t: t, url: srv.URL, dbURL: dbURL, pool: pool, adminToken: adminToken, logs: logs, mgmtDir: mgmtDir, queries: queries, reads: reads, handler: handler,
		store: st, enqueue: queue.Enqueue, steps: pipeline.StepNames}
}

// queryCounter is a pgx tracer counting the round trips to Postgres (a
// statement each, or a batch of statements sent together) and the
// statements; with bySQL set it also counts each statement's text.
type queryCounter struct {
	n, statements atomic.Int64
	mu            sync.Mutex
	bySQL         map[string]int64
}

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	q.n.Add(1)
	q.statements.Add(1)
	q.count(d.SQL)
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (q *queryCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	q.n.Add(1)
	q.statements.Add(int64(d.Batch.Len()))
	for _, qq := range d.Batch.QueuedQueries {
		q.count("(batch) " + qq.SQL)
	}
	return ctx
}

func (q *queryCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (q *queryCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (q *queryCounter) count(sql string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.bySQL != nil {
		q.bySQL[strings.Join(strings.Fields(sql), " ")]++
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// do sends a request with token (none when empty) and optional headers as
// "Name: value" strings.
func (b *bundle) do(method, path, token, contentType string, body []byte, headers ...string) response {
	b.t.Helper()
	req, err := http.NewRequest(method, b.url+path, bytes.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

func (b *bundle) expect(r response, status int) {
	b.t.Helper()
	if r.status != status {
		b.t.Fatalf("status %d, want %d; body: %s", r.status, status, r.body)
	}
}

const hcloudSecret = "hcloud-SECRET-token-4f1c2a9e"

func (b *bundle) putHetznerCredential(token, name string) {
	b.t.Helper()
	body := fmt.Sprintf(`{"provider":"hetzner","hcloudToken":%q}`, hcloudSecret)
	r := b.do(http.MethodPut, "/v1/credentials/"+name, token, "application/json", []byte(body))
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		b.t.Fatalf("put credential: %d %s", r.status, r.body)
	}
}

// newTenant makes a tenant through the admin API and returns its token.
func (b *bundle) newTenant(name string) string {
	b.t.Helper()
	b.expect(b.do(http.MethodPost, "/v1/tenants", b.adminToken, "application/json", []byte(`{"name":"`+name+`"}`)), http.StatusCreated)
	r := b.do(http.MethodPost, "/v1/tenants/"+name+"/tokens", b.adminToken, "application/json", []byte(`{"name":"ci"}`))
	b.expect(r, http.StatusCreated)
	return r.json(b.t)["token"].(string)
}

func seedSpec(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile("../../examples/prod.yaml") // the README walk-through's spec
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// problem asserts a problem+json response and returns it.
func problem(t *testing.T, r response, status int) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	p := r.json(t)
	if p["status"].(float64) != float64(status) || !strings.HasPrefix(p["type"].(string), "https://lok8s.dev/problems/") ||
		p["title"] == "" || p["requestId"] == "" {
		t.Fatalf("not a complete problem: %s", r.body)
	}
	return p
}

// fieldMessages maps each field of a validation problem to its message.
func fieldMessages(t *testing.T, p map[string]any) map[string]string {
	t.Helper()
	out := map[string]string{}
	errs, _ := p["errors"].([]any)
	for _, e := range errs {
		m := e.(map[string]any)
		out[m["field"].(string)] = m["message"].(string)
	}
	return out
}

func (b *bundle) count(sql string, args ...any) int {
	b.t.Helper()
	var n int
	if err := b.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		b.t.Fatal(err)
	}
	return n
}

func TestCreateClusterFromSeedSpec(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putHetznerCredential(b.adminToken, "prod-credentials")

	r := b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", seedSpec(t))
	b.expect(r, http.StatusAccepted)
	if loc := r.header.Get("Location"); loc != "/v1/clusters/prod" {
		t.Fatalf("Location %q", loc)
	}
	c := r.json(t)
	op := c["operation"].(map[string]any)
	if c["phase"] != "Pending" || c["provider"] != "hetzner" || op["kind"] != "provision" || op["state"] != "queued" {
		t.Fatalf("accepted cluster: %s", r.body)
	}
	var names []string
	for _, s := range op["steps"].([]any) {
		names = append(names, s.(map[string]any)["name"].(string))
	}
	if got := strings.Join(names, ","); got != "detect,render,preflight,credentials,apply,control-plane-initialized,kubeconfig,cni-and-ccm,nodes-ready,addons,gitops" {
		t.Fatalf("steps %s", got)
	}

	// The job exists, in the same database, carrying only the operation id.
	var args string
	if err := b.pool.QueryRow(context.Background(), `SELECT args::text FROM river_job WHERE kind = 'provision'`).Scan(&args); err != nil {
		t.Fatalf("no provision job: %v", err)
	}
	if args != fmt.Sprintf(`{"operationId": "%s"}`, op["id"]) {
		t.Fatalf("job args %s", args)
	}

	status := b.do(http.MethodGet, "/v1/clusters/prod/status", b.adminToken, "", nil)
	b.expect(status, http.StatusOK)
	s := status.json(t)
	if s["name"] != "prod" || s["phase"] != "Pending" || s["operation"].(map[string]any)["id"] != op["id"] {
		t.Fatalf("status: %s", status.body)
	}
	// Nothing rendered or provisioned yet (no worker runs in these tests).
	// The kubeconfig: 409 until the kubeconfig step found it, 404 for a
	// cluster that does not exist.
	problem(t, b.do(http.MethodGet, "/v1/clusters/prod/kubeconfig", b.adminToken, "", nil), http.StatusConflict)
	problem(t, b.do(http.MethodGet, "/v1/clusters/nope/kubeconfig", b.adminToken, "", nil), http.StatusNotFound)
	// The exec-plugin form is EKS's only.
	problem(t, b.do(http.MethodGet, "/v1/clusters/prod/kubeconfig?form=exec", b.adminToken, "", nil), http.StatusBadRequest)
	problem(t, b.do(http.MethodGet, "/v1/clusters/prod/manifests", b.adminToken, "", nil), http.StatusNotFound)
	got := b.do(http.MethodGet, "/v1/clusters/prod", b.adminToken, "", nil)
	b.expect(got, http.StatusOK)
	spec := got.json(t)["spec"].(map[string]any)["spec"].(map[string]any)
	if spec["gitops"].(map[string]any)["path"] != "clusters/prod.example.com" {
		t.Fatalf("stored spec: %s", got.body)
	}
}

func TestCreateClusterJSONAndDryRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putHetznerCredential(b.adminToken, "small-credentials")
	body := `{"apiVersion":"cluster.lok8s.dev/v1beta1","kind":"Capi","metadata":{"name":"small"},
	  "spec":{"kubernetes":{"version":"v1.32.4"},"cluster":{"domain":"small.example.com"},
	  "hcloud":{"region":"nbg1","sshKeyName":"k","controlPlane":{"type":"cax11"},"workers":{"w":{"type":"cax11"}}},
	  "bootstrap":["cilium","ccm"]}}`

	dry := b.do(http.MethodPost, "/v1/clusters?dryRun=true", b.adminToken, "application/json", []byte(body))
	b.expect(dry, http.StatusOK)
	d := dry.json(t)
	spec := d["spec"].(map[string]any)["spec"].(map[string]any)
	if d["valid"] != true || spec["credentials"].(map[string]any)["secretName"] != "small-credentials" {
		t.Fatalf("dry run did not apply defaults: %s", dry.body)
	}
	if n := b.count(`SELECT count(*) FROM clusters`) + b.count(`SELECT count(*) FROM river_job`); n != 0 {
		t.Fatalf("dry run stored %d rows", n)
	}
	problem(t, b.do(http.MethodGet, "/v1/clusters/small", b.adminToken, "", nil), http.StatusNotFound)

	b.expect(b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/json; charset=utf-8", []byte(body)), http.StatusAccepted)
	b.expect(b.do(http.MethodGet, "/v1/clusters/small", b.adminToken, "", nil), http.StatusOK)
}

func TestDuplicateNameConflicts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putHetznerCredential(b.adminToken, "prod-credentials")
	b.expect(b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", seedSpec(t)), http.StatusAccepted)
	p := problem(t, b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", seedSpec(t)), http.StatusConflict)
	if !strings.Contains(p["detail"].(string), `"prod" already exists`) {
		t.Fatalf("conflict detail: %v", p["detail"])
	}
	if n := b.count(`SELECT count(*) FROM river_job`); n != 1 {
		t.Fatalf("jobs %d, want 1", n)
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putHetznerCredential(b.adminToken, "prod-credentials")
	first := b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", seedSpec(t), "Idempotency-Key: 7f9c")
	b.expect(first, http.StatusAccepted)
	again := b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", seedSpec(t), "Idempotency-Key: 7f9c")
	b.expect(again, http.StatusAccepted)
	id1 := first.json(t)["operation"].(map[string]any)["id"]
	if id2 := again.json(t)["operation"].(map[string]any)["id"]; id1 != id2 {
		t.Fatalf("replay made a new operation: %v vs %v", id1, id2)
	}
	if n := b.count(`SELECT count(*) FROM river_job`); n != 1 {
		t.Fatalf("jobs %d, want 1", n)
	}
	other := bytes.Replace(seedSpec(t), []byte("replicas: 1"), []byte("replicas: 2"), 1)
	p := problem(t, b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", other, "Idempotency-Key: 7f9c"), http.StatusUnprocessableEntity)
	if !strings.HasSuffix(p["type"].(string), "/idempotency-key-reused") {
		t.Fatalf("problem type %v", p["type"])
	}
}

func TestSpecValidationProblems(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putHetznerCredential(b.adminToken, "prod-credentials")
	seed := string(seedSpec(t))
	for _, tc := range []struct {
		name        string
		body        string
		contentType string
		status      int
		fields      map[string]string // field -> message substring
	}{
		{
			name:   "many errors at once",
			body:   strings.NewReplacer("replicas: 3\n      type: cax21", "replicas: 2\n      type: cax21", `"v1.34.2"`, `"1.34"`, "provider: flux", "provider: jenkins").Replace(seed),
			status: http.StatusUnprocessableEntity,
			fields: map[string]string{
				"spec.hcloud.controlPlane.replicas": "odd",
				"spec.kubernetes.version":           "v",
				"spec.gitops.provider":              "flux",
			},
		},
		{
			name:   "unknown field",
			body:   strings.Replace(seed, "sshKeyName: my-ssh-key", "sshKeyName: my-ssh-key\n    sshKeyNmae: typo", 1),
			status: http.StatusUnprocessableEntity,
			fields: map[string]string{"spec.hcloud.sshKeyNmae": "unknown field"},
		},
		{
			name:   "unknown credential",
			body:   strings.Replace(seed, "secretName: prod-credentials", "secretName: missing-credentials", 1),
			status: http.StatusUnprocessableEntity,
			fields: map[string]string{"spec.credentials.secretName": `no credential "missing-credentials"`},
		},
		{
			name:   "unknown management cluster",
			body:   strings.Replace(seed, "  credentials:", "  managementCluster:\n    domain: nowhere.example.com\n  credentials:", 1),
			status: http.StatusUnprocessableEntity,
			fields: map[string]string{"spec.managementCluster.domain": "no management cluster"},
		},
		{
			// CAPH v1.1.x supports Kubernetes 1.32 to 1.36
			// (docs/caph/01-getting-started/01-introduction.md).
			name:   "Kubernetes version the provider does not support",
			body:   strings.Replace(seed, `"v1.34.2"`, `"v1.31.10"`, 1),
			status: http.StatusUnprocessableEntity,
			fields: map[string]string{"spec.kubernetes.version": "provider hetzner supports Kubernetes v1.32 to v1.36; v1.31.10 is outside that range"},
		},
		{
			name:   "Kubernetes version above the provider's range",
			body:   strings.Replace(seed, `"v1.34.2"`, `"v1.37.1"`, 1),
			status: http.StatusUnprocessableEntity,
			fields: map[string]string{"spec.kubernetes.version": "v1.32 to v1.36"},
		},
		{
			// With cloud-provider: external no Node gets a providerID
			// without the CCM, and none is Ready without a CNI: such a
			// cluster would never become Ready, so it is refused.
			name:   "no CNI or CCM",
			body:   strings.Replace(seed, "    - cilium\n    - ccm\n", "", 1),
			status: http.StatusUnprocessableEntity,
			fields: map[string]string{"spec.bootstrap": "provider hetzner needs a CNI (cilium) and a cloud-controller-manager (ccm) in spec.bootstrap"},
		},
		{
			name:   "no CCM",
			body:   strings.Replace(seed, "    - ccm\n", "", 1),
			status: http.StatusUnprocessableEntity,
			fields: map[string]string{"spec.bootstrap": "needs a cloud-controller-manager (ccm)"},
		},
		{
			name:   "unknown addon",
			body:   strings.Replace(seed, "- cert-manager", "- istio", 1),
			status: http.StatusUnprocessableEntity,
			fields: map[string]string{"spec.bootstrap[2].name": "istio"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", []byte(tc.body))
			p := problem(t, r, tc.status)
			got := fieldMessages(t, p)
			for field, want := range tc.fields {
				if !strings.Contains(got[field], want) {
					t.Errorf("field %s: message %q, want it to contain %q (all: %v)", field, got[field], want, got)
				}
			}
		})
	}
	if n := b.count(`SELECT count(*) FROM clusters`); n != 0 {
		t.Fatalf("invalid specs stored %d clusters", n)
	}
}

// EKS runs its own cloud-controller-manager: the ccm addon in an EKS
// cluster's spec.bootstrap is refused with a 422 naming spec.bootstrap
// (the eks flavor's requirements.refusedAddons), and nothing is stored;
// the same spec without it is accepted.
func TestEKSRefusesTheCCM(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.expect(b.do(http.MethodPut, "/v1/credentials/eks-credentials", b.adminToken, "application/json",
		[]byte(`{"provider":"aws","accessKeyId":"AKIAEXAMPLE","secretAccessKey":"s"}`)), http.StatusCreated)
	eks := func(bootstrap string) []byte {
		return []byte(`apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata: {name: eks}
spec:
  kubernetes: {version: "v1.34.1"}
  cluster: {domain: eks.example.com, namespace: default}
  credentials: {secretName: eks-credentials}
  aws:
    region: eu-central-1
    flavor: eks
    workers:
      general: {replicas: 2, type: m6i.large, scaling: {min: 1, max: 4}}
  bootstrap: ` + bootstrap + "\n")
	}
	p := problem(t, b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", eks("[cilium, ccm]")), http.StatusUnprocessableEntity)
	if got, want := fieldMessages(t, p)["spec.bootstrap"], "provider aws (flavor eks) runs its own cloud-controller-manager: remove ccm from spec.bootstrap"; got != want {
		t.Fatalf("spec.bootstrap: %q, want %q (all: %v)", got, want, p["errors"])
	}
	if n := b.count(`SELECT count(*) FROM clusters`); n != 0 {
		t.Fatalf("refused spec stored %d clusters", n)
	}
	b.expect(b.do(http.MethodPost, "/v1/clusters?dryRun=true", b.adminToken, "application/yaml", eks("[cilium]")), http.StatusOK)
}

func TestKnownManagementCluster(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putHetznerCredential(b.adminToken, "prod-credentials")
	body := strings.Replace(string(seedSpec(t)), "  credentials:", "  managementCluster:\n    domain: mgmt.example.com\n  credentials:", 1)
	r := b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", []byte(body))
	b.expect(r, http.StatusAccepted)
	if r.json(t)["managementCluster"] != "mgmt.example.com" {
		t.Fatalf("management cluster not recorded: %s", r.body)
	}
}

func TestMalformedBodies(t *testing.T) {
	t.Parallel()
	b := setup(t)
	yamlErr := problem(t, b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml",
		[]byte("apiVersion: cluster.lok8s.dev/v1beta1\nkind: Capi\nmetadata:\n  name: [unclosed\n")), http.StatusBadRequest)
	if yamlErr["line"] == nil {
		t.Fatalf("YAML syntax error without a line: %v", yamlErr)
	}
	jsonErr := problem(t, b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/json",
		[]byte("{\n  \"kind\": \"Capi\",\n  \"metadata\": {\"name\": }\n}")), http.StatusBadRequest)
	if jsonErr["line"] != float64(3) || jsonErr["column"] == nil {
		t.Fatalf("JSON syntax error position: line %v column %v", jsonErr["line"], jsonErr["column"])
	}
	problem(t, b.do(http.MethodPost, "/v1/clusters", b.adminToken, "text/plain", seedSpec(t)), http.StatusUnsupportedMediaType)
	problem(t, b.do(http.MethodPost, "/v1/clusters", b.adminToken, "", seedSpec(t)), http.StatusUnsupportedMediaType)
	huge := append([]byte("# "), bytes.Repeat([]byte("x"), api.DefaultMaxBodyBytes)...)
	problem(t, b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", huge), http.StatusRequestEntityTooLarge)
	problem(t, b.do(http.MethodPost, "/v1/clusters?dryRun=maybe", b.adminToken, "application/yaml", seedSpec(t)), http.StatusUnprocessableEntity)
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(http.MethodGet, "/v1/clusters", "", "", nil)
	problem(t, r, http.StatusUnauthorized)
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
	}
	problem(t, b.do(http.MethodGet, "/v1/clusters", "lok8s_not-a-real-token", "", nil), http.StatusUnauthorized)
	b.expect(b.do(http.MethodGet, "/v1/clusters", b.adminToken, "", nil), http.StatusOK)

	tenantToken := b.newTenant("globex")
	problem(t, b.do(http.MethodPost, "/v1/tenants", tenantToken, "application/json", []byte(`{"name":"evil"}`)), http.StatusForbidden)
	problem(t, b.do(http.MethodPost, "/v1/tenants", b.adminToken, "application/json", []byte(`{"name":"globex"}`)), http.StatusConflict)
	problem(t, b.do(http.MethodPost, "/v1/tenants", b.adminToken, "application/json", []byte(`{"name":"Not_Valid"}`)), http.StatusUnprocessableEntity)
	problem(t, b.do(http.MethodPost, "/v1/tenants/nobody/tokens", b.adminToken, "application/json", []byte(`{"name":"x"}`)), http.StatusNotFound)
	problem(t, b.do(http.MethodPost, "/v1/tenants/globex/tokens", b.adminToken, "application/json", []byte(`{"name":"ci"}`)), http.StatusConflict)
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putHetznerCredential(b.adminToken, "prod-credentials")
	b.expect(b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", seedSpec(t)), http.StatusAccepted)
	other := b.newTenant("globex")

	for _, path := range []string{"/v1/clusters/prod", "/v1/clusters/prod/status"} {
		p := problem(t, b.do(http.MethodGet, path, other, "", nil), http.StatusNotFound)
		if p["phase"] != "NotFound" {
			t.Fatalf("%s: phase %v", path, p["phase"])
		}
	}
	problem(t, b.do(http.MethodGet, "/v1/credentials/prod-credentials", other, "", nil), http.StatusNotFound)
	problem(t, b.do(http.MethodDelete, "/v1/clusters/prod", other, "", nil), http.StatusNotFound)
	problem(t, b.do(http.MethodDelete, "/v1/credentials/prod-credentials", other, "", nil), http.StatusNotFound)
	list := b.do(http.MethodGet, "/v1/clusters", other, "", nil)
	b.expect(list, http.StatusOK)
	if items := list.json(t)["items"].([]any); len(items) != 0 {
		t.Fatalf("other tenant lists %d clusters", len(items))
	}
	creds := b.do(http.MethodGet, "/v1/credentials", other, "", nil)
	b.expect(creds, http.StatusOK)
	if items := creds.json(t)["items"].([]any); len(items) != 0 {
		t.Fatalf("other tenant lists %d credentials", len(items))
	}
	// Without its own credential, the other tenant cannot use the first one's.
	p := problem(t, b.do(http.MethodPost, "/v1/clusters", other, "application/yaml", seedSpec(t)), http.StatusUnprocessableEntity)
	if _, ok := fieldMessages(t, p)["spec.credentials.secretName"]; !ok {
		t.Fatalf("other tenant used the first tenant's credential: %s", p)
	}
	// The first tenant's cluster is untouched.
	b.expect(b.do(http.MethodGet, "/v1/clusters/prod", b.adminToken, "", nil), http.StatusOK)
}

func TestListClusters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, name := range []string{"a1", "b2", "c3"} {
		b.putHetznerCredential(b.adminToken, name+"-credentials")
		spec := strings.NewReplacer("name: prod", "name: "+name, "secretName: prod-credentials", "secretName: "+name+"-credentials").Replace(string(seedSpec(t)))
		b.expect(b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", []byte(spec)), http.StatusAccepted)
	}
	page := b.do(http.MethodGet, "/v1/clusters?limit=2", b.adminToken, "", nil)
	b.expect(page, http.StatusOK)
	p := page.json(t)
	if len(p["items"].([]any)) != 2 || p["nextCursor"] == nil {
		t.Fatalf("first page: %s", page.body)
	}
	// Each item carries its latest operation, steps included.
	for _, it := range p["items"].([]any) {
		op, _ := it.(map[string]any)["operation"].(map[string]any)
		if steps, _ := op["steps"].([]any); op["kind"] != "provision" || op["state"] != "queued" || len(steps) == 0 {
			t.Fatalf("list item without its operation: %v", it)
		}
	}
	rest := b.do(http.MethodGet, "/v1/clusters?limit=2&cursor="+p["nextCursor"].(string), b.adminToken, "", nil)
	b.expect(rest, http.StatusOK)
	r := rest.json(t)
	if items := r["items"].([]any); len(items) != 1 || items[0].(map[string]any)["name"] != "c3" || r["nextCursor"] != nil {
		t.Fatalf("second page: %s", rest.body)
	}
	pending := b.do(http.MethodGet, "/v1/clusters?phase=Pending", b.adminToken, "", nil)
	b.expect(pending, http.StatusOK)
	if n := len(pending.json(t)["items"].([]any)); n != 3 {
		t.Fatalf("Pending filter gave %d", n)
	}
	failed := b.do(http.MethodGet, "/v1/clusters?phase=Failed", b.adminToken, "", nil)
	b.expect(failed, http.StatusOK)
	if n := len(failed.json(t)["items"].([]any)); n != 0 {
		t.Fatalf("Failed filter gave %d", n)
	}
	problem(t, b.do(http.MethodGet, "/v1/clusters?limit=0", b.adminToken, "", nil), http.StatusUnprocessableEntity)
	problem(t, b.do(http.MethodGet, "/v1/clusters?phase=Sleeping", b.adminToken, "", nil), http.StatusUnprocessableEntity)
	problem(t, b.do(http.MethodGet, "/v1/clusters?cursor=bm9wZQ", b.adminToken, "", nil), http.StatusUnprocessableEntity)
}

func TestDeleteCluster(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putHetznerCredential(b.adminToken, "prod-credentials")
	created := b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", seedSpec(t))
	b.expect(created, http.StatusAccepted)
	r := b.do(http.MethodDelete, "/v1/clusters/prod", b.adminToken, "", nil)
	b.expect(r, http.StatusAccepted)
	c := r.json(t)
	if c["phase"] != "Deleting" || c["operation"].(map[string]any)["kind"] != "deprovision" {
		t.Fatalf("delete: %s", r.body)
	}
	// The queued provisioning was cancelled, in River too.
	if n := b.count(`SELECT count(*) FROM operations WHERE kind = 'provision' AND state = 'cancelled'`); n != 1 {
		t.Fatalf("provision operation not cancelled")
	}
	if n := b.count(`SELECT count(*) FROM river_job WHERE kind = 'provision' AND state = 'cancelled'`); n != 1 {
		t.Fatalf("provision job not cancelled")
	}
	// A credential in use cannot go.
	p := problem(t, b.do(http.MethodDelete, "/v1/credentials/prod-credentials", b.adminToken, "", nil), http.StatusConflict)
	if !strings.Contains(p["detail"].(string), "prod") {
		t.Fatalf("conflict does not name the cluster: %v", p["detail"])
	}
	problem(t, b.do(http.MethodDelete, "/v1/clusters/nope", b.adminToken, "", nil), http.StatusNotFound)
}

func TestCredentials(t *testing.T) {
	t.Parallel()
	b := setup(t)
	put := func(name, body string) response {
		return b.do(http.MethodPut, "/v1/credentials/"+name, b.adminToken, "application/json", []byte(body))
	}
	created := put("hz", `{"provider":"hetzner","hcloudToken":"tok-1","robotUser":"u","robotPassword":"robot-PASS-99"}`)
	b.expect(created, http.StatusCreated)
	c := created.json(t)
	if c["provider"] != "hetzner" || fmt.Sprint(c["keysSet"]) != "[hcloudToken robotPassword robotUser]" ||
		!strings.HasPrefix(c["fingerprint"].(string), "hmac-sha256:") {
		t.Fatalf("credential metadata: %s", created.body)
	}
	replaced := put("hz", `{"provider":"hetzner","hcloudToken":"tok-2"}`)
	b.expect(replaced, http.StatusOK)
	if replaced.json(t)["fingerprint"] == c["fingerprint"] {
		t.Fatal("fingerprint did not change with the secret")
	}
	b.expect(put("aws", `{"provider":"aws","accessKeyId":"AKIAEXAMPLE","secretAccessKey":"aws-SECRET-key-77"}`), http.StatusCreated)

	for _, tc := range []struct{ body, field string }{
		{`{"provider":"hetzner"}`, "hcloudToken"},
		{`{"provider":"hetzner","hcloudToken":"t","robotUser":7}`, "robotUser"},
		{`{"provider":"aws","accessKeyId":"a"}`, "secretAccessKey"},
		{`{"provider":"aws","accessKeyId":"a","secretAccessKey":"s","hcloudToken":"t"}`, "hcloudToken"},
		{`{"provider":"gcp"}`, "provider"},
		{`{"hcloudToken":"t"}`, "provider"},
		{`{"provider":"aws","accessKeyId":"a","secretAccessKey":"s","region":"x"}`, "region"},
	} {
		p := problem(t, put("bad", tc.body), http.StatusUnprocessableEntity)
		if _, ok := fieldMessages(t, p)[tc.field]; !ok {
			t.Errorf("%s: no error on %s: %v", tc.body, tc.field, p["errors"])
		}
	}
	problem(t, put("Bad_Name", `{"provider":"aws","accessKeyId":"a","secretAccessKey":"s"}`), http.StatusUnprocessableEntity)
	problem(t, put("x", `{"provider":`), http.StatusBadRequest)
	problem(t, b.do(http.MethodPut, "/v1/credentials/x", b.adminToken, "application/yaml", []byte(`provider: aws`)), http.StatusUnsupportedMediaType)

	list := b.do(http.MethodGet, "/v1/credentials", b.adminToken, "", nil)
	b.expect(list, http.StatusOK)
	if n := len(list.json(t)["items"].([]any)); n != 2 {
		t.Fatalf("%d credentials listed", n)
	}
	b.expect(b.do(http.MethodGet, "/v1/credentials/aws", b.adminToken, "", nil), http.StatusOK)
	b.expect(b.do(http.MethodDelete, "/v1/credentials/aws", b.adminToken, "", nil), http.StatusNoContent)
	problem(t, b.do(http.MethodGet, "/v1/credentials/aws", b.adminToken, "", nil), http.StatusNotFound)

	// The provider of a credential must match the spec's.
	b.expect(put("prod-credentials", `{"provider":"aws","accessKeyId":"a","secretAccessKey":"s"}`), http.StatusCreated)
	p := problem(t, b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", seedSpec(t)), http.StatusUnprocessableEntity)
	if msg := fieldMessages(t, p)["spec.credentials.secretName"]; !strings.Contains(msg, "is for provider aws") {
		t.Fatalf("provider mismatch message: %q", msg)
	}
}

// TestCredentialSecrecy sends secrets through every path that touches them,
// then looks for them in every response, the logs, and a dump of the whole
// database: none may appear anywhere.
func TestCredentialSecrecy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	secrets := []string{hcloudSecret, "robot-PASSWORD-31337", "aws-SECRET-access-key-0042"}
	var bodies []string
	keep := func(r response) response { bodies = append(bodies, string(r.body)); return r }

	keep(b.do(http.MethodPut, "/v1/credentials/prod-credentials", b.adminToken, "application/json",
		[]byte(fmt.Sprintf(`{"provider":"hetzner","hcloudToken":%q,"robotUser":"robot","robotPassword":%q}`, secrets[0], secrets[1]))))
	keep(b.do(http.MethodPut, "/v1/credentials/aws-credentials", b.adminToken, "application/json",
		[]byte(fmt.Sprintf(`{"provider":"aws","accessKeyId":"AKIA0000","secretAccessKey":%q}`, secrets[2]))))
	// A bad request that carries a secret must not echo it either.
	keep(b.do(http.MethodPut, "/v1/credentials/prod-credentials", b.adminToken, "application/json",
		[]byte(fmt.Sprintf(`{"provider":"aws","hcloudToken":%q}`, secrets[0]))))
	keep(b.do(http.MethodGet, "/v1/credentials/prod-credentials", b.adminToken, "", nil))
	keep(b.do(http.MethodGet, "/v1/credentials", b.adminToken, "", nil))
	keep(b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", seedSpec(t)))
	keep(b.do(http.MethodGet, "/v1/clusters/prod", b.adminToken, "", nil))
	keep(b.do(http.MethodGet, "/v1/clusters/prod/status", b.adminToken, "", nil))

	dump, err := exec.Command("pg_dump", "--no-owner", "--data-only", b.dbURL).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_dump: %v: %s", err, dump)
	}
	if !bytes.Contains(dump, []byte("prod-credentials")) || !bytes.Contains(dump, []byte("river_job")) {
		t.Fatal("the dump does not hold the data it should: the check below would prove nothing")
	}
	for _, s := range secrets {
		for i, body := range bodies {
			if strings.Contains(body, s) {
				t.Errorf("response %d contains a secret: %s", i, body)
			}
		}
		if strings.Contains(b.logs.String(), s) {
			t.Errorf("logs contain a secret")
		}
		if bytes.Contains(dump, []byte(s)) {
			t.Errorf("the database dump contains a secret in plaintext")
		}
	}
	// The admin token is not in the database either, only its hash.
	if bytes.Contains(dump, []byte(b.adminToken)) || strings.Contains(b.logs.String(), b.adminToken) {
		t.Errorf("the admin token is stored or logged in plaintext")
	}
}

func TestProbesAndDocument(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.expect(b.do(http.MethodGet, "/healthz", "", "", nil), http.StatusOK)
	b.expect(b.do(http.MethodGet, "/readyz", "", "", nil), http.StatusOK)
	doc := b.do(http.MethodGet, "/openapi.yaml", "", "", nil)
	b.expect(doc, http.StatusOK)
	if !bytes.Equal(doc.body, provisioner.OpenAPI) {
		t.Fatal("/openapi.yaml is not openapi.yaml")
	}
	// Readiness follows the database.
	b.pool.Close()
	problem(t, b.do(http.MethodGet, "/readyz", "", "", nil), http.StatusServiceUnavailable)
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(http.MethodGet, "/v1/clusters/none/status", b.adminToken, "", nil, "X-Request-Id: trace-42")
	p := problem(t, r, http.StatusNotFound)
	if p["requestId"] != "trace-42" || r.header.Get("X-Request-Id") != "trace-42" {
		t.Fatalf("request id not echoed: %v / %q", p["requestId"], r.header.Get("X-Request-Id"))
	}
	if !strings.Contains(b.logs.String(), `"request_id":"trace-42"`) {
		t.Fatal("request id not logged")
	}
	bad := b.do(http.MethodGet, "/healthz", "", "", nil, "X-Request-Id: "+strings.Repeat("x", 100))
	if id := bad.header.Get("X-Request-Id"); len(id) > 64 {
		t.Fatalf("unbounded request id accepted")
	}
}

// TestLifecycleEndpoints drives update, cancel, retry and the operation
// history through the API (no worker runs here: what the API stores and
// refuses is the point; internal/e2e runs them end to end).
func TestLifecycleEndpoints(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putHetznerCredential(b.adminToken, "prod-credentials")
	created := b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", seedSpec(t))
	b.expect(created, http.StatusAccepted)
	if created.header.Get("ETag") != `"1"` {
		t.Fatalf("ETag %q", created.header.Get("ETag"))
	}
	provision := created.json(t)["operation"].(map[string]any)["id"].(string)
	scale := []byte(`{"spec":{"hcloud":{"workers":{"general":{"replicas":5}}}}}`)

	// One operation at a time: 409 naming the running one.
	p := problem(t, b.do(http.MethodPatch, "/v1/clusters/prod", b.adminToken, "application/merge-patch+json", scale), http.StatusConflict)
	if p["operation"] != provision || !strings.Contains(p["detail"].(string), provision) {
		t.Fatalf("busy problem does not name the operation: %v", p)
	}
	// Cancel it: the cluster is Failed with a way forward; River's job is cancelled.
	cancelled := b.do(http.MethodPost, "/v1/clusters/prod/operations/"+provision+"/cancel", b.adminToken, "", nil)
	b.expect(cancelled, http.StatusOK)
	c := cancelled.json(t)
	if c["phase"] != "Failed" || c["operation"].(map[string]any)["state"] != "cancelled" || !strings.Contains(c["message"].(string), "/v1/clusters/prod/retry") {
		t.Fatalf("after cancel: %s", cancelled.body)
	}
	if n := b.count(`SELECT count(*) FROM river_job WHERE state = 'cancelled'`); n != 1 {
		t.Fatalf("cancelled jobs: %d", n)
	}
	problem(t, b.do(http.MethodPost, "/v1/clusters/prod/operations/"+provision+"/cancel", b.adminToken, "", nil), http.StatusConflict)
	problem(t, b.do(http.MethodPost, "/v1/clusters/prod/operations/not-a-uuid/cancel", b.adminToken, "", nil), http.StatusNotFound)

	// Retry makes a new provisioning operation.
	retried := b.do(http.MethodPost, "/v1/clusters/prod/retry", b.adminToken, "", nil)
	b.expect(retried, http.StatusAccepted)
	r := retried.json(t)
	retry := r["operation"].(map[string]any)["id"].(string)
	if r["phase"] != "Pending" || retry == provision || r["operation"].(map[string]any)["kind"] != "provision" {
		t.Fatalf("retry: %s", retried.body)
	}
	problem(t, b.do(http.MethodPost, "/v1/clusters/prod/retry", b.adminToken, "", nil), http.StatusConflict)
	b.expect(b.do(http.MethodPost, "/v1/clusters/prod/operations/"+retry+"/cancel", b.adminToken, "", nil), http.StatusOK)

	// Updates: validated against the stored spec, guarded by If-Match.
	for _, tc := range []struct{ patch, field string }{
		{`{"spec":{"kubernetes":{"version":"v1.33.0"}}}`, "spec.kubernetes.version"},
		{`{"spec":{"kubernetes":{"version":"v1.31.2"}}}`, "spec.kubernetes.version"},
		{`{"spec":{"hcloud":{"region":"nbg1"}}}`, "spec.hcloud.region"},
		{`{"spec":{"cluster":{"domain":"other.example.com"}}}`, "spec.cluster.domain"},
		{`{"spec":{"hcloud":{"controlPlane":{"replicas":2}}}}`, "spec.hcloud.controlPlane.replicas"},
		{`{"spec":{"hcloud":null,"aws":{"region":"eu-central-1","sshKeyName":"k","controlPlane":{"type":"m6i.large"}}}}`, "spec.credentials.secretName"}, // the provider cannot change: its credential no longer fits
	} {
		p := problem(t, b.do(http.MethodPatch, "/v1/clusters/prod", b.adminToken, "application/merge-patch+json", []byte(tc.patch)), http.StatusUnprocessableEntity)
		if _, ok := fieldMessages(t, p)[tc.field]; !ok {
			t.Errorf("%s: no error on %s: %v", tc.patch, tc.field, p["errors"])
		}
	}
	problem(t, b.do(http.MethodPatch, "/v1/clusters/prod", b.adminToken, "application/json", scale), http.StatusUnsupportedMediaType)
	problem(t, b.do(http.MethodPatch, "/v1/clusters/prod", b.adminToken, "application/merge-patch+json", []byte(`{"spec":`)), http.StatusBadRequest)
	same := b.do(http.MethodPut, "/v1/clusters/prod", b.adminToken, "application/yaml", seedSpec(t))
	b.expect(same, http.StatusOK) // nothing changed: no operation
	problem(t, b.do(http.MethodPatch, "/v1/clusters/prod", b.adminToken, "application/merge-patch+json", scale, `If-Match: "7"`), http.StatusPreconditionFailed)

	updated := b.do(http.MethodPatch, "/v1/clusters/prod", b.adminToken, "application/merge-patch+json", scale, `If-Match: "1"`)
	b.expect(updated, http.StatusAccepted)
	u := updated.json(t)
	if u["phase"] != "Updating" || u["generation"] != float64(2) || updated.header.Get("ETag") != `"2"` ||
		u["operation"].(map[string]any)["kind"] != "update" {
		t.Fatalf("update: %s", updated.body)
	}
	workers := u["spec"].(map[string]any)["spec"].(map[string]any)["hcloud"].(map[string]any)["workers"].(map[string]any)
	if workers["general"].(map[string]any)["replicas"] != float64(5) || workers["gpu"].(map[string]any)["replicas"] != float64(1) {
		t.Fatalf("merged spec: %v", workers)
	}
	// The first writer won; a second one with the old ETag is refused.
	problem(t, b.do(http.MethodPut, "/v1/clusters/prod", b.adminToken, "application/yaml", seedSpec(t), `If-Match: "1"`), http.StatusPreconditionFailed)

	history := b.do(http.MethodGet, "/v1/clusters/prod/operations", b.adminToken, "", nil)
	b.expect(history, http.StatusOK)
	items := history.json(t)["items"].([]any)
	var kinds []string
	for _, it := range items {
		op := it.(map[string]any)
		kinds = append(kinds, op["kind"].(string)+":"+op["state"].(string))
		if op["requestedBy"] != "admin" {
			t.Errorf("operation %v: requestedBy %v", op["id"], op["requestedBy"])
		}
	}
	if got := strings.Join(kinds, ","); got != "update:queued,provision:cancelled,provision:cancelled" {
		t.Fatalf("history: %s", got)
	}
	problem(t, b.do(http.MethodGet, "/v1/clusters/nope/operations", b.adminToken, "", nil), http.StatusNotFound)
}

// TestCatalog lists the providers of the template catalog, the fields each
// credential takes and the addons, from the same catalogs the service
// validates with.
func TestCatalog(t *testing.T) {
	t.Parallel()
	b := setup(t)
	problem(t, b.do(http.MethodGet, "/v1/catalog", "", "", nil), http.StatusUnauthorized)
	r := b.do(http.MethodGet, "/v1/catalog", b.adminToken, "", nil)
	b.expect(r, http.StatusOK)
	var cat struct {
		Providers []struct {
			Name       string            `json:"name"`
			Sections   []string          `json:"sections"`
			Flavors    []string          `json:"flavors"`
			Kubernetes map[string]string `json:"kubernetes"`
			Required   []string          `json:"requiredAddons"`
		} `json:"providers"`
		Credentials []struct {
			Provider string `json:"provider"`
			Fields   []struct {
				Name     string `json:"name"`
				Required bool   `json:"required"`
			} `json:"fields"`
		} `json:"credentials"`
		Addons []string `json:"addons"`
	}
	if err := json.Unmarshal(r.body, &cat); err != nil {
		t.Fatal(err)
	}
	providers := map[string]string{}
	for _, p := range cat.Providers {
		providers[p.Name] = strings.Join(p.Sections, ",") + "/" + strings.Join(p.Flavors, ",")
	}
	if providers["hetzner"] != "hcloud,hrobot/hrobot" || providers["aws"] != "aws/eks" {
		t.Fatalf("providers: %v", providers)
	}
	// What the provider manifests state (templates/providers/*/provider.yaml).
	for _, p := range cat.Providers {
		if p.Name == "hetzner" && (p.Kubernetes["min"] != "v1.32" || p.Kubernetes["max"] != "v1.36" || strings.Join(p.Required, ",") != "cni,ccm") {
			t.Fatalf("hetzner requirements: %+v", p)
		}
	}
	required := map[string]bool{}
	for _, c := range cat.Credentials {
		for _, f := range c.Fields {
			required[c.Provider+"."+f.Name] = f.Required
		}
	}
	if !required["hetzner.hcloudToken"] || required["hetzner.robotUser"] || !required["aws.secretAccessKey"] {
		t.Fatalf("credential fields: %v", required)
	}
	if _, ok := required["git.token"]; !ok {
		t.Fatalf("no git credential fields: %v", required)
	}
	if !slices.Contains(cat.Addons, "cilium") || !slices.Contains(cat.Addons, "flux") {
		t.Fatalf("addons: %v", cat.Addons)
	}
}

// TestBadTextNeverReachesPostgres: NUL bytes and invalid UTF-8 in a spec,
// a path or an Idempotency-Key are the client's error (422 naming the
// field, 404, 400), never a 500 from Postgres (SQLSTATE 22P05, 22021), and
// nothing stored breaks later requests.
func TestBadTextNeverReachesPostgres(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putHetznerCredential(b.adminToken, "prod-credentials")
	seed := string(seedSpec(t))
	nul := strings.Replace(seed, "sshKeyName: my-ssh-key", `sshKeyName: "a\0b"`, 1)
	p := problem(t, b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", []byte(nul)), http.StatusUnprocessableEntity)
	if !strings.Contains(fmt.Sprint(p["errors"]), "spec.hcloud.sshKeyName") {
		t.Fatalf("NUL in the spec: %v", p)
	}
	for _, path := range []string{"/v1/clusters/%FF", "/v1/clusters/%FF/status", "/v1/credentials/%FF", "/v1/clusters/a%00b"} {
		for _, method := range []string{http.MethodGet, http.MethodDelete} {
			if path == "/v1/clusters/%FF/status" && method == http.MethodDelete {
				continue
			}
			problem(t, b.do(method, path, b.adminToken, "", nil), http.StatusNotFound)
		}
	}
	problem(t, b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", []byte(seed), "Idempotency-Key: \xff\xfe"), http.StatusBadRequest)
	// What was refused left nothing behind: the credential can still be deleted.
	b.expect(b.do(http.MethodDelete, "/v1/credentials/prod-credentials", b.adminToken, "", nil), http.StatusNoContent)
}

// TestLimits: a tenant whose namespace lok8s-<name> would not be a DNS
// label is refused, naming the field; a spec with a great many errors gets
// the first hundred and a count of the rest, not an answer as large as
// the spec.
func TestLimits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	long := strings.Repeat("a", 58)
	p := problem(t, b.do(http.MethodPost, "/v1/tenants", b.adminToken, "application/json", []byte(`{"name":"`+long+`"}`)), http.StatusUnprocessableEntity)
	if !strings.Contains(fmt.Sprint(p["errors"]), "at most 57 characters") {
		t.Fatalf("a 58-character tenant: %v", p)
	}
	b.expect(b.do(http.MethodPost, "/v1/tenants", b.adminToken, "application/json", []byte(`{"name":"`+long[:57]+`"}`)), http.StatusCreated)

	b.putHetznerCredential(b.adminToken, "prod-credentials")
	var typos strings.Builder
	for i := 0; i < 150; i++ {
		fmt.Fprintf(&typos, "\n    typo%d: x", i)
	}
	spec := strings.Replace(string(seedSpec(t)), "    sshKeyName: my-ssh-key", "    sshKeyName: my-ssh-key"+typos.String(), 1)
	p = problem(t, b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", []byte(spec)), http.StatusUnprocessableEntity)
	if errs := p["errors"].([]any); len(errs) != 100 || !strings.Contains(p["detail"].(string), "150 field(s) are invalid") ||
		!strings.Contains(p["detail"].(string), "50 more were left out") {
		t.Fatalf("150 errors: %d listed, detail %q", len(errs), p["detail"])
	}
}

// TestTokenLifecycle: tokens are listed with their last use and expiry
// (never the token), revoked at once, and expire.
func TestTokenLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.expect(b.do(http.MethodPost, "/v1/tenants", b.adminToken, "application/json", []byte(`{"name":"initech"}`)), http.StatusCreated)
	created := b.do(http.MethodPost, "/v1/tenants/initech/tokens", b.adminToken, "application/json", []byte(`{"name":"ci"}`))
	b.expect(created, http.StatusCreated)
	ci := created.json(t)
	expiry := time.Now().Add(2 * time.Second)
	soon := expiry.UTC().Format(time.RFC3339Nano)
	shortLived := b.do(http.MethodPost, "/v1/tenants/initech/tokens", b.adminToken, "application/json", []byte(`{"name":"short","expiresAt":"`+soon+`"}`))
	b.expect(shortLived, http.StatusCreated)
	short := shortLived.json(t)
	p := problem(t, b.do(http.MethodPost, "/v1/tenants/initech/tokens", b.adminToken, "application/json", []byte(`{"name":"past","expiresAt":"2020-01-01T00:00:00Z"}`)), http.StatusUnprocessableEntity)
	if !strings.Contains(fmt.Sprint(p["errors"]), "expiresAt") {
		t.Fatalf("a token expiring in the past: %v", p)
	}

	b.expect(b.do(http.MethodGet, "/v1/clusters", ci["token"].(string), "", nil), http.StatusOK)
	list := b.do(http.MethodGet, "/v1/tenants/initech/tokens", b.adminToken, "", nil)
	b.expect(list, http.StatusOK)
	if strings.Contains(string(list.body), ci["token"].(string)) {
		t.Fatal("the token list shows a token")
	}
	items := list.json(t)["items"].([]any)
	if len(items) != 2 || items[0].(map[string]any)["lastUsedAt"] == nil || items[1].(map[string]any)["expiresAt"] == nil {
		t.Fatalf("tokens: %s", list.body)
	}
	problem(t, b.do(http.MethodGet, "/v1/tenants/initech/tokens", ci["token"].(string), "", nil), http.StatusForbidden)

	// Revoked: it stops at once, and listing says when.
	b.expect(b.do(http.MethodDelete, "/v1/tenants/initech/tokens/"+ci["id"].(string), b.adminToken, "", nil), http.StatusNoContent)
	problem(t, b.do(http.MethodGet, "/v1/clusters", ci["token"].(string), "", nil), http.StatusUnauthorized)
	if items := b.do(http.MethodGet, "/v1/tenants/initech/tokens", b.adminToken, "", nil).json(t)["items"].([]any); items[0].(map[string]any)["revokedAt"] == nil {
		t.Fatalf("revoked token listed without revokedAt: %v", items[0])
	}
	problem(t, b.do(http.MethodDelete, "/v1/tenants/initech/tokens/"+uuid.NewString(), b.adminToken, "", nil), http.StatusNotFound)
	// The service's own admin token is rotated, not revoked.
	var adminID string
	for _, it := range b.do(http.MethodGet, "/v1/tenants/acme/tokens", b.adminToken, "", nil).json(t)["items"].([]any) {
		if m := it.(map[string]any); m["admin"] == true {
			adminID = m["id"].(string)
		}
	}
	problem(t, b.do(http.MethodDelete, "/v1/tenants/acme/tokens/"+adminID, b.adminToken, "", nil), http.StatusConflict)

	// Expired: works until then, not after.
	b.expect(b.do(http.MethodGet, "/v1/clusters", short["token"].(string), "", nil), http.StatusOK)
	time.Sleep(time.Until(expiry) + 200*time.Millisecond)
	problem(t, b.do(http.MethodGet, "/v1/clusters", short["token"].(string), "", nil), http.StatusUnauthorized)
}

// TestOwnTokens: a tenant lists its own tokens (its current one marked,
// never a token's value), makes one of its own (not an admin token), and
// revokes it; another tenant's token is not found to it, and revoking the
// token it calls with ends that token.
func TestOwnTokens(t *testing.T) {
	t.Parallel()
	b := setup(t)
	token := b.newTenant("initech")
	other := b.newTenant("globex")

	made := b.do(http.MethodPost, "/v1/tokens", token, "application/json", []byte(`{"name":"deploy","expiresAt":"`+time.Now().Add(time.Hour).UTC().Format(time.RFC3339)+`"}`))
	b.expect(made, http.StatusCreated)
	deploy := made.json(t)
	if deploy["tenant"] != "initech" || deploy["token"] == "" || deploy["expiresAt"] == nil {
		t.Fatalf("made: %s", made.body)
	}
	b.expect(b.do(http.MethodGet, "/v1/clusters", deploy["token"].(string), "", nil), http.StatusOK)
	problem(t, b.do(http.MethodPost, "/v1/tokens", token, "application/json", []byte(`{"name":"ci"}`)), http.StatusConflict)
	problem(t, b.do(http.MethodPost, "/v1/tokens", token, "application/json", []byte(`{"name":"Bad Name"}`)), http.StatusUnprocessableEntity)
	// It cannot make itself an admin token.
	problem(t, b.do(http.MethodPost, "/v1/tokens", token, "application/json", []byte(`{"name":"root","admin":true}`)), http.StatusUnprocessableEntity)

	list := b.do(http.MethodGet, "/v1/tokens", token, "", nil)
	b.expect(list, http.StatusOK)
	if strings.Contains(string(list.body), deploy["token"].(string)) || strings.Contains(string(list.body), token) {
		t.Fatal("the token list shows a token")
	}
	var names, current []string
	var selfID string
	for _, it := range list.json(t)["items"].([]any) {
		m := it.(map[string]any)
		names = append(names, m["name"].(string))
		if m["admin"] == true {
			t.Fatalf("a tenant's own token is admin: %v", m)
		}
		if m["current"] == true {
			current = append(current, m["name"].(string))
			selfID = m["id"].(string)
		}
	}
	if len(names) != 2 || len(current) != 1 || current[0] != "ci" {
		t.Fatalf("own tokens %v, current %v: %s", names, current, list.body)
	}
	if got := b.do(http.MethodGet, "/v1/tokens", other, "", nil); strings.Contains(string(got.body), deploy["id"].(string)) {
		t.Fatalf("another tenant lists initech's token: %s", got.body)
	}

	// Another tenant cannot revoke it; its own tenant can.
	problem(t, b.do(http.MethodDelete, "/v1/tokens/"+deploy["id"].(string), other, "", nil), http.StatusNotFound)
	b.expect(b.do(http.MethodGet, "/v1/clusters", deploy["token"].(string), "", nil), http.StatusOK)
	b.expect(b.do(http.MethodDelete, "/v1/tokens/"+deploy["id"].(string), token, "", nil), http.StatusNoContent)
	problem(t, b.do(http.MethodGet, "/v1/clusters", deploy["token"].(string), "", nil), http.StatusUnauthorized)
	// Its own: it stops working at once.
	b.expect(b.do(http.MethodDelete, "/v1/tokens/"+selfID, token, "", nil), http.StatusNoContent)
	problem(t, b.do(http.MethodGet, "/v1/tokens", token, "", nil), http.StatusUnauthorized)
}

// TestQuota: an admin sets a tenant's quota; a spec beyond it is refused
// with 403 quota-exceeded naming the quota, its limit, use and request, on
// a dry run too, and nothing is stored; a scale-up beyond it is refused, a
// scale-down passes; the tenant reads its own quota and usage, and cannot
// set it.
func TestQuota(t *testing.T) {
	t.Parallel()
	b := setup(t)
	token := b.newTenant("initech")
	b.putHetznerCredential(token, "prod-credentials")
	quotaProblem := func(r response, name string, limit, used, requested float64) {
		t.Helper()
		p := problem(t, r, http.StatusForbidden)
		q, _ := p["quota"].(map[string]any)
		if p["type"] != "https://lok8s.dev/problems/quota-exceeded" || q["name"] != name || q["limit"] != limit || q["used"] != used || q["requested"] != requested {
			t.Fatalf("quota problem: %v", p)
		}
	}
	setQuota := func(body string) response {
		t.Helper()
		return b.do(http.MethodPut, "/v1/tenants/initech/quota", b.adminToken, "application/json", []byte(body))
	}

	p := problem(t, setQuota(`{"clusters":-1}`), http.StatusUnprocessableEntity)
	if !strings.Contains(fmt.Sprint(p["errors"]), "clusters") {
		t.Fatalf("a negative limit: %v", p)
	}
	problem(t, setQuota(`{"nodes":3}`), http.StatusUnprocessableEntity)
	p = problem(t, setQuota(`{"kubeconfigMaxTTLSeconds":60}`), http.StatusUnprocessableEntity)
	if !strings.Contains(fmt.Sprint(p["errors"]), "kubeconfigMaxTTLSeconds") {
		t.Fatalf("a kubeconfig TTL below the TokenRequest minimum: %v", p)
	}
	problem(t, b.do(http.MethodPut, "/v1/tenants/initech/quota", token, "application/json", []byte(`{}`)), http.StatusForbidden)
	b.expect(setQuota(`{"clusters":1,"machinesPerCluster":6,"machines":10}`), http.StatusOK)

	// The seed spec asks for 3 control-plane machines and pools of 3 and 1.
	quotaProblem(b.do(http.MethodPost, "/v1/clusters?dryRun=true", token, "application/yaml", seedSpec(t)), "machinesPerCluster", 6, 0, 7)
	quotaProblem(b.do(http.MethodPost, "/v1/clusters", token, "application/yaml", seedSpec(t)), "machinesPerCluster", 6, 0, 7)
	if n := b.count(`SELECT count(*) FROM clusters`); n != 0 {
		t.Fatalf("%d clusters stored after a refusal", n)
	}
	b.expect(setQuota(`{"clusters":1,"machinesPerCluster":10,"machines":10}`), http.StatusOK)
	b.expect(b.do(http.MethodPost, "/v1/clusters", token, "application/yaml", seedSpec(t)), http.StatusAccepted)
	own := b.do(http.MethodGet, "/v1/quota", token, "", nil)
	b.expect(own, http.StatusOK)
	if v := own.json(t); v["tenant"] != "initech" || fmt.Sprint(v["usage"]) != "map[clusters:1 machines:7]" ||
		fmt.Sprint(v["limits"]) != "map[clusters:1 kubeconfigMaxTTLSeconds:<nil> machines:10 machinesPerCluster:10]" {
		t.Fatalf("own quota: %s", own.body)
	}
	quotaProblem(b.do(http.MethodPost, "/v1/clusters", token, "application/yaml",
		bytes.Replace(seedSpec(t), []byte("name: prod"), []byte("name: staging"), 1)), "clusters", 1, 1, 1)

	// Updates once the provisioning operation is over.
	if _, err := b.pool.Exec(context.Background(), `UPDATE operations SET state = 'succeeded'`); err != nil {
		t.Fatal(err)
	}
	scale := func(replicas int) response {
		return b.do(http.MethodPatch, "/v1/clusters/prod", token, "application/merge-patch+json",
			[]byte(fmt.Sprintf(`{"spec":{"hcloud":{"workers":{"general":{"replicas":%d}}}}}`, replicas)))
	}
	quotaProblem(scale(7), "machinesPerCluster", 10, 0, 11)
	b.expect(setQuota(`{"machines":5}`), http.StatusOK) // below what is in use
	quotaProblem(scale(4), "machines", 5, 0, 8)
	b.expect(scale(2), http.StatusAccepted)
	admin := b.do(http.MethodGet, "/v1/tenants/initech/quota", b.adminToken, "", nil)
	b.expect(admin, http.StatusOK)
	if v := admin.json(t); fmt.Sprint(v["usage"]) != "map[clusters:1 machines:6]" || fmt.Sprint(v["limits"]) != "map[clusters:<nil> kubeconfigMaxTTLSeconds:<nil> machines:5 machinesPerCluster:<nil>]" {
		t.Fatalf("admin view: %s", admin.body)
	}
	problem(t, b.do(http.MethodGet, "/v1/tenants/nobody/quota", b.adminToken, "", nil), http.StatusNotFound)
}
