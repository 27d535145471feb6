// Package watch keeps each cluster's observed CAPI status in the store: one
// watch per management cluster (informers on the CAPI Clusters and
// MachineDeployments the service labelled), not one request per poll, so
// GET .../status reads Postgres and never the management cluster.
package watch

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"lok8s.dev/provisioner/internal/mgmt"
)

// The labels the pipeline puts on every object it creates.
const (
	labelTenant  = "lok8s.dev/tenant"
	labelCluster = "lok8s.dev/cluster"
)

var (
	clustersGVR           = schema.GroupVersionResource{Group: "cluster.x-k8s.io", Version: "v1beta2", Resource: "clusters"}
	machineDeploymentsGVR = schema.GroupVersionResource{Group: "cluster.x-k8s.io", Version: "v1beta2", Resource: "machinedeployments"}
)

// Store is where observed status goes.
type Store interface {
	SetObservedByName(ctx context.Context, tenantID uuid.UUID, name string, observed json.RawMessage) error
}

// Watcher watches one management cluster.
type Watcher struct {
	cluster  *mgmt.Cluster
	store    Store
	logger   *slog.Logger
	onChange func(ctx context.Context, tenantID uuid.UUID, name string)
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
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 10*time.Minute, metav1.NamespaceAll,
		func(o *metav1.ListOptions) { o.LabelSelector = labelCluster })
	clusters := factory.ForResource(clustersGVR)
	deployments := factory.ForResource(machineDeploymentsGVR)

	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[key]())
	defer queue.ShutDown()
	enqueue := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		if name := u.GetLabels()[labelCluster]; name != "" {
			queue.Add(key{namespace: u.GetNamespace(), name: name})
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, DeleteFunc: enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}
	if _, err := clusters.Informer().AddEventHandler(handler); err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	if _, err := deployments.Informer().AddEventHandler(handler); err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	w.logger.InfoContext(ctx, "watching CAPI clusters")

	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	for {
		k, quit := queue.Get()
		if quit {
			return nil
		}
		if err := w.sync(ctx, k, clusters.Lister(), deployments.Lister()); err != nil {
			w.logger.WarnContext(ctx, "could not record observed status", "cluster", k.name, "namespace", k.namespace, "error", err)
			queue.AddRateLimited(k)
		} else {
			queue.Forget(k)
		}
		queue.Done(k)
	}
}

// sync records the observed status of the lok8s cluster k.
func (w *Watcher) sync(ctx context.Context, k key, clusters, deployments cache.GenericLister) error {
	obj, err := clusters.ByNamespace(k.namespace).Get(k.name)
	if err != nil {
		// Deleted (or not there yet): the deprovision steps own that story.
		return nil //nolint:nilerr // absence is not an error for the watcher
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	tenant, err := uuid.Parse(u.GetLabels()[labelTenant])
	if err != nil {
		return nil //nolint:nilerr // not ours: no valid tenant label
	}
	st, err := mgmt.StatusOf(u)
	if err != nil {
		return err
	}
	mds, err := deployments.ByNamespace(k.namespace).List(labels.SelectorFromSet(labels.Set{labelCluster: k.name}))
	if err != nil {
		return err
	}
	for _, o := range mds {
		md, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		if st.Pools == nil {
			st.Pools = map[string]mgmt.Replicas{}
		}
		st.Pools[mgmt.PoolName(k.name, md)] = mgmt.PoolReplicas(md)
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := w.store.SetObservedByName(ctx, tenant, k.name, raw); err != nil {
		return err
	}
	if w.onChange != nil {
		w.onChange(ctx, tenant, k.name)
	}
	return nil
}
