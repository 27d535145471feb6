package web

import (
	"reflect"
	"testing"

	"lok8s.dev/provisioner/internal/service"
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

// The clusters list and the cluster's page show the region of both spec
// shapes: spec.<section>.region and the CLI's current
// spec.provider.config.region (what the guided form writes).
func TestRowOfBothShapes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, spec string }{
		{"seed shape", `{"spec":{"kubernetes":{"version":"v1.34.2"},"hcloud":{"region":"fsn1"},"hrobot":{"hosts":[]}}}`},
		{"current shape", `{"spec":{"kubernetes":{"version":"v1.34.2"},"provider":{"name":"hetzner","config":{"region":"fsn1"}},"controlPlane":{"replicas":1}}}`},
	} {
		row := rowOf(service.ClusterView{Spec: []byte(tc.spec)})
		if row.Region != "fsn1" || row.Version != "v1.34.2" {
			t.Errorf("%s: region %q, version %q", tc.name, row.Region, row.Version)
		}
	}
}
