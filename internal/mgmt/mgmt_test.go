package mgmt

import (
	"os"
	"path/filepath"
	"testing"
)

func TestKnown(t *testing.T) {
	t.Parallel()
	// A kubeconfig beside the directory, and one in a folder inside it:
	// neither is a management cluster of this registry, so a domain that
	// walks out of the directory or into a folder must not reach them.
	parent := t.TempDir()
	dir := filepath.Join(parent, "clusters")
	for _, p := range []string{
		filepath.Join(dir, "mgmt.example.com.yaml"),
		filepath.Join(parent, "outside.example.com.yaml"),
		filepath.Join(dir, "nested", "deep.example.com.yaml"),
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "adir.example.com.yaml"), 0o700); err != nil {
		t.Fatal(err)
	}
	r := &Registry{KubeconfigDir: dir}
	for _, tc := range []struct {
		domain string
		want   bool
	}{
		{"mgmt.example.com", true},
		{"other.example.com", false},
		{"adir.example.com", false},
		{"../outside.example.com", false},
		{"nested/deep.example.com", false},
		{"clusters/../../outside.example.com", false},
		{"", false},
	} {
		if got := r.Known(tc.domain); got != tc.want {
			t.Errorf("Known(%q) = %v, want %v", tc.domain, got, tc.want)
		}
	}
	if (&Registry{}).Known("mgmt.example.com") {
		t.Error("a registry without a directory knows a domain")
	}
}
