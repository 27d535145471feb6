package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"lok8s.dev/provisioner/internal/gomod"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/testenv"
)

// templatesWithInMemory is the template catalog plus the development-only
// inmemory provider (as make run uses it), whose DevCluster kinds the
// test management cluster does not serve: a provider that is not
// installed there.
func templatesWithInMemory(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	testenv.CopyTree(t, "../../templates", dir)
	testenv.CopyTree(t, "../../hack/dev/providers", filepath.Join(dir, "providers"))
	return dir
}

// TestPreflightFindsAMissingProvider: a spec for a provider the management
// cluster does not have fails before anything is applied, with a code and
// a remediation (SaaS default), or is a 422 at POST (a named management
// cluster); GET /v1/catalog says which providers each one really has.
func TestPreflightFindsAMissingProvider(t *testing.T) {
	t.Parallel()
	s := startService(t, options{templatesDir: templatesWithInMemory(t), namedClusters: []string{"mgmt.example.com"}})
	s.putCredential("dev-credentials", `{"provider":"inmemory"}`)
	dev, err := os.ReadFile("../../examples/dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s.submit(string(dev))
	failed := s.waitStatus("dev", 60*time.Second, func(st map[string]any) bool { return st["phase"] == "Failed" })
	e, _ := failed["error"].(map[string]any)
	if e["step"] != "preflight" || e["code"] != "ProviderNotInstalled" || e["retryable"] != true ||
		!strings.Contains(e["message"].(string), "DevCluster") || !strings.Contains(e["remediation"].(string), "install Cluster API and provider inmemory") {
		t.Fatalf("failure record: %v", failed["error"])
	}
	// Nothing was applied: no credentials Secret, no CAPI Cluster.
	for _, gvk := range []schema.GroupVersionKind{secretGVK, mgmt.ClusterGVK} {
		probe := &unstructured.Unstructured{}
		probe.SetGroupVersionKind(gvk)
		name := "dev"
		if gvk == secretGVK {
			name = "dev-credentials"
		}
		if err := s.env.Client.Get(context.Background(), client.ObjectKey{Namespace: s.namespace(), Name: name}, probe); !apierrors.IsNotFound(err) {
			t.Errorf("%s %s exists after a failed preflight (%v)", gvk.Kind, name, err)
		}
	}

	// On a named management cluster the POST itself is refused.
	named := strings.Replace(string(dev), "  cluster:\n    domain: dev.example.com\n",
		"  cluster:\n    domain: dev2.example.com\n    namespace: "+randomName("named-")+"\n  managementCluster:\n    domain: mgmt.example.com\n", 1)
	named = strings.Replace(named, "name: dev\n", "name: dev2\n", 1)
	named = strings.Replace(named, "spec:\n", "spec:\n  credentials:\n    secretName: dev-credentials\n", 1)
	status, body := s.do(http.MethodPost, "/v1/clusters", "", "application/yaml", []byte(named))
	if status != http.StatusUnprocessableEntity || !strings.Contains(string(body), `"field":"spec.managementCluster.domain"`) ||
		!strings.Contains(string(body), "does not have provider inmemory installed") {
		t.Fatalf("named management cluster without the provider: %d %s", status, body)
	}

	// The catalog says what each management cluster has.
	var cat struct {
		ManagementClusters []struct {
			Domain    string `json:"domain"`
			Reachable bool   `json:"reachable"`
			Providers []struct {
				Name      string   `json:"name"`
				Installed bool     `json:"installed"`
				Missing   []string `json:"missing"`
			} `json:"providers"`
		} `json:"managementClusters"`
	}
	_, raw := s.do(http.MethodGet, "/v1/catalog", "", "", nil)
	if err := json.Unmarshal(raw, &cat); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, mc := range cat.ManagementClusters {
		for _, p := range mc.Providers {
			seen[mc.Domain+"/"+p.Name] = strings.Join(p.Missing, ",")
			if p.Installed {
				seen[mc.Domain+"/"+p.Name] = "installed"
			}
		}
	}
	for _, domain := range []string{"", "mgmt.example.com"} {
		if seen[domain+"/hetzner"] != "installed" || seen[domain+"/aws"] != "installed" || !strings.Contains(seen[domain+"/inmemory"], "DevCluster") {
			t.Fatalf("catalog's management clusters: %v (%s)", seen, raw)
		}
	}
}

// TestPreflightChecksTheProviderRelease: with clusterctl's inventory on
// the management cluster, a provider of another release series than the
// templates are written for (CAPH v1.0 where they need v1.1) fails the
// preflight with ProviderVersionUnsupported; once upgraded, a retry goes
// on and the preflight names what is installed.
func TestPreflightChecksTheProviderRelease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env, err := testenv.Start(ctx)
	if err != nil {
		t.Fatalf("management cluster: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	dirs, err := gomod.Dirs(ctx, testenv.CAPIModule+"@"+testenv.CAPIVersion)
	if err != nil {
		t.Fatal(err)
	}
	crd := filepath.Join(dirs[testenv.CAPIModule+"@"+testenv.CAPIVersion], "cmd", "clusterctl", "config", "crd", "bases", "clusterctl.cluster.x-k8s.io_providers.yaml")
	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{Paths: []string{crd}, ErrorIfPathMissing: true}); err != nil {
		t.Fatal(err)
	}
	inventory := func(name, providerName, typ, version string) *unstructured.Unstructured {
		p := &unstructured.Unstructured{}
		p.SetGroupVersionKind(mgmt.ClusterctlProviderGVK)
		p.SetNamespace("default")
		p.SetName(name)
		p.Object["providerName"], p.Object["type"], p.Object["version"] = providerName, typ, version
		return p
	}
	for _, p := range []*unstructured.Unstructured{inventory("cluster-api", "cluster-api", "CoreProvider", "v1.14.2"), inventory("infrastructure-hetzner", "hetzner", "InfrastructureProvider", "v1.0.3")} {
		if err := env.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}

	s := startService(t, options{mgmt: env})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	s.submit(seedSpecWithoutAddons(t))
	failed := s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return st["phase"] == "Failed" })
	if e, _ := failed["error"].(map[string]any); e["step"] != "preflight" || e["code"] != "ProviderVersionUnsupported" || e["reason"] != "v1.0.3" ||
		!strings.Contains(e["remediation"].(string), "upgrade infrastructure-hetzner") {
		t.Fatalf("failure record: %v", failed["error"])
	}

	hetzner := &unstructured.Unstructured{}
	hetzner.SetGroupVersionKind(mgmt.ClusterctlProviderGVK)
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "infrastructure-hetzner"}, hetzner); err != nil {
		t.Fatal(err)
	}
	hetzner.Object["version"] = "v1.1.8"
	if err := env.Client.Update(ctx, hetzner); err != nil {
		t.Fatal(err)
	}
	s.mustDo(http.MethodPost, "/v1/clusters/prod/retry", "", "", nil, http.StatusAccepted)
	st := s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool {
		return stepState(st, "control-plane-initialized") == "running" || st["phase"] == "Failed"
	})
	if msg, _ := stepOf(st, "preflight")["message"].(string); msg != "installed: cluster-api v1.14.2, infrastructure-hetzner v1.1.8" {
		t.Fatalf("preflight after the upgrade: %v (%v)", stepOf(st, "preflight"), st["error"])
	}
}
