package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/chart"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/testenv"
)

// chartIdentity is the Helm chart's RBAC installed on the management
// cluster, and a kubeconfig holding a token of the chart's ServiceAccount.
type chartIdentity struct {
	kubeconfig []byte
	tenantRole string
	client     kubernetes.Interface
	// namespace is the release's, where the watcher lease lives, and
	// leaseName the lease the chart's Role names.
	namespace, leaseName string
}

// installChartRBAC renders the chart as release and applies its
// ServiceAccount, roles, bindings and admission policy to env (the rest of
// what it renders runs nowhere here), then mints a token for the
// ServiceAccount with the TokenRequest API, as the kubelet would.
func installChartRBAC(t *testing.T, env *testenv.Env, release string) chartIdentity {
	t.Helper()
	ctx := context.Background()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: release}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	objs, err := chart.Render(chart.Dir(root), release, ns.Name, map[string]any{
		"existingSecret": "lok8s-config",
		"rbac":           map[string]any{"credentialNamespaces": []any{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var tenantRole, sa, leaseName string
	for _, obj := range objs {
		switch obj.GetKind() {
		case "Deployment":
			// The lease the chart tells the service to hold.
			containers, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
			for _, c := range containers {
				env, _, _ := unstructured.NestedSlice(c.(map[string]any), "env")
				for _, e := range env {
					if e := e.(map[string]any); e["name"] == "LOK8S_LEASE_NAME" {
						leaseName, _ = e["value"].(string)
					}
				}
			}
			continue
		case "Service", "PodDisruptionBudget":
			continue
		case "ServiceAccount":
			sa = obj.GetName()
		}
		if err := env.Apply(ctx, obj); err != nil {
			t.Fatalf("apply the chart's %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
		if obj.GetKind() == "ClusterRole" && obj.GetName() != release+"-lok8s" {
			tenantRole = obj.GetName()
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), obj) })
	}
	if tenantRole == "" || sa == "" || leaseName == "" {
		t.Fatalf("the chart rendered no tenant role or service account: %d objects", len(objs))
	}
	admin, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	seconds := int64(3600)
	tr, err := admin.CoreV1().ServiceAccounts(ns.Name).CreateToken(ctx, sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := env.KubeconfigWithToken(tr.Status.Token)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return chartIdentity{kubeconfig: data, tenantRole: tenantRole, client: cs, namespace: ns.Name, leaseName: leaseName}
}

// TestChartRBACIsEnoughAndNoMore runs the service with nothing on the
// management cluster but the Helm chart's ServiceAccount token and RBAC,
// and provisions, updates and deletes a cluster through the API: a
// permission the chart lacks fails a step. Then it shows what the
// ServiceAccount cannot do: read Secrets outside its tenants'
// namespaces, or bind its tenant role anywhere else.
func TestChartRBACIsEnoughAndNoMore(t *testing.T) {
	t.Parallel()
	env := testenv.Shared(t)
	id := installChartRBAC(t, env, randomName("rbac-"))
	// The lease where the chart puts it: the release's namespace, the
	// chart's name (the harness names each fleet's lease after its
	// database; here the chart's Role allows only its own).
	s := startService(t, options{mgmtKubeconfig: id.kubeconfig, tenantRole: id.tenantRole, leaseNamespace: id.namespace, leaseName: id.leaseName})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	provisionAndFinish(t, s, "prod", seedSpecWithoutAddons(t))

	// The service held its watcher lease with the chart's Role, and its
	// watcher recorded the observed status.
	lease, err := id.client.CoordinationV1().Leases(id.namespace).Get(context.Background(), id.leaseName, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		t.Fatalf("the watcher lease %s/%s: %v %+v", id.namespace, id.leaseName, err, lease)
	}
	var writer string
	if err := s.db.QueryRow(context.Background(), `SELECT coalesce(observed_by, '') FROM clusters WHERE name = 'prod'`).Scan(&writer); err != nil {
		t.Fatal(err)
	}
	if writer != *lease.Spec.HolderIdentity {
		t.Errorf("observed status written by %q; want the lease holder %q", writer, *lease.Spec.HolderIdentity)
	}

	// The service bound its tenant role in the tenant's namespace, to itself.
	rb := &rbacv1.RoleBinding{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: s.namespace(), Name: mgmt.TenantRoleBinding}, rb); err != nil {
		t.Fatalf("the tenant role binding: %v", err)
	}
	if rb.RoleRef.Name != id.tenantRole || len(rb.Subjects) != 1 || rb.Subjects[0].Kind != rbacv1.ServiceAccountKind {
		t.Fatalf("tenant role binding %+v", rb)
	}

	s.mustDo(http.MethodPatch, "/v1/clusters/prod", "", "application/merge-patch+json",
		[]byte(`{"spec":{"hcloud":{"workers":{"general":{"replicas":4}}}}}`), http.StatusAccepted)
	updated := s.waitStatus("prod", 90*time.Second, func(st map[string]any) bool {
		op, _ := st["operation"].(map[string]any)
		return st["phase"] == "Failed" || (st["phase"] == "Provisioned" && op["kind"] == "update")
	})
	if updated["phase"] != "Provisioned" {
		t.Fatalf("update with the chart's RBAC: %v (%v)", updated["phase"], updated["message"])
	}
	s.mustDo(http.MethodDelete, "/v1/clusters/prod", "", "", nil, http.StatusAccepted)
	deleted := s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool {
		return st["phase"] == "Deleted" || st["phase"] == "Failed"
	})
	if deleted["phase"] != "Deleted" {
		t.Fatalf("delete with the chart's RBAC: %v (%v)", deleted["phase"], deleted["message"])
	}

	// No more: Secrets elsewhere stay unreadable, and the tenant role
	// cannot be bound in a namespace that is not a tenant's.
	ctx := context.Background()
	for _, ns := range []string{"default", "kube-system"} {
		if _, err := id.client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("the service account listing Secrets in %s: %v, want Forbidden", ns, err)
		}
	}
	other := env.Namespace(t)
	sa := rb.Subjects[0]
	_, err = id.client.RbacV1().RoleBindings(other).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "escalate"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: id.tenantRole},
		Subjects:   []rbacv1.Subject{sa},
	}, metav1.CreateOptions{})
	if err == nil || (!apierrors.IsForbidden(err) && !apierrors.IsInvalid(err)) {
		t.Errorf("binding the tenant role in %s, a namespace no tenant's: %v, want refused", other, err)
	}
	if _, err := id.client.CoreV1().Secrets(other).Get(ctx, "anything", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("reading a Secret in %s after the refused binding: %v, want Forbidden", other, err)
	}
	// Leases: only its own, only in the release's namespace.
	if _, err := id.client.CoordinationV1().Leases("kube-system").Get(ctx, "kube-controller-manager", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the service account reading a Lease in kube-system: %v, want Forbidden", err)
	}
	if _, err := id.client.CoordinationV1().Leases(id.namespace).Get(ctx, "someone-elses", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the service account reading another Lease in its namespace: %v, want Forbidden", err)
	}
}
