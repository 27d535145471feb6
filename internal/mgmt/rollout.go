package mgmt

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// rolledOutKinds are the CAPI kinds whose rollout an update waits for.
var rolledOutKinds = map[string]bool{"KubeadmControlPlane": true, "MachineDeployment": true}

// Rollout says how far CAPI has rolled out what was applied.
type Rollout struct {
	Done bool
	// Cached: every object was read from the watcher's cache, which wakes
	// the check when one of them changes.
	Cached bool
	// Progress is a line for people, e.g. "prod-control-plane 2/3 up to date, prod-md-general 3/3".
	Progress string
}

// RolloutStatus checks, for each KubeadmControlPlane and MachineDeployment
// among objs, that CAPI has seen its latest spec (status.observedGeneration)
// and that all its desired replicas are up to date and available. Each
// is read from the watcher's cache when it holds it, else from the apiserver.
func (c *Cluster) RolloutStatus(ctx context.Context, objs []*unstructured.Unstructured) (Rollout, error) {
	done, allCached := true, c.cached() != nil
	var parts []string
	for _, want := range objs {
		if !rolledOutKinds[want.GetKind()] {
			continue
		}
		live, cached := c.cachedObject(want.GroupVersionKind(), want.GetNamespace(), want.GetName())
		if cached && !specHolds(live, want) {
			// The cache has not seen the spec just applied yet: its
			// status would speak of the old one.
			cached = false
		}
		allCached = allCached && cached
		if !cached {
			live = &unstructured.Unstructured{}
			live.SetGroupVersionKind(want.GroupVersionKind())
			if err := c.client.Get(ctx, client.ObjectKeyFromObject(want), live); err != nil {
				return Rollout{}, fmt.Errorf("get %s %s: %w", want.GetKind(), objectKey(want), err)
			}
		}
		get := func(path ...string) int64 {
			v, _, _ := unstructured.NestedInt64(live.Object, path...)
			return v
		}
		desired, upToDate, available := get("spec", "replicas"), get("status", "upToDateReplicas"), get("status", "availableReplicas")
		seen := get("status", "observedGeneration") >= live.GetGeneration()
		ok := seen && upToDate == desired && available == desired
		state := fmt.Sprintf("%d/%d up to date", upToDate, desired)
		if !seen {
			state = "not yet seen by CAPI"
		}
		parts = append(parts, live.GetName()+" "+state)
		done = done && ok
	}
	return Rollout{Done: done, Cached: allCached, Progress: strings.Join(parts, ", ")}, nil
}

// specHolds reports whether live's spec has every field of want's spec
// with want's value: the object as applied, not an older version.
func specHolds(live, want *unstructured.Unstructured) bool {
	w, _, _ := unstructured.NestedFieldNoCopy(want.Object, "spec")
	l, _, _ := unstructured.NestedFieldNoCopy(live.Object, "spec")
	return subset(w, l)
}

// subset reports whether every field of want is in have with the same
// value (lists element by element, of the same length).
func subset(want, have any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return false
		}
		for k, v := range w {
			hv, ok := h[k]
			if !ok || !subset(v, hv) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return false
		}
		for i := range w {
			if !subset(w[i], h[i]) {
				return false
			}
		}
		return true
	default:
		return number(want) == number(have)
	}
}

// number makes JSON numbers of either decoding comparable.
func number(v any) any {
	switch n := v.(type) {
	case int64:
		return float64(n)
	case int:
		return float64(n)
	case int32:
		return float64(n)
	}
	return v
}
