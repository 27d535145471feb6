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
	// Progress is a line for people, e.g. "prod-control-plane 2/3 up to date, prod-md-general 3/3".
	Progress string
}

// RolloutStatus checks, for each KubeadmControlPlane and MachineDeployment
// among objs, that CAPI has seen its latest spec (status.observedGeneration)
// and that all its desired replicas are up to date and available.
func (c *Cluster) RolloutStatus(ctx context.Context, objs []*unstructured.Unstructured) (Rollout, error) {
	done := true
	var parts []string
	for _, want := range objs {
		if !rolledOutKinds[want.GetKind()] {
			continue
		}
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(want.GroupVersionKind())
		if err := c.client.Get(ctx, client.ObjectKeyFromObject(want), live); err != nil {
			return Rollout{}, fmt.Errorf("get %s %s: %w", want.GetKind(), objectKey(want), err)
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
	return Rollout{Done: done, Progress: strings.Join(parts, ", ")}, nil
}
