package web

import (
	"context"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	provisioner "lok8s.dev/provisioner"
	"lok8s.dev/provisioner/internal/api"
	"lok8s.dev/provisioner/internal/capi"
	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/service"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/store"
)

// GET /clusters/{name}/row is the clusters list's line of one cluster,
// rendered by the list's own template: the same line the list page shows,
// alone, never cached; the session's tenant's cluster only (another
// tenant's cluster of the same name is not what it shows, one of a name
// only another tenant has is not found), and nothing without a session.
// The cluster's page shows the same region and version.
func TestClusterRowFragment(t *testing.T) {
	t.Parallel()
	rs := newRowSetup(t)
	acme := rs.tenant(t, "acme")
	rival := rs.tenant(t, "rival")
	rs.cluster(t, acme, "prod", `{"hcloud":{"region":"fsn1"}}`, "v1.34.2", "")
	rs.cluster(t, acme, "secret", `{"hcloud":{"region":"hel1"}}`, "v1.34.2", "")
	rs.cluster(t, rival, "prod", `{"hcloud":{"region":"nbg1"}}`, "v1.33.4", string(spec.ShapeProvider))

	for _, tc := range []struct {
		who   string
		ses   string
		name  string
		cells []string
	}{
		{"acme", acme.session, "prod", []string{"prod", "hetzner", "fsn1", "v1.34.2", "Pending", "—", "provision (queued)"}},
		{"rival, its own prod (current shape)", rival.session, "prod", []string{"prod", "hetzner", "nbg1", "v1.33.4", "Pending", "—", "provision (queued)"}},
	} {
		res := rs.get(t, tc.ses, "/clusters/"+tc.name+"/row")
		if res.Code != http.StatusOK || res.Header().Get("Content-Type") != "text/html; charset=utf-8" || res.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: %d, %v\n%s", tc.who, res.Code, res.Header(), res.Body)
		}
		row := res.Body.String()
		if strings.Contains(row, "<html") || strings.Count(row, "<tr ") != 1 || !strings.Contains(row, `<tr data-cluster="`+tc.name+`">`) {
			t.Fatalf("%s: not one row of the list:\n%s", tc.who, row)
		}
		if got := cells(row); strings.Join(got[:len(tc.cells)], "|") != strings.Join(tc.cells, "|") {
			t.Errorf("%s: cells %q, want %q first", tc.who, got, tc.cells)
		}
		list := rs.get(t, tc.ses, "/").Body.String()
		if inList := rowIn(list, tc.name); withoutAge(inList) != withoutAge(strings.TrimSpace(row)) {
			t.Errorf("%s: the row differs from the list's\nrow:  %s\nlist: %s", tc.who, row, inList)
		}
	}

	// The cluster's page shows the same region and version.
	if page := rs.get(t, acme.session, "/clusters/prod"); page.Code != http.StatusOK || !strings.Contains(page.Body.String(), `<p class="meta">hetzner · fsn1 · Kubernetes v1.34.2`) {
		t.Errorf("the cluster's page: %d\n%s", page.Code, page.Body)
	}

	// acme's other cluster, asked for by rival: not found, nothing shown.
	res := rs.get(t, rival.session, "/clusters/secret/row")
	if res.Code != http.StatusNotFound || strings.Contains(res.Body.String(), "data-cluster") || strings.Contains(res.Body.String(), "hel1") ||
		res.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("another tenant's cluster: %d, %v\n%s", res.Code, res.Header(), res.Body)
	}
	if res := rs.get(t, acme.session, "/clusters/nope/row"); res.Code != http.StatusNotFound {
		t.Errorf("no such cluster: %d", res.Code)
	}
	if res := rs.get(t, "", "/clusters/prod/row"); res.Code != http.StatusSeeOther || res.Header().Get("Location") != "/signin" {
		t.Errorf("without a session: %d, Location %q", res.Code, res.Header().Get("Location"))
	}
}

// rowSetup is the dashboard over a migrated database and the service,
// without the API or a queue behind it.
type rowSetup struct {
	h     *Handler
	store *store.Store
}

type rowTenant struct {
	store.Principal
	session string
}

// testCatalogOf is the repository's provider catalog.
func testCatalogOf(t *testing.T) *capi.Catalog {
	t.Helper()
	templates, err := fs.Sub(provisioner.Templates, "templates")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := capi.LoadCatalog(templates)
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

func newRowSetup(t *testing.T) *rowSetup {
	t.Helper()
	st := store.New(dbtest.NewPool(t), slog.New(slog.DiscardHandler))
	keyring := newTestKeyring(t)
	svc, err := service.New(service.Config{
		Store: st, Keyring: keyring,
		Enqueue:                func(context.Context, store.Tx, store.Operation) (int64, error) { return 0, nil },
		CancelJob:              func(context.Context, store.Tx, int64) error { return nil },
		StepNames:              func(store.OperationKind) []string { return []string{"detect"} },
		ManagementClusterKnown: func(string) bool { return false },
		Catalog:                testCatalogOf(t),
		CredentialFields:       func(string) ([]service.CredentialField, bool) { return nil, false },
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Store: st, API: http.NotFoundHandler(), Service: svc, Keyring: keyring})
	if err != nil {
		t.Fatal(err)
	}
	return &rowSetup{h: h, store: st}
}

// tenant makes a tenant with a (not admin) token and a dashboard session
// of it.
func (rs *rowSetup) tenant(t *testing.T, name string) rowTenant {
	t.Helper()
	ctx := context.Background()
	tn, err := rs.store.CreateTenant(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	token := randomToken()
	if _, err := rs.store.CreateToken(ctx, tn.ID, "t", api.HashToken(token), false, nil); err != nil {
		t.Fatal(err)
	}
	p, err := rs.store.Authenticate(ctx, api.HashToken(token))
	if err != nil {
		t.Fatal(err)
	}
	session := randomToken()
	if err := rs.store.CreateSession(ctx, api.HashToken(session), p, randomToken(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return rowTenant{Principal: p, session: session}
}

// cluster stores a cluster of tenant's, its spec of the provider section
// given and version, as submitted in shape ("" for the sections shape).
func (rs *rowSetup) cluster(t *testing.T, tenant rowTenant, name, section, version, shape string) {
	t.Helper()
	doc := json.RawMessage(`{"apiVersion":"cluster.lok8s.dev/v1beta1","kind":"Capi","metadata":{"name":"` + name + `"},` +
		`"spec":{"kubernetes":{"version":"` + version + `"},"cluster":{"domain":"` + name + `.example.com"},` + section[1:len(section)-1] + `}}`)
	noJob := func(context.Context, store.Tx, store.Operation) (int64, error) { return 0, nil }
	if _, _, _, err := rs.store.CreateCluster(context.Background(), store.Actor{TenantID: tenant.TenantID, TokenID: tenant.TokenID}, store.NewCluster{
		Name: name, Provider: spec.ProviderHetzner, Spec: doc, SpecShape: shape, Steps: []string{"detect"},
	}, noJob); err != nil {
		t.Fatal(err)
	}
}

func (rs *rowSetup) get(t *testing.T, session, path string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if session != "" {
		req.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: session})
	}
	res := httptest.NewRecorder()
	rs.h.ServeHTTP(res, req)
	return res
}

var (
	cellPattern = regexp.MustCompile(`(?s)<td[^>]*>(.*?)</td>`)
	tagPattern  = regexp.MustCompile(`<[^>]+>`)
	agePattern  = regexp.MustCompile(`>\d+[smhd]</time>`)
)

// cells is the text of each cell of an HTML row.
func cells(row string) []string {
	var out []string
	for _, m := range cellPattern.FindAllStringSubmatch(row, -1) {
		out = append(out, strings.TrimSpace(tagPattern.ReplaceAllString(m[1], "")))
	}
	return out
}

// rowIn is the row of cluster name in the list page's HTML.
func rowIn(page, name string) string {
	start := strings.Index(page, `<tr data-cluster="`+name+`">`)
	if start < 0 {
		return ""
	}
	end := strings.Index(page[start:], "</tr>")
	if end < 0 {
		return ""
	}
	return page[start : start+end+len("</tr>")]
}

// withoutAge drops the age a row shows, which the clock may have moved
// on between two renderings.
func withoutAge(row string) string { return agePattern.ReplaceAllString(row, "></time>") }
