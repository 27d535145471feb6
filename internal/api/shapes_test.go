package api_test

import (
	"encoding/json"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// upstreamSpec reads a file of the spec package's testdata: a document in
// the lok8s CLI's current shape (spec.provider, top-level controlPlane and
// workers), or ignored-fields.yaml, what the service ignores in each.
func upstreamSpec(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("../spec/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// putCredentials stores the credentials the upstream-shaped specs name.
func (b *bundle) putUpstreamCredentials(token string) {
	b.t.Helper()
	for _, name := range []string{"shop-hcloud", "ledger-hcloud", "wiki-hcloud"} {
		b.putHetznerCredential(token, name)
	}
	b.expect(b.do(http.MethodPut, "/v1/credentials/billing-aws", token, "application/json",
		[]byte(`{"provider":"aws","accessKeyId":"AKIAEXAMPLE","secretAccessKey":"s"}`)), http.StatusCreated)
	b.expect(b.do(http.MethodPut, "/v1/credentials/wiki-git", token, "application/json",
		[]byte(`{"provider":"git","token":"t"}`)), http.StatusCreated)
}

// Specs written as the lok8s CLI writes them now pass a dry run against a
// service that has their management cluster, in their own shape, with
// every field the service ignores named in warnings and Warning headers.
func TestUpstreamShapesDryRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putUpstreamCredentials(b.adminToken)
	// The spec package's list of what each document has ignored.
	var ignored map[string][]string
	if err := yaml.Unmarshal(upstreamSpec(t, "ignored-fields.yaml"), &ignored); err != nil || len(ignored) == 0 {
		t.Fatalf("ignored-fields.yaml: %v", err)
	}
	for file, warnings := range ignored {
		t.Run(file, func(t *testing.T) {
			r := b.do(http.MethodPost, "/v1/clusters?dryRun=true", b.adminToken, "application/yaml", upstreamSpec(t, file))
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			var view struct {
				Valid    bool                       `json:"valid"`
				Spec     map[string]json.RawMessage `json:"spec"`
				Warnings []string                   `json:"warnings"`
			}
			if err := json.Unmarshal(r.body, &view); err != nil {
				t.Fatal(err)
			}
			var specFields map[string]json.RawMessage
			if err := json.Unmarshal(view.Spec["spec"], &specFields); err != nil {
				t.Fatal(err)
			}
			if _, ok := specFields["provider"]; !ok || specFields["hcloud"] != nil || specFields["aws"] != nil {
				t.Errorf("dry run's spec is not in the submitted shape: %s", view.Spec["spec"])
			}
			var fields []string
			for _, w := range view.Warnings {
				field, _, _ := strings.Cut(w, ": ignored: ")
				fields = append(fields, field)
			}
			if !reflect.DeepEqual(fields, warnings) {
				t.Errorf("warnings %v, want fields %v", view.Warnings, warnings)
			}
			headers := r.header.Values("Warning")
			if len(headers) != len(warnings) {
				t.Fatalf("Warning headers %q, want %d", headers, len(warnings))
			}
			for i, h := range headers {
				if !strings.HasPrefix(h, `299 - "`+warnings[i]+": ignored: ") {
					t.Errorf("Warning header %q", h)
				}
			}
		})
	}
}

// What only the service knows is reported on the document's own fields.
func TestUpstreamShapeProblems(t *testing.T) {
	t.Parallel()
	b := setup(t)
	spec := string(upstreamSpec(t, "upstream-hetzner.yaml"))
	for _, tc := range []struct {
		name, doc, field, message string
	}{
		{"unknown provider", strings.Replace(spec, "name: hetzner", "name: linode", 1),
			"spec.provider.name", `unknown provider "linode": this service provides hetzner, aws`},
		{"missing credential", spec,
			"spec.provider.credentials.secretRef", `no credential "shop-hcloud": create it first with PUT /v1/credentials/shop-hcloud`},
		// The CLI's own examples (v1.31.12) and fixtures (v1.31.10) name a
		// release the hetzner provider's templates do not support.
		{"kubernetes release", strings.Replace(spec, `version: "v1.33.4"`, `version: "v1.31.12"`, 1),
			"spec.kubernetes.version", "provider hetzner supports Kubernetes v1.32 to v1.36; v1.31.12 is outside that range"},
		{"unknown management cluster", strings.Replace(spec, "domain: mgmt.example.com", "domain: elsewhere.example.com", 1),
			"spec.managementCluster.domain", `no management cluster "elsewhere.example.com" is configured on this service`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := problem(t, b.do(http.MethodPost, "/v1/clusters?dryRun=true", b.adminToken, "application/yaml", []byte(tc.doc)), http.StatusUnprocessableEntity)
			if got := fieldMessages(t, p)[tc.field]; got != tc.message {
				t.Errorf("%s: %q, want %q (all: %v)", tc.field, got, tc.message, p["errors"])
			}
		})
	}
}

// GET returns a spec in the shape it was submitted in, defaults filled
// in as that shape has them; a merge patch applies to that shape too.
func TestGetReturnsTheSubmittedShape(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putUpstreamCredentials(b.adminToken)
	b.putHetznerCredential(b.adminToken, "prod-credentials")
	r := b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", upstreamSpec(t, "upstream-hetzner.yaml"))
	b.expect(r, http.StatusAccepted)
	if len(r.header.Values("Warning")) != 2 {
		t.Errorf("create's Warning headers: %q", r.header.Values("Warning"))
	}
	b.expect(b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", seedSpec(t)), http.StatusAccepted)

	specOf := func(name string) map[string]any {
		t.Helper()
		r := b.do(http.MethodGet, "/v1/clusters/"+name, b.adminToken, "", nil)
		b.expect(r, http.StatusOK)
		if w := r.header.Values("Warning"); len(w) > 0 {
			t.Errorf("GET warns: %q", w)
		}
		return r.json(t)["spec"].(map[string]any)["spec"].(map[string]any)
	}
	shop := specOf("shop")
	provider, _ := shop["provider"].(map[string]any)
	if provider["name"] != "hetzner" || provider["config"].(map[string]any)["region"] != "nbg1" ||
		provider["credentials"].(map[string]any)["secretRef"] != "shop-hcloud" || shop["hcloud"] != nil || shop["credentials"] != nil {
		t.Errorf("shop's spec is not in the current shape: %v", shop)
	}
	if cp := shop["controlPlane"].(map[string]any); cp["replicas"] != 1.0 {
		t.Errorf("current shape's control plane defaulted to %v machines, want 1", cp["replicas"])
	}
	if managed := shop["managementCluster"].(map[string]any); managed["local"] != nil {
		t.Errorf("an ignored field was kept: %v", managed)
	}
	prod := specOf("prod")
	if prod["hcloud"] == nil || prod["provider"] != nil {
		t.Errorf("prod's spec is not in the seed's shape: %v", prod)
	}

	// A merge patch of the current shape, after the provisioning ends.
	if _, err := b.pool.Exec(t.Context(), `UPDATE operations SET state = 'succeeded'`); err != nil {
		t.Fatal(err)
	}
	b.expect(b.do(http.MethodPatch, "/v1/clusters/shop", b.adminToken, "application/merge-patch+json",
		[]byte(`{"spec":{"workers":{"web":{"replicas":3}}}}`)), http.StatusAccepted)
	shop = specOf("shop")
	if got := shop["workers"].(map[string]any)["web"].(map[string]any)["replicas"]; got != 3.0 || shop["provider"] == nil {
		t.Errorf("after the patch: %v", shop)
	}
	// An immutable field is named as the document has it.
	if _, err := b.pool.Exec(t.Context(), `UPDATE operations SET state = 'succeeded'`); err != nil {
		t.Fatal(err)
	}
	p := problem(t, b.do(http.MethodPatch, "/v1/clusters/shop", b.adminToken, "application/merge-patch+json",
		[]byte(`{"spec":{"provider":{"config":{"region":"hel1"}}}}`)), http.StatusUnprocessableEntity)
	if msg := fieldMessages(t, p)["spec.provider.config.region"]; !strings.HasPrefix(msg, "is immutable") {
		t.Errorf("region change: %v", p["errors"])
	}
}
