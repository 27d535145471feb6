package web

import (
	"reflect"
	"testing"
)

// The scale form lists the pools of both spec shapes: spec.<section>.workers
// and the CLI's current spec.workers (section "", patched as spec.workers).
func TestSpecPoolsOfBothShapes(t *testing.T) {
	t.Parallel()
	sections := specPools([]byte(`{"spec":{"hcloud":{"region":"fsn1","workers":{"gpu":{"replicas":1},"general":{"replicas":3}}},"hrobot":{"workers":{"metal":{"replicas":2}}}}}`))
	current := specPools([]byte(`{"spec":{"provider":{"name":"hetzner","config":{"region":"fsn1"}},"controlPlane":{"replicas":1,"type":"cpx31"},"workers":{"web":{"replicas":2,"type":"cpx31"}},"hrobot":{"workers":{"metal":{"replicas":2}}}}}`))
	if want := []specPool{{Section: "hcloud", Name: "general", Replicas: 3}, {Section: "hcloud", Name: "gpu", Replicas: 1}, {Section: "hrobot", Name: "metal", Replicas: 2}}; !reflect.DeepEqual(sections, want) {
		t.Errorf("seed shape: %+v", sections)
	}
	if want := []specPool{{Section: "", Name: "web", Replicas: 2}, {Section: "hrobot", Name: "metal", Replicas: 2}}; !reflect.DeepEqual(current, want) {
		t.Errorf("current shape: %+v", current)
	}
}
