package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// hostedBody is POST /api/clusters's body as the lok8s CLI's
// kubehz::build_cluster_payload writes it.
func hostedBody(domain, provider, region string, replicas int) []byte {
	body, _ := json.Marshal(map[string]any{"domain": domain, "kind": "Capi", "provider": provider, "region": region,
		"kubernetesVersion": "v1.34.2", "controlPlaneReplicas": replicas, "hosting": "hosted", "access": "none"})
	return body
}

const hetznerProfile = `{"credential":"hz-hcloud","config":{"sshKeyName":"ops"},"controlPlaneType":"cpx31",
  "workers":{"general":{"replicas":2,"type":"cpx31"}},"bootstrap":["cilium","ccm"]}`

func TestHostedAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	token := b.newTenant("hz")
	b.putHetznerCredential(token, "hz-hcloud")

	// No profile yet: a clear 422 on provider.
	p := problem(t, b.do(http.MethodPost, "/api/clusters", token, "application/json", hostedBody("a.example.com", "hetzner", "fsn1", 1)), http.StatusUnprocessableEntity)
	if msg := fieldMessages(t, p)["provider"]; !strings.Contains(msg, "no hosted profile") {
		t.Fatalf("provider: %q", msg)
	}
	// The admin sets the tenant's profile; the credential must be the tenant's.
	p = problem(t, b.do(http.MethodPut, "/v1/tenants/hz/hosted-profiles/hetzner", b.adminToken, "application/json",
		[]byte(strings.Replace(hetznerProfile, "hz-hcloud", "nope", 1))), http.StatusUnprocessableEntity)
	if msg := fieldMessages(t, p)["credential"]; !strings.Contains(msg, `no credential "nope"`) {
		t.Fatalf("credential: %q", msg)
	}
	problem(t, b.do(http.MethodPut, "/v1/tenants/hz/hosted-profiles/hetzner", token, "application/json", []byte(hetznerProfile)), http.StatusForbidden)
	b.expect(b.do(http.MethodPut, "/v1/tenants/hz/hosted-profiles/hetzner", b.adminToken, "application/json", []byte(hetznerProfile)), http.StatusOK)
	b.expect(b.do(http.MethodGet, "/v1/tenants/hz/hosted-profiles/hetzner", b.adminToken, "", nil), http.StatusOK)
	problem(t, b.do(http.MethodGet, "/v1/tenants/hz/hosted-profiles/aws", b.adminToken, "", nil), http.StatusNotFound)

	// Create; the answer has the id the CLI reads.
	r := b.do(http.MethodPost, "/api/clusters", token, "application/json", hostedBody("a.example.com", "hetzner", "fsn1", 1))
	b.expect(r, http.StatusAccepted)
	created := r.json(t)
	id, _ := created["id"].(string)
	if id == "" || created["status"] != "Pending" || created["name"] != "a-example-com" || created["region"] != "fsn1" {
		t.Fatalf("created: %s", r.body)
	}
	// The same create again: the same cluster, not a second one.
	r = b.do(http.MethodPost, "/api/clusters", token, "application/json", hostedBody("a.example.com", "hetzner", "fsn1", 1))
	b.expect(r, http.StatusOK)
	if r.json(t)["id"] != id {
		t.Fatalf("repeated create: %s", r.body)
	}
	// The same domain with other parameters: a conflict.
	p = problem(t, b.do(http.MethodPost, "/api/clusters", token, "application/json", hostedBody("a.example.com", "hetzner", "nbg1", 1)), http.StatusConflict)
	if !strings.Contains(p["detail"].(string), id) {
		t.Errorf("conflict does not name the cluster: %v", p["detail"])
	}
	if n := b.count(`SELECT count(*) FROM clusters WHERE deleted_at IS NULL`); n != 1 {
		t.Fatalf("%d clusters", n)
	}

	// The one implementation: /v1 sees the cluster, its spec in the current shape.
	r = b.do(http.MethodGet, "/v1/clusters/a-example-com", token, "", nil)
	b.expect(r, http.StatusOK)
	spec := r.json(t)["spec"].(map[string]any)["spec"].(map[string]any)
	if spec["provider"].(map[string]any)["credentials"].(map[string]any)["secretRef"] != "hz-hcloud" ||
		spec["workers"].(map[string]any)["general"] == nil {
		t.Errorf("the hosted spec: %v", spec)
	}

	status := func() string {
		t.Helper()
		r := b.do(http.MethodGet, "/api/clusters/"+id, token, "", nil)
		b.expect(r, http.StatusOK)
		return r.json(t)["status"].(string)
	}
	for phase, want := range map[string]string{"Provisioning": "Provisioning", "Provisioned": "Running", "Failed": "Failed"} {
		if _, err := b.pool.Exec(t.Context(), `UPDATE clusters SET phase = $1`, phase); err != nil {
			t.Fatal(err)
		}
		if got := status(); got != want {
			t.Errorf("phase %s: status %q, want %q", phase, got, want)
		}
	}

	// Lookup by domain: an array, [] when none.
	r = b.do(http.MethodGet, "/api/clusters?domain=a.example.com", token, "", nil)
	b.expect(r, http.StatusOK)
	var list []map[string]any
	if err := json.Unmarshal(r.body, &list); err != nil || len(list) != 1 || list[0]["id"] != id {
		t.Fatalf("by domain: %s", r.body)
	}
	r = b.do(http.MethodGet, "/api/clusters?domain=none.example.com", token, "", nil)
	if b.expect(r, http.StatusOK); strings.TrimSpace(string(r.body)) != "[]" {
		t.Fatalf("none: %s", r.body)
	}
	problem(t, b.do(http.MethodGet, "/api/clusters", token, "", nil), http.StatusUnprocessableEntity)
	problem(t, b.do(http.MethodGet, "/api/clusters?domain=a.example.com&name=x", token, "", nil), http.StatusBadRequest)

	// Another tenant sees none of it.
	other := b.newTenant("other")
	problem(t, b.do(http.MethodGet, "/api/clusters/"+id, other, "", nil), http.StatusNotFound)
	r = b.do(http.MethodGet, "/api/clusters?domain=a.example.com", other, "", nil)
	if b.expect(r, http.StatusOK); strings.TrimSpace(string(r.body)) != "[]" {
		t.Fatalf("other tenant: %s", r.body)
	}
	problem(t, b.do(http.MethodDelete, "/api/clusters/"+id, other, "", nil), http.StatusNotFound)

	// The kubeconfig is /v1's: none yet.
	problem(t, b.do(http.MethodGet, "/api/clusters/"+id+"/kubeconfig", token, "", nil), http.StatusConflict)
	problem(t, b.do(http.MethodGet, "/api/clusters/not-an-id", token, "", nil), http.StatusNotFound)
	problem(t, b.do(http.MethodGet, "/api/clusters/"+id, "", "", nil), http.StatusUnauthorized)

	// Delete by domain, then by id (a second cluster).
	r = b.do(http.MethodDelete, "/api/clusters?domain=a.example.com", token, "", nil)
	b.expect(r, http.StatusAccepted)
	if err := json.Unmarshal(r.body, &list); err != nil || len(list) != 1 || list[0]["status"] != "Deleting" {
		t.Fatalf("delete by domain: %s", r.body)
	}
	problem(t, b.do(http.MethodDelete, "/api/clusters?domain=none.example.com", token, "", nil), http.StatusNotFound)
	r = b.do(http.MethodPost, "/api/clusters", token, "application/json", hostedBody("b.example.com", "hetzner", "hel1", 3))
	b.expect(r, http.StatusAccepted)
	second := r.json(t)["id"].(string)
	r = b.do(http.MethodDelete, "/api/clusters/"+second, token, "", nil)
	b.expect(r, http.StatusAccepted)
	if r.json(t)["status"] != "Deleting" {
		t.Fatalf("delete by id: %s", r.body)
	}

	// register: a documented refusal, with no token needed to hear it.
	p = problem(t, b.do(http.MethodPost, "/api/clusters/register", "", "application/json",
		[]byte(`{"domain":"self.example.com","fingerprint":"MD5:aa:bb"}`)), http.StatusNotImplemented)
	if p["type"] != "https://lok8s.dev/problems/not-implemented" {
		t.Errorf("register: %v", p)
	}
}

// The body's problems name its own fields, and the CLI's quirks are met:
// its provider may be the whole spec.provider object, whose region wins.
func TestHostedCreateProblems(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putHetznerCredential(b.adminToken, "hz-hcloud")
	b.expect(b.do(http.MethodPut, "/v1/tenants/acme/hosted-profiles/hetzner", b.adminToken, "application/json", []byte(hetznerProfile)), http.StatusOK)
	for _, tc := range []struct {
		name   string
		body   string
		status int
		field  string
	}{
		{"kind", `{"domain":"k.example.com","kind":"KubeOne","kubernetesVersion":"v1.34.2"}`, http.StatusUnprocessableEntity, "kind"},
		{"unknown field", `{"domain":"k.example.com","kubernetesVersion":"v1.34.2","zone":"x"}`, http.StatusUnprocessableEntity, "zone"},
		{"region", string(hostedBody("k.example.com", "hetzner", "mars1", 1)), http.StatusUnprocessableEntity, "region"},
		{"replicas", string(hostedBody("k.example.com", "hetzner", "fsn1", 2)), http.StatusUnprocessableEntity, "controlPlaneReplicas"},
		{"version", `{"domain":"k.example.com","region":"fsn1","kubernetesVersion":"v1.31.10"}`, http.StatusUnprocessableEntity, "kubernetesVersion"},
		{"domain", `{"domain":"Not A Domain","kubernetesVersion":"v1.34.2"}`, http.StatusUnprocessableEntity, "domain"},
		{"unknown provider", string(hostedBody("k.example.com", "linode", "fsn1", 1)), http.StatusUnprocessableEntity, "provider"},
	} {
		p := problem(t, b.do(http.MethodPost, "/api/clusters", b.adminToken, "application/json", []byte(tc.body)), tc.status)
		if fieldMessages(t, p)[tc.field] == "" {
			t.Errorf("%s: no error on %s: %v", tc.name, tc.field, p["errors"])
		}
	}
	// spec.provider read as the CLI reads it: the object's text.
	r := b.do(http.MethodPost, "/api/clusters", b.adminToken, "application/json",
		hostedBody("obj.example.com", "name: hetzner\nconfig:\n  region: hel1\n  sshKeyName: mine\n", "fsn1", 1))
	b.expect(r, http.StatusAccepted)
	if got := r.json(t); got["provider"] != "hetzner" || got["region"] != "hel1" {
		t.Errorf("provider object: %s", r.body)
	}
}
