// Package watch keeps each cluster's observed CAPI status in the store: one
// watch per management cluster (informers on the CAPI Clusters,
// MachineDeployments, MachinePools and KubeadmControlPlanes the service
// labelled), not one request per poll, so GET .../status reads Postgres
// and never the management cluster. Of a fleet of replicas, only the one
// holding the management cluster's Lease runs its watcher (RunElected):
// observed status has one writer, recorded with it. The informers' cache
// is also the management cluster's mgmt.Cache on that replica: the
// pipeline's wait and rollout checks read it, and the watcher wakes them,
// on whichever replica they run, when what they wait on changes.
package watch

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"lok8s.dev/provisioner/internal/mgmt"
)

// resource is gvk's resource (its plural, lower-cased).
func resource(gvk schema.GroupVersionKind, plural string) schema.GroupVersionResource {
	return gvk.GroupVersion().WithResource(plural)
}

// watched are the kinds a watcher keeps: the CAPI Cluster and what the
// wait and rollout checks read besides it. Only the Cluster is required;
// the others are watched when the management cluster serves them.
var watched = []struct {
	gvk      schema.GroupVersionKind
	gvr      schema.GroupVersionResource
	required bool
}{
	{mgmt.ClusterGVK, resource(mgmt.ClusterGVK, "clusters"), true},
	{mgmt.MachineDeploymentGVK, resource(mgmt.MachineDeploymentGVK, "machinedeployments"), true},
	{mgmt.MachinePoolGVK, resource(mgmt.MachinePoolGVK, "machinepools"), false},
	{mgmt.KubeadmControlPlaneGVK, resource(mgmt.KubeadmControlPlaneGVK, "kubeadmcontrolplanes"), false},
}

// Store is where observed status goes, with the writer that recorded it.
type Store interface {
	SetObservedByName(ctx context.Context, tenantID uuid.UUID, name string, observed json.RawMessage, writer string) error
}

// Watcher watches one management cluster.
type Watcher struct {
	cluster  *mgmt.Cluster
	store    Store
	logger   *slog.Logger
	onChange func(ctx context.Context, tenantID uuid.UUID, name string)
	// writer is the replica recorded as the observed status's writer
	// (RunElected sets it to the election's identity).
	writer string
	// lag, when set, is told how long each change took from the informer
	// to the store.
	lag func(domain string, d time.Duration)
}

// OnLag sets f to be told, before Run, how long each recorded change
// took from reaching the watcher's informer to being written (the
// watcher lag metric).
func (w *Watcher) OnLag(f func(domain string, d time.Duration)) {
	w.lag = f
}

// OnChange sets f to be called, before Run, after each change of a
// cluster's observed status is recorded: the service uses it to wake the
// job waiting on that cluster rather than leave it to its next check.
func (w *Watcher) OnChange(f func(ctx context.Context, tenantID uuid.UUID, name string)) {
	w.onChange = f
}

// New returns a watcher of cluster that writes to store.
func New(cluster *mgmt.Cluster, store Store, logger *slog.Logger) *Watcher {
	return &Watcher{cluster: cluster, store: store, logger: logger.With("management_cluster", displayName(cluster.Domain))}
}

func displayName(domain string) string {
	if domain == "" {
		return "default"
	}
	return domain
}

// key names a lok8s cluster on this management cluster.
type key struct {
	namespace, name string
}

// Run watches until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	dyn, err := dynamic.NewForConfig(w.cluster.Config)
	if err != nil {
		return fmt.Errorf("watch: dynamic client: %w", err)
	}
	served, err := servedResources(w.cluster)
	if err != nil {
		return err
	}
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 10*time.Minute, metav1.NamespaceAll,
		func(o *metav1.ListOptions) { o.LabelSelector = mgmt.LabelCluster })
	c := &view{informers: map[schema.GroupVersionKind]cache.SharedIndexInformer{}}
	for _, k := range watched {
		if !k.required && !served[k.gvr] {
			continue
		}
		inf := factory.ForResource(k.gvr).Informer()
		if err := inf.AddIndexers(cache.Indexers{byCluster: clusterIndex}); err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		c.informers[k.gvk] = inf
	}

	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[key]())
	defer queue.ShutDown()
	// since holds when each queued cluster's oldest unrecorded change arrived.
	var since sync.Map
	enqueue := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		if name := u.GetLabels()[mgmt.LabelCluster]; name != "" {
			k := key{namespace: u.GetNamespace(), name: name}
			since.LoadOrStore(k, time.Now())
			queue.Add(k)
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, DeleteFunc: enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}
	for _, inf := range c.informers {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("watch: %w", err)
		}
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	w.logger.InfoContext(ctx, "watching CAPI clusters", "kinds", len(c.informers))
	// The checks read the cache from the moment it is complete, and the
	// apiserver again once the watch ends.
	w.cluster.SetCache(c)
	defer w.cluster.SetCache(nil)

	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	// Each sync is a write and a wake, round trips to Postgres: several
	// run at once (the queue never hands one cluster to two at a time),
	// or a thousand clusters changing together wait on one another.
	var workers sync.WaitGroup
	for range syncWorkers {
		workers.Go(func() {
			for {
				k, quit := queue.Get()
				if quit {
					return
				}
				arrived, _ := since.LoadAndDelete(k)
				if err := w.sync(ctx, k, c); err != nil {
					if arrived != nil {
						since.LoadOrStore(k, arrived)
					}
					w.logger.WarnContext(ctx, "could not record observed status", "cluster", k.name, "namespace", k.namespace, "error", err)
					queue.AddRateLimited(k)
				} else {
					queue.Forget(k)
					if t, ok := arrived.(time.Time); ok && w.lag != nil {
						w.lag(w.cluster.Domain, time.Since(t))
					}
				}
				queue.Done(k)
			}
		})
	}
	workers.Wait()
	return nil
}

// syncWorkers is how many clusters a watcher records at once.
const syncWorkers = 8

// servedResources says which of the watched resources the management
// cluster serves (a MachinePool or KubeadmControlPlane CRD may be absent).
func servedResources(mc *mgmt.Cluster) (map[schema.GroupVersionResource]bool, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(mc.Config)
	if err != nil {
		return nil, fmt.Errorf("watch: discovery client: %w", err)
	}
	served := map[schema.GroupVersionResource]bool{}
	for _, k := range watched {
		if k.required {
			continue
		}
		list, err := dc.ServerResourcesForGroupVersion(k.gvr.GroupVersion().String())
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("watch: discover %s: %w", k.gvr.GroupVersion(), err)
		}
		for _, r := range list.APIResources {
			if r.Name == k.gvr.Resource {
				served[k.gvr] = true
			}
		}
	}
	return served, nil
}

// sync records the observed status of the lok8s cluster k and wakes
// what waits on it.
func (w *Watcher) sync(ctx context.Context, k key, c *view) error {
	u, found, _ := c.Get(mgmt.ClusterGVK, k.namespace, k.name)
	if !found {
		// Deleted (or not there yet): the deprovision steps own that story.
		return nil
	}
	tenant, err := uuid.Parse(u.GetLabels()[mgmt.LabelTenant])
	if err != nil {
		return nil //nolint:nilerr // not ours: no valid tenant label
	}
	st, err := mgmt.StatusOf(u)
	if err != nil {
		return err
	}
	for _, gvk := range mgmt.PoolKinds {
		pools, _ := c.ListOfCluster(gvk, k.namespace, k.name)
		for _, md := range pools {
			if st.Pools == nil {
				st.Pools = map[string]mgmt.Replicas{}
			}
			st.Pools[mgmt.PoolName(k.name, md)] = mgmt.PoolReplicas(md)
		}
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := w.store.SetObservedByName(ctx, tenant, k.name, raw, w.writer); err != nil {
		return err
	}
	// Any change of a watched object may be what a check waits for (a
	// control plane's rollout is not in the observed status).
	if w.onChange != nil {
		w.onChange(ctx, tenant, k.name)
	}
	return nil
}

// view is the watcher's mgmt.Cache: its informers' stores.
type view struct {
	informers map[schema.GroupVersionKind]cache.SharedIndexInformer
}

var _ mgmt.Cache = (*view)(nil)

// Get implements mgmt.Cache.
func (c *view) Get(gvk schema.GroupVersionKind, namespace, name string) (*unstructured.Unstructured, bool, bool) {
	inf, ok := c.informers[gvk]
	if !ok || !inf.HasSynced() {
		return nil, false, false
	}
	obj, exists, err := inf.GetStore().GetByKey(storeKey(namespace, name))
	if err != nil || !exists {
		return nil, false, true
	}
	u, ok := obj.(*unstructured.Unstructured)
	return u, ok, true
}

// ListOfCluster implements mgmt.Cache.
func (c *view) ListOfCluster(gvk schema.GroupVersionKind, namespace, cluster string) ([]*unstructured.Unstructured, bool) {
	inf, ok := c.informers[gvk]
	if !ok || !inf.HasSynced() {
		return nil, false
	}
	objs, err := inf.GetIndexer().ByIndex(byCluster, storeKey(namespace, cluster))
	if err != nil {
		return nil, false
	}
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, o := range objs {
		if u, ok := o.(*unstructured.Unstructured); ok {
			out = append(out, u)
		}
	}
	return out, true
}

// byCluster indexes objects by namespace and lok8s.dev/cluster label.
const byCluster = "lok8s-cluster"

func clusterIndex(obj any) ([]string, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, nil
	}
	name := u.GetLabels()[mgmt.LabelCluster]
	if name == "" {
		return nil, nil
	}
	return []string{storeKey(u.GetNamespace(), name)}, nil
}

func storeKey(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}
