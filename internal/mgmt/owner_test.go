package mgmt

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"lok8s.dev/provisioner/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// countingCluster is a Cluster on the shared envtest whose requests are counted.
func countingCluster(t *testing.T, env *testenv.Env) (*Cluster, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			n.Add(1)
			return next.RoundTrip(r)
		})
	})
	c, err := NewCluster("", cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Discovery once, as the pipeline's preflight does, so that the
	// counts are of the requests about the objects.
	var kinds []schema.GroupVersionKind
	for _, o := range applyKinds(t, "ns", "") {
		kinds = append(kinds, o.GroupVersionKind())
	}
	if missing, err := c.MissingKinds(kinds); err != nil || len(missing) > 0 {
		t.Fatalf("discovery: %v missing, %v", missing, err)
	}
	n.Store(0)
	return c, &n
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// applyKinds are objects of the kinds the service applies: built in
// (Namespace, Secret) and custom resources (a CAPI Cluster).
func applyKinds(t *testing.T, ns, tenant string) map[string]*unstructured.Unstructured {
	t.Helper()
	out := map[string]*unstructured.Unstructured{}
	for name, manifest := range map[string]string{
		"Namespace": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "-own\n",
		"Secret":    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  namespace: " + ns + "\nstringData:\n  token: first\n",
		"Cluster": `apiVersion: cluster.x-k8s.io/v1beta2
kind: Cluster
metadata:
  name: demo
  namespace: ` + ns + `
spec:
  paused: false
  controlPlaneRef: {apiGroup: controlplane.cluster.x-k8s.io, kind: KubeadmControlPlane, name: demo-control-plane}
  infrastructureRef: {apiGroup: infrastructure.cluster.x-k8s.io, kind: HetznerCluster, name: demo}
`,
	} {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(manifest), &u.Object); err != nil {
			t.Fatal(err)
		}
		if tenant != "" {
			u.SetLabels(map[string]string{LabelTenant: tenant, LabelCluster: "demo"})
		}
		out[name] = u
	}
	return out
}

// changed returns a copy of obj with a field the service would set changed.
func changed(t *testing.T, obj *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	c := obj.DeepCopy()
	switch c.GetKind() {
	case "Namespace":
		c.SetAnnotations(map[string]string{"changed": "yes"})
	case "Secret":
		if err := unstructured.SetNestedField(c.Object, "second", "stringData", "token"); err != nil {
			t.Fatal(err)
		}
	default:
		if err := unstructured.SetNestedField(c.Object, true, "spec", "paused"); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func live(t *testing.T, env *testenv.Env, obj *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(obj.GroupVersionKind())
	if err := env.Client.Get(testCtx(t), client.ObjectKeyFromObject(obj), got); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestApplyNewIsCreateOnly holds the apiserver to what ApplyNew relies
// on, for each kind of object the service applies: a create-only apply
// creates an absent object with the service's Apply ownership, and on an
// object that exists it is refused with 409 Conflict and changes nothing.
func TestApplyNewIsCreateOnly(t *testing.T) {
	t.Parallel()
	env := testenv.Shared(t)
	ns := env.Namespace(t)
	c, requests := countingCluster(t, env)
	ctx := testCtx(t)
	for kind, obj := range applyKinds(t, ns, "tenant-a") {
		t.Run(kind, func(t *testing.T) {
			before := requests.Load()
			if err := c.ApplyNew(ctx, obj); err != nil {
				t.Fatalf("create-only apply of an absent %s: %v", kind, err)
			}
			if n := requests.Load() - before; n != 1 {
				t.Errorf("%d requests to create; want 1", n)
			}
			created := live(t, env, obj)
			var applied bool
			for _, mf := range created.GetManagedFields() {
				applied = applied || (mf.Manager == FieldManager && mf.Operation == metav1.ManagedFieldsOperationApply)
			}
			if !applied {
				t.Errorf("created without %s's Apply ownership: %+v", FieldManager, created.GetManagedFields())
			}
			err := c.ApplyNew(ctx, changed(t, obj))
			if !apierrors.IsConflict(err) {
				t.Fatalf("create-only apply of an existing %s: %v; want 409 Conflict", kind, err)
			}
			if after := live(t, env, obj); after.GetResourceVersion() != created.GetResourceVersion() {
				t.Errorf("the refused apply changed the %s (resourceVersion %s → %s)", kind, created.GetResourceVersion(), after.GetResourceVersion())
			}
		})
	}
}

// TestApplyOwnedNeverTakesOver: whatever ApplyOwned is told (the object
// is likely absent or not) and whatever the cache holds, it never writes
// to an object of another tenant or one lok8s did not create, and
// answers ErrNotOwned. A new object costs one request; one of the
// tenant's that exists a read more, or nothing more when the cache holds
// it; a cache that holds an older object of that name (deleted and made
// again) costs a read more and writes the object there now, or refuses it
// when it is now another's.
func TestApplyOwnedNeverTakesOver(t *testing.T) {
	t.Parallel()
	env := testenv.Shared(t)
	c, requests := countingCluster(t, env)
	ctx := testCtx(t)

	for _, owner := range []string{"", "tenant-b"} {
		for _, likelyAbsent := range []bool{true, false} {
			for kind, theirs := range applyKinds(t, env.Namespace(t), owner) {
				if err := env.Apply(ctx, theirs); err != nil {
					t.Fatal(err)
				}
				before := live(t, env, theirs)
				ours := changed(t, theirs)
				ours.SetLabels(map[string]string{LabelTenant: "tenant-a", LabelCluster: "demo"})
				// A cache that holds the object as it is, and one that
				// still holds an object of that name that was the
				// tenant's (deleted since, and made by its owner now).
				stale := before.DeepCopy()
				stale.SetLabels(ours.GetLabels())
				stale.SetUID("00000000-0000-0000-0000-000000000001")
				for _, cache := range []Cache{nil, mapCache{objs: []*unstructured.Unstructured{before}}, mapCache{objs: []*unstructured.Unstructured{stale}}} {
					c.SetCache(cache)
					err := c.ApplyOwned(ctx, ours, "tenant-a", likelyAbsent)
					if !errors.Is(err, ErrNotOwned) {
						t.Errorf("%s of owner %q (likely absent %v, cached %v): %v; want ErrNotOwned", kind, owner, likelyAbsent, cache != nil, err)
					}
					if after := live(t, env, theirs); after.GetResourceVersion() != before.GetResourceVersion() {
						t.Errorf("%s of owner %q (likely absent %v, cached %v) was written to", kind, owner, likelyAbsent, cache != nil)
					}
				}
			}
		}
	}

	c.SetCache(nil)
	for kind, obj := range applyKinds(t, env.Namespace(t), "tenant-a") {
		t.Run(kind, func(t *testing.T) {
			apply := func(what string, o *unstructured.Unstructured, likelyAbsent bool, want int64) *unstructured.Unstructured {
				t.Helper()
				n := requests.Load()
				if err := c.ApplyOwned(ctx, o, "tenant-a", likelyAbsent); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if got := requests.Load() - n; got != want {
					t.Errorf("%s: %d requests; want %d", what, got, want)
				}
				return live(t, env, o)
			}
			first := apply("a new object, likely absent", obj, true, 1)
			apply("the tenant's own, likely absent", changed(t, obj), true, 3)
			apply("the tenant's own, not likely absent", obj, false, 2)
			c.SetCache(mapCache{objs: []*unstructured.Unstructured{first}})
			defer c.SetCache(nil)
			apply("the tenant's own, cached", changed(t, obj), false, 1)
			if err := env.Client.Delete(ctx, first); err != nil {
				t.Fatal(err)
			}
			if kind == "Namespace" {
				return // envtest never finalizes a namespace: it cannot be made again
			}
			again := apply("made again since the cache saw it", obj, true, 3)
			if again.GetUID() == first.GetUID() {
				t.Fatal("not made again")
			}
		})
	}
}
