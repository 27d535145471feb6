package mgmt

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// PoolKinds are the CAPI kinds that run a worker pool: kubeadm pools are
// MachineDeployments, EKS managed node groups MachinePools.
var PoolKinds = []schema.GroupVersionKind{MachineDeploymentGVK, MachinePoolGVK}

// IsPool reports whether obj runs a worker pool (a MachineDeployment or a
// MachinePool) and returns the pool's name.
func IsPool(cluster string, obj *unstructured.Unstructured) (string, bool) {
	gvk := obj.GroupVersionKind()
	for _, k := range PoolKinds {
		if gvk.GroupKind() == k.GroupKind() {
			return PoolName(cluster, obj), true
		}
	}
	return "", false
}

// PoolName is the worker pool a MachineDeployment or MachinePool runs: its
// lok8s.dev/pool label, else its name without the cluster's prefix.
func PoolName(cluster string, obj *unstructured.Unstructured) string {
	if p := obj.GetLabels()[LabelPool]; p != "" {
		return p
	}
	return strings.TrimPrefix(obj.GetName(), cluster+"-")
}

// PoolReplicas are a pool's replicas: desired from spec.replicas, the rest
// from CAPI's v1beta2 status counters.
func PoolReplicas(obj *unstructured.Unstructured) Replicas {
	get := func(path ...string) int64 {
		v, _, _ := unstructured.NestedInt64(obj.Object, path...)
		return v
	}
	return Replicas{
		Desired:   get("spec", "replicas"),
		Ready:     get("status", "readyReplicas"),
		Available: get("status", "availableReplicas"),
		UpToDate:  get("status", "upToDateReplicas"),
	}
}

// ObservedStatus reads the CAPI Cluster namespace/name and the replicas
// of each of its pools (the MachineDeployments and MachinePools labelled
// lok8s.dev/cluster=name): from the watcher's cache where it holds them
// (no request), else from the apiserver.
func (c *Cluster) ObservedStatus(ctx context.Context, namespace, name string) (Status, error) {
	st, err := c.ClusterStatus(ctx, namespace, name)
	if err != nil {
		return Status{}, err
	}
	cache := c.cached()
	for _, gvk := range PoolKinds {
		if cache != nil {
			if objs, held := cache.ListOfCluster(gvk, namespace, name); held {
				for _, o := range objs {
					if st.Pools == nil {
						st.Pools = map[string]Replicas{}
					}
					st.Pools[PoolName(name, o)] = PoolReplicas(o)
				}
				continue
			}
		}
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := c.client.List(ctx, list, client.InNamespace(namespace), client.MatchingLabels{LabelCluster: name}); err != nil {
			return Status{}, fmt.Errorf("list %ss of %s/%s: %w", gvk.Kind, namespace, name, err)
		}
		for i := range list.Items {
			if st.Pools == nil {
				st.Pools = map[string]Replicas{}
			}
			st.Pools[PoolName(name, &list.Items[i])] = PoolReplicas(&list.Items[i])
		}
	}
	return st, nil
}
