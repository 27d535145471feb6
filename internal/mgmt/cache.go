package mgmt

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Cache is a read-only view of a management cluster kept current by a
// watcher's informers (internal/watch): the objects the service labelled
// lok8s.dev/cluster of the kinds it watches. The wait and rollout checks
// read it instead of asking the apiserver at every check. Objects it
// returns are shared: callers must not modify them.
type Cache interface {
	// Get returns the object of gvk namespace/name. held is false when the
	// cache does not watch gvk or has not synced it yet; found is false
	// when it holds no such object (absent, or not labelled by the
	// service: absence in the cache proves nothing on the apiserver).
	Get(gvk schema.GroupVersionKind, namespace, name string) (obj *unstructured.Unstructured, found, held bool)
	// ListOfCluster returns the objects of gvk in namespace labelled
	// lok8s.dev/cluster=cluster; held as for Get.
	ListOfCluster(gvk schema.GroupVersionKind, namespace, cluster string) (objs []*unstructured.Unstructured, held bool)
}

// cacheBox lets an interface value live in an atomic.Pointer.
type cacheBox struct{ Cache }

// SetCache makes the cluster's reads serve from cache where it holds
// the object (nil: every read asks the apiserver). The cluster's watcher
// sets it once its informers have synced and clears it when it stops.
func (c *Cluster) SetCache(cache Cache) {
	if cache == nil {
		c.cache.Store(nil)
		return
	}
	c.cache.Store(&cacheBox{cache})
}

// cached is the cluster's cache, or nil.
func (c *Cluster) cached() Cache {
	if b := c.cache.Load(); b != nil {
		return b.Cache
	}
	return nil
}

// Watched reports whether a synced watcher cache serves the cluster's
// reads and wakes what waits on the CAPI Clusters, MachineDeployments
// and control planes it holds: a wait on those need not poll often.
func (c *Cluster) Watched() bool {
	cache := c.cached()
	if cache == nil {
		return false
	}
	_, _, held := cache.Get(ClusterGVK, "", "")
	return held
}

// SetWatchedElsewhere records whether another replica holds the cluster's
// watcher lease (watch.RunElected, on each leader it observes): that
// replica's watcher records each CAPI Cluster's observed status in the
// store and wakes what waits on it, so this replica's wait checks read the
// store instead of the apiserver.
func (c *Cluster) SetWatchedElsewhere(elsewhere bool) { c.watchedElsewhere.Store(elsewhere) }

// WatchedElsewhere reports what SetWatchedElsewhere last recorded.
func (c *Cluster) WatchedElsewhere() bool { return c.watchedElsewhere.Load() }

// cachedObject returns the cached object of gvk namespace/name when the
// cache holds it.
func (c *Cluster) cachedObject(gvk schema.GroupVersionKind, namespace, name string) (*unstructured.Unstructured, bool) {
	cache := c.cached()
	if cache == nil {
		return nil, false
	}
	obj, found, held := cache.Get(gvk, namespace, name)
	return obj, found && held
}
