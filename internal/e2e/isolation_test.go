package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/mgmt"
)

// TestTenantsDoNotCollideOnANamedManagementCluster: two tenants naming
// the same management cluster, namespace and cluster name. The second is
// refused at POST, naming spec.cluster.namespace (the namespace is the
// first tenant's); the first tenant's objects are untouched. A namespace
// no tenant has claimed but holding an object lok8s did not create: the
// service does not take it over (the credentials step fails with
// ObjectNotOwned) and, deleting that cluster, leaves it alone.
func TestTenantsDoNotCollideOnANamedManagementCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := startService(t, options{namedClusters: []string{"shared.example.com"}})
	ns := randomName("shared-")
	onShared := func(namespace string) string {
		spec := strings.Replace(seedSpecWithoutAddons(t), "    namespace: default\n", "    namespace: "+namespace+"\n", 1)
		return strings.Replace(spec, "  credentials:\n", "  managementCluster:\n    domain: shared.example.com\n  credentials:\n", 1)
	}
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	s.submit(onShared(ns))
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool {
		return stepState(st, "control-plane-initialized") == "running" || st["phase"] == "Failed"
	})

	// A second tenant, the same placement.
	_, rival := s.newTenant("rival-")
	if status, body := s.do(http.MethodPut, "/v1/credentials/prod-credentials", rival, "application/json",
		[]byte(`{"provider":"hetzner","hcloudToken":"rival-token"}`)); status != http.StatusCreated {
		t.Fatalf("rival's credential: %d %s", status, body)
	}
	status, body := s.do(http.MethodPost, "/v1/clusters", rival, "application/yaml", []byte(onShared(ns)))
	if status != http.StatusUnprocessableEntity || !strings.Contains(string(body), `"field":"spec.cluster.namespace"`) ||
		!strings.Contains(string(body), "belongs to another tenant") {
		t.Fatalf("rival in the first tenant's namespace: %d %s", status, body)
	}
	cluster := s.get(mgmt.ClusterGVK, ns, "prod")
	secret := s.get(secretGVK, ns, "prod-credentials")
	if owner := cluster.GetLabels()[mgmt.LabelTenant]; owner == "" || secret.GetLabels()[mgmt.LabelTenant] != owner {
		t.Fatalf("owner labels: cluster %v, secret %v", cluster.GetLabels(), secret.GetLabels())
	}
	if hc := nested(t, secret, "data").(map[string]any)["hcloud"]; hc != "aGNsb3VkLWUyZS10b2tlbi0zMWM0" { // base64 of hcloudToken
		t.Fatalf("the first tenant's Secret was overwritten: %v", hc)
	}

	// A namespace nobody claimed, with a Secret lok8s did not create.
	foreign := randomName("foreign-")
	if err := s.env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: foreign}}); err != nil {
		t.Fatal(err)
	}
	theirs := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: foreign, Name: "prod-credentials"}, Data: map[string][]byte{"hcloud": []byte("someone-elses")}}
	if err := s.env.Client.Create(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	if status, body := s.do(http.MethodPost, "/v1/clusters", rival, "application/yaml", []byte(onShared(foreign))); status != http.StatusAccepted {
		t.Fatalf("rival in a free namespace: %d %s", status, body)
	}
	var failed map[string]any
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		_, raw := s.do(http.MethodGet, "/v1/clusters/prod/status", rival, "", nil)
		if strings.Contains(string(raw), `"phase":"Failed"`) {
			if err := json.Unmarshal(raw, &failed); err != nil {
				t.Fatal(err)
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if e, _ := failed["error"].(map[string]any); e["code"] != "ObjectNotOwned" || e["step"] != "credentials" || e["retryable"] != false {
		t.Fatalf("taking over a Secret lok8s did not create: %v", failed)
	}
	if s.mustDo(http.MethodDelete, "/v1/clusters/prod", rival, "", nil, http.StatusAccepted) == nil {
		t.Fatal("delete")
	}
	deadline = time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if _, raw := s.do(http.MethodGet, "/v1/clusters/prod/status", rival, "", nil); strings.Contains(string(raw), `"phase":"Deleted"`) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	var kept corev1.Secret
	if err := s.env.Client.Get(ctx, client.ObjectKey{Namespace: foreign, Name: "prod-credentials"}, &kept); err != nil ||
		string(kept.Data["hcloud"]) != "someone-elses" || len(kept.Labels) != 0 {
		t.Fatalf("the foreign Secret after the rival's delete: %v %v %v", err, kept.Labels, kept.Data)
	}
	// And the first tenant's cluster is still there, still its own.
	if c := s.get(mgmt.ClusterGVK, ns, "prod"); c.GetLabels()[mgmt.LabelTenant] != cluster.GetLabels()[mgmt.LabelTenant] {
		t.Fatalf("first tenant's Cluster relabelled: %v", c.GetLabels())
	}
}
