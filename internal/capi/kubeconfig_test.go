package capi_test

import (
	"os"
	"path/filepath"
	"testing"
)

// TestKubeconfigRotates: only EKS, whose kubeconfig Secret CAPA rewrites
// with a 15-minute token, says its kubeconfig rotates (the eks flavor's
// kubeconfig: {rotates: true}); kubeadm clusters' kubeconfigs hold a
// client certificate and are stored once.
func TestKubeconfigRotates(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	for file, want := range map[string]bool{
		"hcloud.yaml":        false,
		"hcloud-hrobot.yaml": false,
		"aws-ec2.yaml":       false,
		"aws-eks.yaml":       true,
	} {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(filepath.Join("testdata", "specs", file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.KubeconfigRotates(loadSpec(t, c, data))
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("rotates %v, want %v", got, want)
			}
		})
	}
}
