package service_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"lok8s.dev/provisioner/internal/api"
	"lok8s.dev/provisioner/internal/app"
	"lok8s.dev/provisioner/internal/capi"
	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/jobs"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/service"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/store"
)

type bundle struct {
	svc   *service.Service
	store *store.Store
	ctx   context.Context
	// acme is the admin tenant's principal.
	acme store.Principal
}

// setup wires the service as the server does (with the real catalogs,
// over a fresh database; jobs are enqueued, not run).
func setup(t *testing.T) *bundle {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbtest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	logger := slog.New(slog.DiscardHandler)
	st := store.New(pool, logger)
	key, _ := seal.ParseKey(seal.NewKey())
	keyring, _ := seal.NewKeyring(key)
	catalog, addonCatalog, err := app.LoadCatalogs("", "")
	if err != nil {
		t.Fatal(err)
	}
	queue, err := jobs.NewQueue(pool, jobs.Config{Store: st, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	registry := &mgmt.Registry{KubeconfigDir: t.TempDir()}
	cfg := app.WithCatalog(api.Config{Config: service.Config{
		Store: st, Keyring: keyring, Logger: logger, Enqueue: queue.Enqueue, CancelJob: queue.CancelJob,
		StepNames: jobs.NewPipeline(jobs.Deps{Store: st, Keyring: keyring, Catalog: catalog}).StepNames, ManagementClusterKnown: registry.Known,
	}}, catalog, addonCatalog)
	svc, err := service.New(cfg.Config)
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{svc: svc, store: st, ctx: service.WithRequestID(ctx, "test")}
	b.acme = b.principal(t, "acme", true)
	return b
}

// principal makes a tenant (unless it exists) with a token and returns the
// token's principal.
func (b *bundle) principal(t *testing.T, tenant string, admin bool) store.Principal {
	t.Helper()
	tn, err := b.store.CreateTenant(b.ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	token := service.NewToken()
	if _, err := b.store.CreateToken(b.ctx, tn.ID, "t", service.HashToken(token), admin, nil); err != nil {
		t.Fatal(err)
	}
	p, err := b.store.Authenticate(b.ctx, service.HashToken(token))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// seed stores the README's cluster (examples/prod.yaml) and its credential for p.
func (b *bundle) seed(t *testing.T, p store.Principal, extra string) service.ClusterView {
	t.Helper()
	if _, _, err := b.svc.PutCredential(b.ctx, p, "prod-credentials", map[string]string{"provider": "hetzner", "hcloudToken": "SECRET-hcloud"}); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../examples/prod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.svc.Create(b.ctx, p, append(doc, extra...), "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// problem asserts err is the problem of status and slug.
func problem(t *testing.T, err error, status int, slug string) service.Problem {
	t.Helper()
	p, known := service.ProblemOf(err)
	if !known || p.Status != status || p.Type != service.ProblemBase+slug {
		t.Fatalf("error %v: problem %+v (known %t), want %d %s", err, p, known, status, slug)
	}
	return p
}

// A tenant reaches none of another tenant's clusters, operations,
// credentials or tokens through any use case: each is not found (or not
// listed), and nothing of the other tenant's changes.
func TestTenantsReachOnlyTheirOwn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	owner, other := b.principal(t, "owner", false), b.principal(t, "other", false)
	c := b.seed(t, owner, "")
	ctx := b.ctx
	for name, call := range map[string]func() error{
		"Cluster":    func() error { _, err := b.svc.Cluster(ctx, other, c.Name); return err },
		"Status":     func() error { _, err := b.svc.Status(ctx, other, c.Name); return err },
		"StatusJSON": func() error { _, err := b.svc.StatusJSON(ctx, other, c.Name); return err },
		"Operations": func() error { _, err := b.svc.Operations(ctx, other, c.Name); return err },
		"Patch": func() error {
			_, err := b.svc.Patch(ctx, other, c.Name, []byte(`{"spec":{"hcloud":{"workers":{"gpu":{"replicas":2}}}}}`), "")
			return err
		},
		"Replace":          func() error { _, err := b.svc.Replace(ctx, other, c.Name, c.Spec, ""); return err },
		"Retry":            func() error { _, err := b.svc.Retry(ctx, other, c.Name); return err },
		"CancelOperation":  func() error { _, err := b.svc.CancelOperation(ctx, other, c.Name, c.Operation.ID); return err },
		"Delete":           func() error { _, err := b.svc.Delete(ctx, other, c.Name); return err },
		"Credential":       func() error { _, err := b.svc.Credential(ctx, other, "prod-credentials"); return err },
		"DeleteCredential": func() error { return b.svc.DeleteCredential(ctx, other, "prod-credentials") },
		"RevokeToken":      func() error { return b.svc.RevokeToken(ctx, other, service.TenantRef{}, owner.TokenID.String()) },
	} {
		if err := call(); err == nil {
			t.Errorf("%s: another tenant's object was reached", name)
		} else {
			problem(t, err, http.StatusNotFound, "not-found")
		}
	}
	list, err := b.svc.ListClusters(ctx, other, service.ClusterQuery{Limit: service.MaxPageSize})
	if err != nil || len(list.Items) != 0 {
		t.Errorf("other tenant lists %+v, %v", list.Items, err)
	}
	creds, err := b.svc.Credentials(ctx, other)
	if err != nil || len(creds.Items) != 0 {
		t.Errorf("other tenant lists credentials %+v, %v", creds.Items, err)
	}
	tokens, err := b.svc.Tokens(ctx, other, service.TenantRef{})
	if err != nil || len(tokens.Items) != 1 || tokens.Items[0].ID != other.TokenID.String() {
		t.Errorf("other tenant lists tokens %+v, %v", tokens.Items, err)
	}
	// The owner's cluster is as it was: its first operation, not deleting.
	got, err := b.svc.Cluster(ctx, owner, c.Name)
	if err != nil || got.Generation != c.Generation || got.DeletedAt != nil || got.Operation.ID != c.Operation.ID {
		t.Errorf("owner's cluster changed: %+v, %v", got, err)
	}
	if _, err := b.svc.Credential(ctx, owner, "prod-credentials"); err != nil {
		t.Errorf("owner's credential: %v", err)
	}
}

// Only an admin acts on a tenant by name; anyone on their own.
func TestNamedTenantIsForAdmins(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tenant := b.principal(t, "shop", false)
	named := service.NamedTenant("acme")
	if _, err := b.svc.Tokens(b.ctx, tenant, named); err == nil {
		t.Fatal("a tenant listed another tenant's tokens by name")
	} else {
		problem(t, err, http.StatusForbidden, "forbidden")
	}
	if _, err := b.svc.CreateToken(b.ctx, tenant, named, service.TokenInput{Name: "x"}); err == nil {
		t.Fatal("a tenant made a token of another tenant")
	}
	if err := b.svc.RevokeToken(b.ctx, tenant, named, b.acme.TokenID.String()); err == nil {
		t.Fatal("a tenant revoked another tenant's token")
	}
	made, err := b.svc.CreateToken(b.ctx, b.acme, service.NamedTenant("shop"), service.TokenInput{Name: "ci"})
	if err != nil || made.Tenant != "shop" || !strings.HasPrefix(made.Token, "lok8s_") {
		t.Fatalf("admin made %+v, %v", made, err)
	}
	if _, err := b.svc.Tokens(b.ctx, b.acme, service.NamedTenant("nope")); err == nil {
		t.Fatal("a tenant that does not exist was found")
	} else {
		problem(t, err, http.StatusNotFound, "not-found")
	}
	own, err := b.svc.Tokens(b.ctx, tenant, service.TenantRef{})
	if err != nil || len(own.Items) != 2 || !slices.ContainsFunc(own.Items, func(i service.TokenInfo) bool { return i.Current }) {
		t.Fatalf("own tokens %+v, %v", own.Items, err)
	}
}

// Create, Check and the updates answer with what the API sends: the
// view, its warnings, whether an update started, and typed problems.
func TestClusterUseCases(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.principal(t, "shop", false)
	c := b.seed(t, p, "status:\n  phase: Ready\n")
	if c.Name != "prod" || c.Phase != store.PhasePending || c.Operation == nil || c.Operation.Kind != store.OpProvision {
		t.Fatalf("created %+v", c)
	}
	if !slices.ContainsFunc(c.Warnings, func(w string) bool { return strings.HasPrefix(w, "status: ignored: ") }) {
		t.Errorf("warnings %q do not name status", c.Warnings)
	}
	if service.ETag(c.Generation) != `"1"` {
		t.Errorf("ETag %s", service.ETag(c.Generation))
	}

	// The same spec again: a conflict; as a dry run of another name: valid.
	doc, _ := os.ReadFile("../../examples/prod.yaml")
	_, err := b.svc.Create(b.ctx, p, doc, "")
	problem(t, err, http.StatusConflict, "conflict")
	dry, err := b.svc.Check(b.ctx, p, []byte(strings.Replace(string(doc), "name: prod", "name: prod2", 1)))
	if err != nil || !dry.Valid {
		t.Fatalf("dry run %+v, %v", dry, err)
	}

	// A syntax error keeps its line; an invalid field is named.
	_, err = b.svc.Check(b.ctx, p, []byte("apiVersion: [\n"))
	if pr := problem(t, err, http.StatusBadRequest, "malformed-body"); pr.Line == 0 {
		t.Errorf("no line: %+v", pr)
	}
	_, err = b.svc.Check(b.ctx, p, []byte(strings.Replace(string(doc), "secretName: prod-credentials", "secretName: nope", 1)))
	if pr := problem(t, err, http.StatusUnprocessableEntity, "validation"); len(pr.Errors) != 1 || pr.Errors[0].Field != "spec.credentials.secretName" {
		t.Errorf("errors %+v", pr.Errors)
	}

	// A patch while the provisioning runs: busy, naming the operation.
	patch := []byte(`{"spec":{"hcloud":{"workers":{"gpu":{"replicas":2}}}}}`)
	_, err = b.svc.Patch(b.ctx, p, "prod", patch, "")
	if pr := problem(t, err, http.StatusConflict, "conflict"); pr.Operation != c.Operation.ID {
		t.Errorf("busy names operation %q, want %s", pr.Operation, c.Operation.ID)
	}
	// A stale ETag is refused before anything else is looked at.
	_, err = b.svc.Patch(b.ctx, p, "prod", patch, `"7"`)
	problem(t, err, http.StatusPreconditionFailed, "precondition-failed")
	_, err = b.svc.Patch(b.ctx, p, "prod", patch, "seven")
	if pr := problem(t, err, http.StatusUnprocessableEntity, "validation"); pr.Errors[0].Field != "If-Match" {
		t.Errorf("errors %+v", pr.Errors)
	}
	// The spec as stored changes nothing and starts nothing.
	same, err := b.svc.Replace(b.ctx, p, "prod", c.Spec, service.ETag(c.Generation))
	if err != nil || same.Started || same.Cluster.Generation != c.Generation {
		t.Fatalf("same spec: %+v, %v", same, err)
	}

	if _, err := b.svc.CancelOperation(b.ctx, p, "prod", c.Operation.ID); err != nil {
		t.Fatal(err)
	}
	up, err := b.svc.Patch(b.ctx, p, "prod", patch, service.ETag(c.Generation))
	if err != nil || !up.Started || up.Cluster.Generation != c.Generation+1 || up.Cluster.Operation.Kind != store.OpUpdate {
		t.Fatalf("patch: %+v, %v", up, err)
	}
	ops, err := b.svc.Operations(b.ctx, p, "prod")
	if err != nil || len(ops) != 2 || ops[0].Kind != store.OpUpdate {
		t.Fatalf("operations %+v, %v", ops, err)
	}

	// The credential a live cluster uses is kept; the cluster deleted, a
	// second delete finds it going.
	err = b.svc.DeleteCredential(b.ctx, p, "prod-credentials")
	problem(t, err, http.StatusConflict, "conflict")
	if _, err := b.svc.CancelOperation(b.ctx, p, "prod", up.Cluster.Operation.ID); err != nil {
		t.Fatal(err)
	}
	gone, err := b.svc.Delete(b.ctx, p, "prod")
	if err != nil || gone.Operation.Kind != store.OpDeprovision {
		t.Fatalf("delete: %+v, %v", gone, err)
	}
	_, err = b.svc.Delete(b.ctx, p, "nope")
	if pr := problem(t, err, http.StatusNotFound, "not-found"); pr.Phase != "NotFound" {
		t.Errorf("phase %q", pr.Phase)
	}
}

// A cluster's summary (what the dashboard's list shows of its spec) is
// read from the spec as stored, whatever shape it was submitted in, and
// the same from every use case that answers with the cluster.
func TestClusterSummaryOfBothShapes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.principal(t, "shop", false)
	seed := b.seed(t, p, "")
	// The README's cluster elsewhere, written in the current shape.
	doc, err := os.ReadFile("../../examples/prod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := spec.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	c.Metadata.Name, c.Spec.HCloud.Region, c.Spec.Kubernetes.Version = "shaped", "nbg1", "v1.33.4"
	current, err := spec.Render(c, spec.ShapeProvider)
	if err != nil {
		t.Fatal(err)
	}
	shaped, err := b.svc.Create(b.ctx, p, current, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(shaped.Spec), `"provider":{`) {
		t.Fatalf("the cluster is not shown in the current shape: %s", shaped.Spec)
	}
	want := map[string]service.SpecSummary{
		"prod":   {Region: "fsn1", KubernetesVersion: "v1.34.2"},
		"shaped": {Region: "nbg1", KubernetesVersion: "v1.33.4"},
	}
	for _, c := range []service.ClusterView{seed, shaped} {
		if got := c.Summary(); got != want[c.Name] {
			t.Errorf("created %s: summary %+v, want %+v", c.Name, got, want[c.Name])
		}
		got, err := b.svc.Cluster(b.ctx, p, c.Name)
		if err != nil {
			t.Fatal(err)
		}
		if got.Summary() != want[c.Name] {
			t.Errorf("read %s: summary %+v, want %+v", c.Name, got.Summary(), want[c.Name])
		}
	}
	list, err := b.svc.ListClusters(b.ctx, p, service.ClusterQuery{Limit: service.MaxPageSize})
	if err != nil || len(list.Items) != 2 {
		t.Fatalf("list %+v, %v", list, err)
	}
	for _, c := range list.Items {
		if c.Summary() != want[c.Name] {
			t.Errorf("listed %s: summary %+v, want %+v", c.Name, c.Summary(), want[c.Name])
		}
	}
}

// A credential's secrets are checked for its provider and never come
// back; the name must be a DNS subdomain.
func TestPutCredential(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.principal(t, "shop", false)
	view, created, err := b.svc.PutCredential(b.ctx, p, "h", map[string]string{"provider": "hetzner", "hcloudToken": "SECRET-1"})
	if err != nil || !created || view.Provider != "hetzner" || !slices.Equal(view.KeysSet, []string{"hcloudToken"}) {
		t.Fatalf("put: %+v %t %v", view, created, err)
	}
	if _, created, err = b.svc.PutCredential(b.ctx, p, "h", map[string]string{"provider": "hetzner", "hcloudToken": "SECRET-2"}); err != nil || created {
		t.Fatalf("replace: created %t, %v", created, err)
	}
	for _, tc := range []struct {
		name   string
		in     map[string]string
		fields []string
	}{
		{"Bad_Name", map[string]string{"provider": "hetzner", "hcloudToken": "x"}, []string{"name"}},
		{"h", map[string]string{}, []string{"provider"}},
		{"h", map[string]string{"provider": "nope"}, []string{"provider"}},
		{"h", map[string]string{"provider": "hetzner", "extra": "SECRET-x"}, []string{"extra", "hcloudToken"}},
	} {
		_, _, err := b.svc.PutCredential(b.ctx, p, tc.name, tc.in)
		pr := problem(t, err, http.StatusUnprocessableEntity, "validation")
		var fields []string
		for _, f := range pr.Errors {
			fields = append(fields, f.Field)
			if strings.Contains(f.Message, "SECRET") {
				t.Errorf("a field error repeats a value: %s", f.Message)
			}
		}
		if !slices.Equal(fields, tc.fields) {
			t.Errorf("%s %v: fields %v, want %v", tc.name, tc.in, fields, tc.fields)
		}
	}
}

// ProblemOf maps each kind of error to its problem once, for both front
// ends; an error not meant for callers is a generic 500, its text kept out.
func TestProblemOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err    error
		status int
		slug   string
		known  bool
	}{
		{service.NotFound("x"), http.StatusNotFound, "not-found", true},
		{&store.QuotaExceededError{Quota: store.QuotaClusters, Limit: 1, Used: 1}, http.StatusForbidden, "quota-exceeded", true},
		{spec.FieldErrors{{Field: "spec.x", Message: "bad"}}, http.StatusUnprocessableEntity, "validation", true},
		{&spec.SyntaxError{Line: 3}, http.StatusBadRequest, "malformed-body", true},
		{store.ErrNotFound, http.StatusNotFound, "not-found", true},
		{store.ErrConflict, http.StatusConflict, "conflict", true},
		{errors.New("dial tcp 10.0.0.1:5432: secret internals"), http.StatusInternalServerError, "internal", false},
	} {
		p, known := service.ProblemOf(tc.err)
		if p.Status != tc.status || p.Type != service.ProblemBase+tc.slug || known != tc.known {
			t.Errorf("%v: %d %s known %t, want %d %s %t", tc.err, p.Status, p.Type, known, tc.status, tc.slug, tc.known)
		}
		if strings.Contains(p.Detail, "10.0.0.1") {
			t.Errorf("%v: detail leaks %q", tc.err, p.Detail)
		}
	}
}

// A create, its dry run and an update each read the spec for the catalog
// once (capi.NewSpec): detection, the provider's requirements and the
// machine count share that one document instead of each decoding the spec.
func TestSpecReadOncePerRequest(t *testing.T) {
	// Not parallel: capi.SpecsDecoded counts for the whole process, and no
	// parallel test of the package runs while this one does. setup
	// enqueues jobs without working them.
	b := setup(t)
	c := b.seed(t, b.acme, "")
	if _, err := b.svc.CancelOperation(b.ctx, b.acme, c.Name, c.Operation.ID); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../examples/prod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	other := []byte(strings.Replace(string(doc), "name: prod", "name: other", 1))
	bigger := []byte(strings.Replace(string(doc), "replicas: 1", "replicas: 2", 1))
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"create", func() error { _, err := b.svc.Create(b.ctx, b.acme, other, ""); return err }},
		{"dry run", func() error { _, err := b.svc.Check(b.ctx, b.acme, other); return err }},
		{"update", func() error {
			up, err := b.svc.Replace(b.ctx, b.acme, c.Name, bigger, "")
			if err == nil && !up.Started {
				err = errors.New("the update started nothing")
			}
			return err
		}},
	} {
		before := capi.SpecsDecoded()
		if err := tc.call(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n := capi.SpecsDecoded() - before; n != 1 {
			t.Errorf("%s: the spec's document was decoded %d times, want once", tc.name, n)
		}
	}
}
