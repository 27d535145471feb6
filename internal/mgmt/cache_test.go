package mgmt

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// mapCache is a Cache over fixed objects (pure logic: the watcher's real
// cache is exercised by internal/e2e).
type mapCache struct {
	objs []*unstructured.Unstructured
}

func (m mapCache) Get(gvk schema.GroupVersionKind, namespace, name string) (*unstructured.Unstructured, bool, bool) {
	for _, o := range m.objs {
		if o.GroupVersionKind() == gvk && o.GetNamespace() == namespace && o.GetName() == name {
			return o, true, true
		}
	}
	return nil, false, true
}

func (m mapCache) ListOfCluster(gvk schema.GroupVersionKind, namespace, cluster string) ([]*unstructured.Unstructured, bool) {
	var out []*unstructured.Unstructured
	for _, o := range m.objs {
		if o.GroupVersionKind() == gvk && o.GetNamespace() == namespace && o.GetLabels()[LabelCluster] == cluster {
			out = append(out, o)
		}
	}
	return out, true
}

func object(t *testing.T, gvk schema.GroupVersionKind, name string, fields map[string]any) *unstructured.Unstructured {
	t.Helper()
	o := &unstructured.Unstructured{Object: fields}
	o.SetGroupVersionKind(gvk)
	o.SetNamespace("ns")
	o.SetName(name)
	o.SetLabels(map[string]string{LabelCluster: "prod", LabelTenant: "tenant-a"})
	return o
}

// unreachable is a management cluster whose apiserver counts the requests
// it gets and answers none of them.
func unreachable(t *testing.T) (*Cluster, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	c, err := NewCluster("", &rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return c, &n
}

// TestReadsServedFromTheCache: with a cache set, the wait checks' reads
// of what it holds make no request; without one, or for what it does not
// hold, they ask the apiserver.
func TestReadsServedFromTheCache(t *testing.T) {
	t.Parallel()
	mdGVK := PoolKinds[0]
	kcpGVK := KubeadmControlPlaneGVK
	cluster := object(t, ClusterGVK, "prod", map[string]any{"status": map[string]any{
		"phase": "Provisioned", "initialization": map[string]any{"controlPlaneInitialized": true}}})
	md := object(t, mdGVK, "prod-md-general", map[string]any{
		"spec":   map[string]any{"replicas": int64(2), "template": map[string]any{"spec": map[string]any{"version": "v1.33.1"}}},
		"status": map[string]any{"readyReplicas": int64(2), "availableReplicas": int64(2), "upToDateReplicas": int64(2), "observedGeneration": int64(1)}})
	md.SetGeneration(1)
	kcp := object(t, kcpGVK, "prod-control-plane", map[string]any{
		"spec":   map[string]any{"replicas": int64(3), "version": "v1.33.1"},
		"status": map[string]any{"availableReplicas": int64(3), "upToDateReplicas": int64(3), "observedGeneration": int64(2)}})
	kcp.SetGeneration(2)
	ctx := context.Background()

	c, requests := unreachable(t)
	c.SetCache(mapCache{objs: []*unstructured.Unstructured{cluster, md, kcp}})
	if !c.Watched() {
		t.Fatal("a cluster with a synced cache is not Watched")
	}
	st, err := c.ObservedStatus(ctx, "ns", "prod")
	if err != nil {
		t.Fatal(err)
	}
	if !st.ControlPlaneInitialized() || st.Pools["md-general"].Ready != 2 || st.Tenant != "tenant-a" {
		t.Fatalf("status from the cache: %+v", st)
	}
	applied := []*unstructured.Unstructured{
		object(t, kcpGVK, "prod-control-plane", map[string]any{"spec": map[string]any{"replicas": int64(3), "version": "v1.33.1"}}),
		object(t, mdGVK, "prod-md-general", map[string]any{"spec": map[string]any{"replicas": int64(2)}}),
	}
	ro, err := c.RolloutStatus(ctx, applied)
	if err != nil || !ro.Done || !ro.Cached {
		t.Fatalf("rollout from the cache: %+v, %v", ro, err)
	}
	if err := c.CheckOwner(ctx, ClusterGVK, "ns", "prod", "tenant-a"); err != nil {
		t.Fatal(err)
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("%d requests for reads the cache holds; want none", n)
	}

	// What the cache cannot answer goes to the apiserver.
	for name, read := range map[string]func() error{
		"a Cluster the cache does not hold": func() error { _, err := c.ObservedStatus(ctx, "ns", "other"); return err },
		"a spec newer than the cache's": func() error {
			newer := object(t, kcpGVK, "prod-control-plane", map[string]any{"spec": map[string]any{"replicas": int64(5), "version": "v1.33.1"}})
			_, err := c.RolloutStatus(ctx, []*unstructured.Unstructured{newer})
			return err
		},
		"an object of another tenant": func() error { return c.CheckOwner(ctx, ClusterGVK, "ns", "prod", "tenant-b") },
	} {
		before := requests.Load()
		if err := read(); err == nil {
			t.Errorf("%s: answered without the (unreachable) apiserver", name)
		}
		if requests.Load() == before {
			t.Errorf("%s: no request to the apiserver", name)
		}
	}
	c.SetCache(nil)
	if c.Watched() {
		t.Fatal("a cluster without a cache is Watched")
	}
	before := requests.Load()
	if _, err := c.ObservedStatus(ctx, "ns", "prod"); err == nil || requests.Load() == before {
		t.Fatalf("without a cache: %v after %d requests", err, requests.Load()-before)
	}
}
