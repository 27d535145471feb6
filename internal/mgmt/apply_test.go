package mgmt

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/testenv"
)

// TestApplyNewNeverTouchesAnExistingObject: ApplyNew creates an absent
// object, as the service's field manager, and leaves one that exists
// exactly as it was, whoever made it (the kube-apiserver refuses a
// metadata.uid that is not the object's); the pipeline relies on that to
// skip reading a new cluster's objects before applying them.
func TestApplyNewNeverTouchesAnExistingObject(t *testing.T) {
	t.Parallel()
	env := testenv.Shared(t)
	ns := env.Namespace(t)
	c, err := NewCluster("", env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cm := func(tenant, value string) *unstructured.Unstructured {
		o := &unstructured.Unstructured{Object: map[string]any{"data": map[string]any{"k": value}}}
		o.SetAPIVersion("v1")
		o.SetKind("ConfigMap")
		o.SetNamespace(ns)
		o.SetName("owned")
		if tenant != "" {
			o.SetLabels(map[string]string{LabelTenant: tenant})
		}
		return o
	}
	if !c.ApplyNew(ctx, cm("tenant-a", "a")) {
		t.Fatal("ApplyNew did not create an absent object")
	}
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(cm("", "").GroupVersionKind())
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "owned"}, live); err != nil {
		t.Fatal(err)
	}
	if live.GetLabels()[LabelTenant] != "tenant-a" || len(live.GetManagedFields()) != 1 || live.GetManagedFields()[0].Manager != FieldManager ||
		live.GetManagedFields()[0].Operation != "Apply" {
		t.Fatalf("created object: labels %v, managed fields %+v", live.GetLabels(), live.GetManagedFields())
	}
	rv := live.GetResourceVersion()

	// Another tenant's apply of the same name, and one without a label.
	for _, other := range []*unstructured.Unstructured{cm("tenant-b", "b"), cm("", "c")} {
		if c.ApplyNew(ctx, other) {
			t.Fatalf("ApplyNew of %v over an existing object succeeded", other.GetLabels())
		}
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "owned"}, live); err != nil {
		t.Fatal(err)
	}
	if live.GetResourceVersion() != rv || live.GetLabels()[LabelTenant] != "tenant-a" {
		t.Fatalf("the existing object changed: resourceVersion %s → %s, labels %v", rv, live.GetResourceVersion(), live.GetLabels())
	}
}
