package mgmt

import (
	"os"
	"path/filepath"
	"testing"
)

func TestKnown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mgmt.example.com.yaml"), []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
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
		{"../mgmt.example.com", false},
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
