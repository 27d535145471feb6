package spec

import (
	"encoding/json"
	"testing"
)

// The region is read from whichever provider section the stored spec has:
// a Go-typed one (hcloud, aws) or a catalog provider's (Extra).
func TestClusterSpecRegion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, spec, want string }{
		{"hcloud", `{"hcloud":{"region":"fsn1"},"hrobot":{"hosts":[]}}`, "fsn1"},
		{"aws", `{"aws":{"region":"eu-central-1","flavor":"eks"}}`, "eu-central-1"},
		{"catalog section", `{"fakecloud":{"region":"nbg1","workers":{}}}`, "nbg1"},
		{"catalog section without one", `{"inmemory":{"controlPlane":{"replicas":1}}}`, ""},
		{"a region that is not text", `{"fakecloud":{"region":{"name":"nbg1"}}}`, ""},
		{"no provider section", `{"kubernetes":{"version":"v1.34.2"}}`, ""},
	} {
		var s ClusterSpec
		if err := json.Unmarshal([]byte(tc.spec), &s); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := s.Region(); got != tc.want {
			t.Errorf("%s: Region() = %q, want %q", tc.name, got, tc.want)
		}
	}
}
