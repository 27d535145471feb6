package mgmt

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ConditionQuery selects objects of a kind by a condition: of Type, with
// Status ("" is "False") and, when set, Reason.
type ConditionQuery struct {
	GVK    schema.GroupVersionKind
	Type   string
	Status string
	Reason string
}

// ConditionHit is an object whose condition a ConditionQuery matched.
type ConditionHit struct {
	Name string
	// Pool is the object's lok8s.dev/pool label (empty for the control plane's).
	Pool      string
	Condition Condition
}

// ObjectsWithCondition lists the objects of q.GVK in namespace labelled
// as cluster's and returns those whose condition matches q, in list
// order. Conditions are read from status.conditions (CAPI's v1beta1 form,
// which CAPH v1beta1 objects use) and status.v1beta2.conditions.
func (c *Cluster) ObjectsWithCondition(ctx context.Context, namespace, cluster string, q ConditionQuery) ([]ConditionHit, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(q.GVK.GroupVersion().WithKind(q.GVK.Kind + "List"))
	if err := c.client.List(ctx, list, client.InNamespace(namespace), client.MatchingLabels{ClusterNameLabel: cluster}); err != nil {
		return nil, fmt.Errorf("list %ss of %s/%s: %w", q.GVK.Kind, namespace, cluster, err)
	}
	var hits []ConditionHit
	for i := range list.Items {
		if hit, ok := q.match(&list.Items[i]); ok {
			hits = append(hits, hit)
		}
	}
	return hits, nil
}

// match reports whether o has the condition q asks for.
func (q ConditionQuery) match(o *unstructured.Unstructured) (ConditionHit, bool) {
	status := q.Status
	if status == "" {
		status = "False"
	}
	for _, cond := range objectConditions(o) {
		if cond.Type == q.Type && cond.Status == status && (q.Reason == "" || cond.Reason == q.Reason) {
			return ConditionHit{Name: o.GetName(), Pool: o.GetLabels()[LabelPool], Condition: cond}, true
		}
	}
	return ConditionHit{}, false
}

// objectConditions reads an object's conditions, in either place.
func objectConditions(o *unstructured.Unstructured) []Condition {
	var out []Condition
	for _, path := range [][]string{{"status", "conditions"}, {"status", "v1beta2", "conditions"}} {
		list, _, _ := unstructured.NestedSlice(o.Object, path...)
		for _, item := range list {
			m, ok := item.(map[string]any)
			if !ok {
				continue
			}
			str := func(k string) string { s, _ := m[k].(string); return s }
			c := Condition{Type: str("type"), Status: str("status"), Reason: str("reason"), Message: str("message")}
			if t, err := time.Parse(time.RFC3339, str("lastTransitionTime")); err == nil {
				c.LastTransitionTime = &t
			}
			out = append(out, c)
		}
	}
	return out
}
