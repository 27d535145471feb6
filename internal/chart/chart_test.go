package chart_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"lok8s.dev/provisioner/internal/chart"
	"lok8s.dev/provisioner/internal/gomod"
	"lok8s.dev/provisioner/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func chartDir(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return chart.Dir(root)
}

// valueMatrix is every combination of values the chart documents that
// changes what it renders.
func valueMatrix() map[string]map[string]any {
	base := func(extra map[string]any) map[string]any {
		v := map[string]any{"existingSecret": "lok8s-config"}
		for k, x := range extra {
			v[k] = x
		}
		return v
	}
	return map[string]map[string]any{
		"defaults": base(nil),
		"everything on": base(map[string]any{
			"replicaCount": 3,
			"ingress": map[string]any{"enabled": true, "className": "nginx", "hosts": []any{map[string]any{"host": "lok8s.example.com"}},
				"tls": []any{map[string]any{"secretName": "lok8s-tls", "hosts": []any{"lok8s.example.com"}}}},
			"networkPolicy": map[string]any{"enabled": true, "from": []any{map[string]any{
				"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "ingress-nginx"}}}}},
			"config": map[string]any{"extraEnv": map[string]any{"LOK8S_EVENT_RETENTION": "72h"},
				"lease": map[string]any{"name": "fleet-watcher", "duration": "30s"}},
			"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true},
				"grafanaDashboard": map[string]any{"enabled": true, "annotations": map[string]any{"grafana_folder": "lok8s"}}},
		}),
		"settings": base(map[string]any{
			"config": map[string]any{"workers": 0, "checkInterval": "30s", "mgmtQPS": 200,
				"lease": map[string]any{"duration": "30s", "renewDeadline": "20s"}},
		}),
		"no rbac, own service account": base(map[string]any{
			"rbac":           map[string]any{"create": false},
			"serviceAccount": map[string]any{"create": false, "name": "platform-lok8s"},
		}),
		"hetzner only, no admission policy": base(map[string]any{
			"rbac":                map[string]any{"credentialNamespaces": []any{}, "admissionPolicy": false},
			"podDisruptionBudget": map[string]any{"enabled": false},
			"topologySpread":      false,
			"metrics":             map[string]any{"enabled": false},
		}),
	}
}

// TestChartLints is `helm lint --strict` over the value matrix.
func TestChartLints(t *testing.T) {
	dir := chartDir(t)
	for name, values := range valueMatrix() {
		t.Run(name, func(t *testing.T) {
			if err := chart.Lint(dir, "lok8s-system", values); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestChartRefusesMissingValues: the chart names what is missing instead
// of rendering a Deployment that cannot start.
func TestChartRefusesMissingValues(t *testing.T) {
	dir := chartDir(t)
	for name, tc := range map[string]struct {
		values map[string]any
		want   string
	}{
		"no secret":                   {map[string]any{}, "existingSecret is required"},
		"ingress without hosts":       {map[string]any{"existingSecret": "s", "ingress": map[string]any{"enabled": true}}, "ingress.hosts"},
		"no service account, unnamed": {map[string]any{"existingSecret": "s", "serviceAccount": map[string]any{"create": false}}, "serviceAccount.name is required"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := chart.Render(dir, "lok8s", "lok8s-system", tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("render: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

// TestChartLeavesDefaultsToTheService: the chart passes a setting to the
// service only when its value is set, so each default is the service's
// own (README: Configuration), stated once; a set one, 0 included, is
// passed as it is.
func TestChartLeavesDefaultsToTheService(t *testing.T) {
	tunables := []string{"LOK8S_WORKERS", "LOK8S_LOG_LEVEL", "LOK8S_LOG_FORMAT", "LOK8S_CHECK_INTERVAL", "LOK8S_PROVISION_TIMEOUT",
		"LOK8S_MAX_IN_FLIGHT", "LOK8S_MAX_CONNS", "LOK8S_MGMT_QPS", "LOK8S_MGMT_BURST",
		"LOK8S_LEASE_DURATION", "LOK8S_LEASE_RENEW_DEADLINE", "LOK8S_LEASE_RETRY_PERIOD"}
	for name, want := range map[string]map[string]string{
		"defaults": {},
		"settings": {"LOK8S_WORKERS": "0", "LOK8S_CHECK_INTERVAL": "30s", "LOK8S_MGMT_QPS": "200",
			"LOK8S_LEASE_DURATION": "30s", "LOK8S_LEASE_RENEW_DEADLINE": "20s"},
	} {
		t.Run(name, func(t *testing.T) {
			env := deploymentEnv(t, valueMatrix()[name])
			for _, v := range tunables {
				got, set := env[v]
				if w, ok := want[v]; ok != set || got != w {
					t.Errorf("%s: passed %t (%q), want passed %t (%q)", v, set, got, ok, w)
				}
			}
		})
	}
}

// deploymentEnv is the service container's environment as the chart
// renders it with values.
func deploymentEnv(t *testing.T, values map[string]any) map[string]string {
	t.Helper()
	objs, err := chart.Render(chartDir(t), "lok8s", "lok8s-system", values)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
			t.Fatal(err)
		}
		env := map[string]string{}
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
		return env
	}
	t.Fatal("the chart renders no Deployment")
	return nil
}

// prometheus-operator's module carries its CRDs as data; the chart's
// ServiceMonitor is applied against this version's.
const promOperatorModule = "github.com/prometheus-operator/prometheus-operator@v0.85.0"

// installServiceMonitorCRD installs prometheus-operator's ServiceMonitor CRD,
// read from the Go module cache, so the chart's ServiceMonitor is applied
// against its real schema like every other rendered object.
func installServiceMonitorCRD(t *testing.T, env *testenv.Env) {
	t.Helper()
	dirs, err := gomod.Dirs(context.Background(), promOperatorModule)
	if err != nil {
		t.Fatal(err)
	}
	crd := filepath.Join(dirs[promOperatorModule], "example", "prometheus-operator-crd", "monitoring.coreos.com_servicemonitors.yaml")
	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{Paths: []string{crd}, ErrorIfPathMissing: true}); err != nil {
		t.Fatalf("install the ServiceMonitor CRD: %v", err)
	}
}

// TestChartAppliesToTheAPIServer server-side applies (dry run) everything
// the chart renders, over the value matrix, against the real
// kube-apiserver, and runs the Deployment's pod through Pod Security
// Admission's restricted profile.
func TestChartAppliesToTheAPIServer(t *testing.T) {
	env := testenv.Shared(t)
	ctx := context.Background()
	dir := chartDir(t)
	installServiceMonitorCRD(t, env)
	for _, ns := range []string{"capa-system"} {
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	for name, values := range valueMatrix() {
		t.Run(name, func(t *testing.T) {
			// The release's namespace enforces the restricted Pod Security
			// Standard, as a platform team's would.
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "lok8s-chart-", Labels: map[string]string{
				"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}}}
			if err := env.Client.Create(ctx, ns); err != nil {
				t.Fatal(err)
			}
			objs, err := chart.Render(dir, "lok8s", ns.Name, values)
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]int{}
			var service, monitor *unstructured.Unstructured
			for _, obj := range objs {
				kinds[obj.GetKind()]++
				switch obj.GetKind() {
				case "Service":
					service = obj
				case "ServiceMonitor":
					monitor = obj
				}
				if err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner("helm"),
					client.ForceOwnership, client.DryRunAll); err != nil {
					t.Errorf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
				}
				if obj.GetKind() == "Deployment" {
					checkPodIsRestricted(t, env, ns.Name, obj)
				}
			}
			if kinds["Deployment"] != 1 || kinds["Service"] != 1 {
				t.Fatalf("rendered kinds %v", kinds)
			}
			if dashboard := dashboardOf(objs); wantsDashboard(values) != (dashboard != nil) {
				t.Fatalf("grafanaDashboard %v, dashboard ConfigMap rendered: %v", wantsDashboard(values), dashboard != nil)
			} else if dashboard != nil {
				checkDashboard(t, dashboard)
			}
			if monitor != nil {
				checkMonitorFindsService(t, monitor, service)
			}
			rbac := values["rbac"] == nil || values["rbac"].(map[string]any)["create"] != false
			if rbac != (kinds["ClusterRole"] == 2) {
				t.Fatalf("rbac %v, rendered kinds %v", rbac, kinds)
			}
			// The watcher lease's Role: in the release's namespace only.
			if rbac != (kinds["Role"] == 1 && kinds["RoleBinding"] >= 1) {
				t.Fatalf("rbac %v, rendered kinds %v", rbac, kinds)
			}
			for _, obj := range objs {
				if obj.GetKind() == "Role" && obj.GetNamespace() != ns.Name {
					t.Errorf("Role %s in namespace %q, want the release's %s", obj.GetName(), obj.GetNamespace(), ns.Name)
				}
			}
		})
	}
}

// checkPodIsRestricted creates (dry run) a pod from the Deployment's
// template in namespace, whose Pod Security Admission enforces the
// restricted profile, and checks the hardening the chart promises.
func checkPodIsRestricted(t *testing.T, env *testenv.Env, namespace string, deployment *unstructured.Unstructured) {
	t.Helper()
	tmpl, _, err := unstructured.NestedMap(deployment.Object, "spec", "template")
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, pod); err != nil {
		t.Fatal(err)
	}
	pod.Namespace, pod.Name = namespace, "lok8s-probe"
	if err := env.Client.Create(context.Background(), pod, client.DryRunAll); err != nil {
		t.Fatalf("the Deployment's pod in a namespace enforcing the restricted profile: %v", err)
	}
	c := pod.Spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("the root filesystem is not read-only: %+v", sc)
	}
	for _, probe := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if probe == nil || probe.HTTPGet == nil {
			t.Errorf("container %s lacks an HTTP probe: %+v", c.Name, probe)
		}
	}
	if c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe %s, want /readyz", c.ReadinessProbe.HTTPGet.Path)
	}
}

// wantsDashboard reports whether values turn the dashboard ConfigMap on.
func wantsDashboard(values map[string]any) bool {
	m, _ := values["metrics"].(map[string]any)
	d, _ := m["grafanaDashboard"].(map[string]any)
	return d["enabled"] == true && m["enabled"] != false
}

// dashboardOf is the dashboard ConfigMap among objs, if any.
func dashboardOf(objs []*unstructured.Unstructured) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" && o.GetLabels()["grafana_dashboard"] == "1" {
			return o
		}
	}
	return nil
}

// checkDashboard checks that the ConfigMap carries the repository's
// dashboard unchanged (what Grafana's sidecar loads).
func checkDashboard(t *testing.T, cm *unstructured.Unstructured) {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(chart.Dir(root), "dashboards", "lok8s.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, _, _ := unstructured.NestedString(cm.Object, "data", "lok8s.json")
	if got != strings.TrimRight(string(want), "\n") {
		t.Errorf("the dashboard ConfigMap's lok8s.json (%d bytes) is not dashboards/lok8s.json (%d bytes)", len(got), len(want))
	}
}

// checkMonitorFindsService checks that the ServiceMonitor selects the
// Service by its labels and scrapes a port the Service has.
func checkMonitorFindsService(t *testing.T, monitor, service *unstructured.Unstructured) {
	t.Helper()
	selector, _, _ := unstructured.NestedStringMap(monitor.Object, "spec", "selector", "matchLabels")
	for k, v := range selector {
		if service.GetLabels()[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s; the Service is labelled %v", k, v, service.GetLabels())
		}
	}
	endpoints, _, _ := unstructured.NestedSlice(monitor.Object, "spec", "endpoints")
	ports, _, _ := unstructured.NestedSlice(service.Object, "spec", "ports")
	for _, e := range endpoints {
		port := e.(map[string]any)["port"]
		found := false
		for _, p := range ports {
			found = found || p.(map[string]any)["name"] == port
		}
		if !found {
			t.Errorf("the ServiceMonitor scrapes port %v; the Service has %v", port, ports)
		}
	}
}
