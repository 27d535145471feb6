package api_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"lok8s.dev/provisioner/internal/dbtest"
)

// waitFresh waits until the bundle's read model serves from memory.
func (b *bundle) waitFresh() {
	b.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !b.reads.Fresh() {
		if time.Now().After(deadline) {
			b.t.Fatal("the read model never became fresh")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// within polls get until ok holds, for at most limit, and returns how long
// it took.
func within(t *testing.T, limit time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// TestStatusFromTheReadModel: replica b serves a status from memory, the
// same bytes as Postgres renders (a server without a read model on the
// same database), and a change another replica or a worker makes reaches
// it within milliseconds, through the announcement alone.
func TestStatusFromTheReadModel(t *testing.T) {
	t.Parallel()
	a := setup(t)
	b := setupWith(t, setupOptions{dbURL: a.dbURL})
	plain := setupWith(t, setupOptions{dbURL: a.dbURL, noReads: true})
	token := plain.newTenant("initech")
	rival := plain.newTenant("globex")
	a.waitFresh()
	b.waitFresh()
	for _, tok := range []string{token, rival} {
		a.putHetznerCredential(tok, "prod-credentials")
		a.expect(a.do(http.MethodPost, "/v1/clusters", tok, "application/yaml", seedSpec(t)), http.StatusAccepted)
	}
	status := func(x *bundle, tok string) []byte {
		t.Helper()
		r := x.do(http.MethodGet, "/v1/clusters/prod/status", tok, "", nil)
		x.expect(r, http.StatusOK)
		return r.body
	}
	for _, tok := range []string{token, rival} {
		first, second, want := status(b, tok), status(b, tok), status(plain, tok)
		if !bytes.Equal(first, want) || !bytes.Equal(second, want) {
			t.Fatalf("from memory:\n%s\n%s\nfrom Postgres:\n%s", first, second, want)
		}
	}
	problem(t, b.do(http.MethodGet, "/v1/clusters/prod/status", plain.adminToken, "", nil), http.StatusNotFound)
	if n := b.reads.Statuses.Len(); n != 2 {
		t.Fatalf("b holds %d statuses, want 2 (each tenant's prod; a not-found is not kept)", n)
	}
	// Tenants are kept apart: each sees its own cluster's operation.
	if bytes.Equal(status(b, token), status(b, rival)) {
		t.Fatal("two tenants' clusters of one name read the same status")
	}

	// A worker elsewhere records CAPI's report: b serves it within ms.
	if _, err := a.pool.Exec(context.Background(), `UPDATE clusters c SET observed = '{"phase":"Provisioned"}', updated_at = now()
		FROM tenants t WHERE t.id = c.tenant_id AND t.name = 'initech'`); err != nil {
		t.Fatal(err)
	}
	took := within(t, 2*time.Second, "CAPI's report on replica b", func() bool {
		return bytes.Contains(status(b, token), []byte(`"capiPhase":"Provisioned"`))
	})
	t.Logf("a change reached replica b's memory in %v", took)
	if bytes.Contains(status(b, rival), []byte(`"capiPhase"`)) {
		t.Fatal("another tenant's change reached this tenant's status")
	}
	// A change the events do not announce (GitOps readiness) as well.
	if _, err := a.pool.Exec(context.Background(), `INSERT INTO cluster_gitops (cluster_id, tenant_id, provider, repo, ready)
		SELECT c.id, c.tenant_id, 'flux', 'https://git.example/r', true FROM clusters c JOIN tenants t ON t.id = c.tenant_id
		WHERE t.name = 'initech'`); err != nil {
		t.Fatal(err)
	}
	within(t, 2*time.Second, "GitOps readiness on replica b", func() bool {
		return bytes.Contains(status(b, token), []byte(`"gitops":{"provider":"flux"`))
	})
	// Deleted through a: b shows the deletion (then the same bytes as Postgres).
	a.expect(a.do(http.MethodDelete, "/v1/clusters/prod", token, "", nil), http.StatusAccepted)
	within(t, 2*time.Second, "the deletion on replica b", func() bool {
		return bytes.Equal(status(b, token), status(plain, token))
	})
}

// TestReadYourWrites: a replica that hears no announcement at all (its
// read model listens to another database) still serves its own writes at
// once: the write path drops what it changed before answering.
func TestReadYourWrites(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{readsDB: dbtest.New(t)})
	b.waitFresh()
	token := b.newTenant("initech")
	b.putHetznerCredential(token, "prod-credentials")
	b.expect(b.do(http.MethodPost, "/v1/clusters", token, "application/yaml", seedSpec(t)), http.StatusAccepted)
	phase := func() string {
		r := b.do(http.MethodGet, "/v1/clusters/prod/status", token, "", nil)
		b.expect(r, http.StatusOK)
		return fmt.Sprint(r.json(t)["phase"])
	}
	if p := phase(); p != "Pending" {
		t.Fatalf("phase %s", p)
	}
	b.expect(b.do(http.MethodDelete, "/v1/clusters/prod", token, "", nil), http.StatusAccepted)
	if p := phase(); p != "Deleting" {
		t.Fatalf("after DELETE on this replica, its next read says %s", p)
	}
	// A new cluster of the same name replaces the deleted one's status.
	if _, err := b.pool.Exec(context.Background(), `UPDATE operations SET state = 'succeeded'`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(context.Background(), `UPDATE clusters SET deleted_at = now(), phase = 'Deleted'`); err != nil {
		t.Fatal(err)
	}
	b.expect(b.do(http.MethodPost, "/v1/clusters", token, "application/yaml", seedSpec(t)), http.StatusAccepted)
	if p := phase(); p != "Pending" {
		t.Fatalf("after POST of a new cluster of that name, the next read says %s", p)
	}
}

// TestRevokedTokenFailsOnEveryReplica: a token revoked on replica a stops
// working on a at once and on b (which had it in memory) within
// milliseconds; an expired one fails without any announcement.
func TestRevokedTokenFailsOnEveryReplica(t *testing.T) {
	t.Parallel()
	a := setup(t)
	b := setupWith(t, setupOptions{dbURL: a.dbURL})
	a.waitFresh()
	b.waitFresh()
	admin := b.adminToken // b's setup rotated a's
	created := b.do(http.MethodPost, "/v1/tenants", admin, "application/json", []byte(`{"name":"initech"}`))
	b.expect(created, http.StatusCreated)
	newToken := func(name string, expires *time.Time) (string, string) {
		body := fmt.Sprintf(`{"name":%q}`, name)
		if expires != nil {
			body = fmt.Sprintf(`{"name":%q,"expiresAt":%q}`, name, expires.Format(time.RFC3339Nano))
		}
		r := b.do(http.MethodPost, "/v1/tenants/initech/tokens", admin, "application/json", []byte(body))
		b.expect(r, http.StatusCreated)
		m := r.json(t)
		return m["token"].(string), m["id"].(string)
	}
	works := func(x *bundle, tok string) bool {
		return x.do(http.MethodGet, "/v1/quota", tok, "", nil).status == http.StatusOK
	}
	token, id := newToken("ci", nil)
	for _, x := range []*bundle{a, b} {
		for range 2 { // the second use is served from the replica's memory
			if !works(x, token) {
				t.Fatal("a new token does not work")
			}
		}
	}
	a.expect(a.do(http.MethodDelete, "/v1/tenants/initech/tokens/"+id, admin, "", nil), http.StatusNoContent)
	if works(a, token) {
		t.Fatal("the revoked token still works on the replica that revoked it")
	}
	took := within(t, time.Second, "the revocation on replica b", func() bool { return !works(b, token) })
	t.Logf("the revocation reached replica b in %v", took)

	expires := time.Now().Add(1500 * time.Millisecond)
	short, _ := newToken("short", &expires)
	for range 2 { // the second use is served from the replica's memory
		if !works(b, short) {
			t.Fatal("a token that has not expired yet does not work")
		}
	}
	time.Sleep(time.Until(expires))
	if works(b, short) {
		t.Fatal("an expired token still works")
	}
}
