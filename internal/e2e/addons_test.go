package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/addons"
	"lok8s.dev/provisioner/internal/addons/addonstest"
	"lok8s.dev/provisioner/internal/testenv"
)

// addonWorld is what an addon test needs: a chart repository on loopback
// serving the test charts, a catalogue of cilium, ccm, cert-manager and
// flux pointing at it, the operator's overrides, and a workload cluster.
// cilium's chart runs a DaemonSet and the ccm's a Deployment, which the
// cloud stand-in waits for before it makes Nodes Ready and gives them
// providerIDs.
type addonWorld struct {
	catalogDir, valuesDir string
	// namespace is where cilium and the ccm run on the workload cluster.
	namespace string
	workload  *testenv.Env
}

// newAddonWorld gives the test a workload cluster of its own (a second
// envtest), so releases and Helm's stored values of parallel tests never
// meet; the addons run where the catalogue says in production (kube-system).
func newAddonWorld(t *testing.T) addonWorld {
	t.Helper()
	env, err := testenv.Start(context.Background())
	if err != nil {
		t.Fatalf("workload cluster: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return buildAddonWorld(t, env, "kube-system")
}

// newSharedAddonWorld runs the workload cluster's addons on the shared
// envtest (the management cluster), each test in namespaces of its own:
// what every provisioning test needs, since no cluster becomes Ready
// without its CNI and CCM.
func newSharedAddonWorld(t *testing.T) addonWorld {
	t.Helper()
	return buildAddonWorld(t, testenv.Shared(t), randomName("addons-"))
}

func buildAddonWorld(t *testing.T, workload *testenv.Env, namespace string) addonWorld {
	t.Helper()
	charts := "../addons/testdata/charts/"
	repo, err := addonstest.Serve(t.TempDir(),
		addonstest.Chart{Dir: charts + "probe", Version: "0.1.0"},
		addonstest.Chart{Dir: charts + "cni-probe", Version: "0.1.0"},
		addonstest.Chart{Dir: charts + "ccm-probe", Version: "1.0.0"},
		addonstest.Chart{Dir: charts + "ccm-probe", Version: "0.9.0"},
		addonstest.Chart{Dir: charts + "gitops-probe", Version: "0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(repo.Close)
	w := addonWorld{catalogDir: t.TempDir(), valuesDir: t.TempDir(), namespace: namespace, workload: workload}
	write := func(dir, name, body string) {
		certManagerNS := "cert-manager"
		if namespace != "kube-system" {
			certManagerNS = namespace + "-cm"
		}
		body = strings.ReplaceAll(strings.ReplaceAll(body, "CERT_MANAGER_NS", certManagerNS), "NAMESPACE", namespace)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(fmt.Sprintf(body, repo.URL)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Each layer of the values chain sets the keys it should win.
	write(w.catalogDir, "cilium.yaml", `
name: cilium
role: cni
order: 10
namespace: NAMESPACE
chart: {repository: %s, name: cni-probe, version: 0.1.0}
values: {layer: addon, operatorWins: addon, providerWins: addon, addonOnly: addon}
providers:
  hetzner:
    values: {layer: provider, operatorWins: provider, providerWins: provider, apiServer: "${API_SERVER_HOST}:${API_SERVER_PORT}"}
`)
	write(w.catalogDir, "ccm.yaml", `
name: ccm
role: ccm
order: 20
namespace: NAMESPACE
chart: {repository: %[1]s, name: ccm-probe, version: 0.9.0, versions: {v1.34: 1.0.0}}
providers:
  hetzner:
    values:
      networking: {enabled: "${HCLOUD_NETWORK_ENABLED}", clusterCIDR: "${POD_CIDR}"}
    secrets:
      - name: hcloud
        namespace: NAMESPACE
        data:
          token: {credential: hcloudToken}
          network: {variable: HCLOUD_NETWORK}
`)
	write(w.catalogDir, "cert-manager.yaml", `
name: cert-manager
order: 30
namespace: CERT_MANAGER_NS
chart: {repository: %s, name: probe, version: 0.1.0}
`)
	write(w.catalogDir, "flux.yaml", `
name: flux
order: 40
namespace: flux-system
chart: {repository: %s, name: gitops-probe, version: 0.1.0}
`)
	write(w.valuesDir, "cilium.yaml", "# %s\nlayer: operator\noperatorWins: operator\n")
	return w
}

func (w addonWorld) options() options {
	return options{addonsDir: w.catalogDir, addonValuesDir: w.valuesDir, workload: w.workload, addonNamespace: w.namespace}
}

func addonSpec(t *testing.T, certManager string) string {
	t.Helper()
	return strings.Replace(seedSpec(t), `  bootstrap:
    - cilium
    - ccm
    - cert-manager
`, `  bootstrap:
    - name: cilium
      values: {layer: cluster}
    - ccm
    - `+certManager+`
`, 1)
}

func releaseValues(t *testing.T, kubeconfig []byte, namespace, release string) map[string]any {
	t.Helper()
	inst, err := addons.NewInstaller(addons.Config{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	v, err := inst.ReleaseValues(context.Background(), kubeconfig, namespace, release)
	if err != nil {
		t.Fatalf("release %s/%s: %v", namespace, release, err)
	}
	return v
}

// startAddonWorld starts the service on a new addonWorld, with the seed
// spec's hcloud credential put.
func startAddonWorld(t *testing.T) (addonWorld, *service) {
	t.Helper()
	w := newAddonWorld(t)
	s := startService(t, w.options())
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	return w, s
}

// TestAddonsInstalledWithValuesChain provisions with
// bootstrap: [cilium, ccm, cert-manager]: the releases exist on the
// workload cluster in order, Helm's stored values follow the chain (addon <
// provider < operator < spec), the ccm's Secret carries the credential,
// and the status shows each addon installed with its chart version.
func TestAddonsInstalledWithValuesChain(t *testing.T) {
	t.Parallel()
	w, s := startAddonWorld(t)
	provisionAndFinish(t, s, "prod", addonSpec(t, "cert-manager"))

	st := s.mustDo(http.MethodGet, "/v1/clusters/prod/status", "", "", nil, http.StatusOK)
	var got []string
	for _, a := range st["addons"].([]any) {
		m := a.(map[string]any)
		got = append(got, fmt.Sprintf("%s:%s:%s", m["name"], m["state"], m["version"]))
	}
	// flux: the gitops step's controllers (the seed spec asks for flux).
	if strings.Join(got, " ") != "cilium:installed:0.1.0 ccm:installed:1.0.0 cert-manager:installed:0.1.0 flux:installed:0.1.0" {
		t.Fatalf("addons in status: %v", got)
	}
	if stepState(st, "addons") != "succeeded" {
		t.Fatalf("bootstrap step: %v", stepOf(st, "addons"))
	}

	kc := w.workload.Kubeconfig()
	cilium := releaseValues(t, kc, "kube-system", "cilium")
	host := strings.TrimPrefix(w.workload.Config.Host, "https://")
	for key, want := range map[string]any{
		"layer": "cluster", "operatorWins": "operator", "providerWins": "provider", "addonOnly": "addon",
		"apiServer": strings.TrimSuffix(host, "/"),
	} {
		if cilium[key] != want {
			t.Errorf("cilium values %s = %v, want %v (all: %v)", key, cilium[key], want, cilium)
		}
	}
	// The ccm's values follow the rendered cluster (capi.Catalog.Variables):
	// the seed's private network is on and its pods are in 10.244.0.0/16,
	// inside the network's range (docs/providers.md).
	ccm := releaseValues(t, kc, "kube-system", "ccm")
	if n, _ := ccm["networking"].(map[string]any); n["enabled"] != true || n["clusterCIDR"] != "10.244.0.0/16" {
		t.Errorf("ccm networking values: %v", ccm["networking"])
	}
	releaseValues(t, kc, "cert-manager", "cert-manager")

	var secret corev1.Secret
	if err := w.workload.Client.Get(context.Background(), client.ObjectKey{Namespace: "kube-system", Name: "hcloud"}, &secret); err != nil {
		t.Fatalf("ccm secret: %v", err)
	}
	if string(secret.Data["token"]) != hcloudToken || string(secret.Data["network"]) != "prod" {
		t.Fatalf("ccm secret keys: token ok=%v network=%q", string(secret.Data["token"]) == hcloudToken, secret.Data["network"])
	}
}

// TestFailingAddonThenFixed makes cert-manager's chart fail: the cluster
// ends Failed naming the addon with Helm's message; fixing the values with
// a PATCH runs an update whose bootstrap installs it.
func TestFailingAddonThenFixed(t *testing.T) {
	t.Parallel()
	_, s := startAddonWorld(t)
	s.submit(addonSpec(t, "{name: cert-manager, values: {fail: true}}"))
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return stepState(st, "control-plane-initialized") == "running" })
	s.playCloud("prod")
	failed := s.waitStatus("prod", 90*time.Second, func(st map[string]any) bool { return st["phase"] == "Failed" || st["phase"] == "Provisioned" })
	if failed["phase"] != "Failed" || !strings.Contains(failed["message"].(string), "addon cert-manager") ||
		!strings.Contains(failed["message"].(string), "boom: the probe chart was told to fail") {
		t.Fatalf("failing chart: %v %v", failed["phase"], failed["message"])
	}
	states := map[string]string{}
	for _, a := range failed["addons"].([]any) {
		m := a.(map[string]any)
		states[m["name"].(string)] = m["state"].(string)
		if m["name"] == "cert-manager" && !strings.Contains(m["message"].(string), "boom") {
			t.Errorf("cert-manager's message: %v", m["message"])
		}
	}
	if states["cilium"] != "installed" || states["ccm"] != "installed" || states["cert-manager"] != "failed" {
		t.Fatalf("addon states: %v", states)
	}

	status, body := s.patch("prod", `{"spec":{"bootstrap":[{"name":"cilium","values":{"layer":"cluster"}},"ccm",{"name":"cert-manager","values":{"fail":false}}]}}`)
	if status != http.StatusAccepted {
		t.Fatalf("fix: %d %s", status, body)
	}
	s.finishUpdate("prod")
	done := s.mustDo(http.MethodGet, "/v1/clusters/prod/status", "", "", nil, http.StatusOK)
	for _, a := range done["addons"].([]any) {
		if m := a.(map[string]any); m["state"] != "installed" {
			t.Fatalf("after the fix: %v", done["addons"])
		}
	}
}

var gitRepositoryGVK = schema.GroupVersionKind{Group: "source.toolkit.fluxcd.io", Version: "v1", Kind: "GitRepository"}

// playFlux does what Flux's source controller would once it fetched the
// repository: it reports the GitRepository ready. It returns false while
// the gitops step has not created it yet.
func (s *service) playFlux() bool {
	s.t.Helper()
	ctx := context.Background()
	repo := &unstructured.Unstructured{}
	repo.SetGroupVersionKind(gitRepositoryGVK)
	if err := s.workload.Client.Get(ctx, client.ObjectKey{Namespace: "flux-system", Name: "lok8s"}, repo); err != nil {
		return false
	}
	if conds, _, _ := unstructured.NestedSlice(repo.Object, "status", "conditions"); len(conds) > 0 {
		return true
	}
	_ = unstructured.SetNestedSlice(repo.Object, []any{map[string]any{
		"type": "Ready", "status": "True", "reason": "Succeeded",
		"message": "stored artifact for revision 'main@sha1:4f1c2a9e'", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
	}}, "status", "conditions")
	if err := s.workload.Client.Status().Update(ctx, repo); err != nil {
		s.t.Fatalf("GitRepository status: %v", err)
	}
	return true
}

// TestGitOpsFluxPrivateRepository provisions the seed spec with its
// repository private: the gitops step installs Flux's controllers, makes
// the repository Secret from the git credential and the GitRepository and
// Kustomization; once Flux reports the source ready, the status says so.
func TestGitOpsFluxPrivateRepository(t *testing.T) {
	t.Parallel()
	w, s := startAddonWorld(t)
	s.putCredential("infra-git", `{"provider":"git","token":"git-e2e-token-9d2f"}`)
	spec := strings.Replace(seedSpecWithout(t, seedBootstrap)+seedCNIAndCCM, "    path: clusters/prod.example.com\n", "    path: clusters/prod.example.com\n    secretName: infra-git\n", 1)
	s.submit(spec)
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return stepState(st, "control-plane-initialized") == "running" })
	s.playCloud("prod")
	waiting := s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool {
		g, _ := st["gitops"].(map[string]any)
		return g != nil || st["phase"] == "Failed"
	})
	if g := waiting["gitops"].(map[string]any); g["ready"] != false || g["reason"] != "NotReported" || g["provider"] != "flux" {
		t.Fatalf("gitops before Flux reports: %v", g)
	}

	ctx := context.Background()
	repo := &unstructured.Unstructured{}
	repo.SetGroupVersionKind(gitRepositoryGVK)
	if err := w.workload.Client.Get(ctx, client.ObjectKey{Namespace: "flux-system", Name: "lok8s"}, repo); err != nil {
		t.Fatal(err)
	}
	url, _, _ := unstructured.NestedString(repo.Object, "spec", "url")
	branch, _, _ := unstructured.NestedString(repo.Object, "spec", "ref", "branch")
	secretRef, _, _ := unstructured.NestedString(repo.Object, "spec", "secretRef", "name")
	if url != "https://github.com/myorg/infra.git" || branch != "main" || secretRef != "lok8s-git" {
		t.Fatalf("GitRepository spec: url %q branch %q secretRef %q", url, branch, secretRef)
	}
	ks := &unstructured.Unstructured{}
	ks.SetGroupVersionKind(schema.GroupVersionKind{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Kind: "Kustomization"})
	if err := w.workload.Client.Get(ctx, client.ObjectKey{Namespace: "flux-system", Name: "lok8s"}, ks); err != nil {
		t.Fatal(err)
	}
	if path, _, _ := unstructured.NestedString(ks.Object, "spec", "path"); path != "./clusters/prod.example.com" {
		t.Fatalf("Kustomization path %q", path)
	}
	var secret corev1.Secret
	if err := w.workload.Client.Get(ctx, client.ObjectKey{Namespace: "flux-system", Name: "lok8s-git"}, &secret); err != nil {
		t.Fatal(err)
	}
	if string(secret.Data["password"]) != "git-e2e-token-9d2f" || string(secret.Data["username"]) != "git" {
		t.Fatal("repository Secret does not carry the git credential")
	}

	s.playFlux()
	done := s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return st["phase"] == "Provisioned" || st["phase"] == "Failed" })
	g := done["gitops"].(map[string]any)
	if done["phase"] != "Provisioned" || g["ready"] != true || !strings.Contains(g["message"].(string), "stored artifact") {
		t.Fatalf("after Flux reported: %v, gitops %v", done["phase"], g)
	}
	if st := stepOf(done, "gitops"); st["state"] != "succeeded" {
		t.Fatalf("gitops step: %v", st)
	}
	var flux string
	for _, a := range done["addons"].([]any) {
		if m := a.(map[string]any); m["name"] == "flux" {
			flux = m["state"].(string)
		}
	}
	if flux != "installed" {
		t.Fatalf("flux controllers: %q", flux)
	}
}
