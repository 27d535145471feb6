package mgmt

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// A machine's condition is found in CAPH v1beta1's status.conditions (CAPI
// v1beta1 form, with severity) and in status.v1beta2.conditions, as CAPH
// v1.1.8 sets both when no host is available
// (pkg/services/baremetal/baremetal/baremetal.go): HostAssociateSucceeded
// and HostAssociated, False, NoAvailableHost.
func TestConditionQueryMatch(t *testing.T) {
	t.Parallel()
	machine := func(status map[string]any) *unstructured.Unstructured {
		o := &unstructured.Unstructured{Object: map[string]any{"status": status}}
		o.SetName("metal-bm-storage-0")
		o.SetLabels(map[string]string{LabelPool: "storage"})
		return o
	}
	noHost := map[string]any{"type": "HostAssociateSucceeded", "status": "False", "severity": "Warning", "reason": "NoAvailableHost",
		"message": "no available host (all hosts are in use - found 0 hosts)", "lastTransitionTime": "2026-01-01T00:00:00Z"}
	v1beta2 := map[string]any{"v1beta2": map[string]any{"conditions": []any{map[string]any{"type": "HostAssociated", "status": "False", "reason": "NoAvailableHost"}}}}
	q := ConditionQuery{Type: "HostAssociateSucceeded", Status: "False", Reason: "NoAvailableHost"}
	for _, tc := range []struct {
		name string
		q    ConditionQuery
		obj  *unstructured.Unstructured
		want bool
	}{
		{"v1beta1 condition", q, machine(map[string]any{"conditions": []any{noHost}}), true},
		{"status defaults to False", ConditionQuery{Type: "HostAssociateSucceeded", Reason: "NoAvailableHost"}, machine(map[string]any{"conditions": []any{noHost}}), true},
		{"v1beta2 condition", ConditionQuery{Type: "HostAssociated", Reason: "NoAvailableHost"}, machine(v1beta2), true},
		{"associated", q, machine(map[string]any{"conditions": []any{map[string]any{"type": "HostAssociateSucceeded", "status": "True"}}}), false},
		{"another reason", q, machine(map[string]any{"conditions": []any{map[string]any{"type": "HostAssociateSucceeded", "status": "False", "reason": "HostAssociateFailed"}}}), false},
		{"no status", q, machine(nil), false},
	} {
		hit, ok := tc.q.match(tc.obj)
		if ok != tc.want {
			t.Errorf("%s: matched %v, want %v", tc.name, ok, tc.want)
			continue
		}
		if ok && (hit.Name != "metal-bm-storage-0" || hit.Pool != "storage" || hit.Condition.Reason != "NoAvailableHost") {
			t.Errorf("%s: hit %+v", tc.name, hit)
		}
		if tc.name == "v1beta1 condition" && (hit.Condition.LastTransitionTime == nil || !hit.Condition.LastTransitionTime.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) ||
			hit.Condition.Message != noHost["message"]) {
			t.Errorf("%s: condition %+v", tc.name, hit.Condition)
		}
	}
}
