package capi_test

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMachines counts what each flavor would create: the control plane's
// machines where the provider has them (kubeadm on HCloud and EC2; none on
// EKS, whose control plane AWS runs) and every pool's, defaults included
// (spec.hrobot.workers.storage has no replicas: 1).
func TestMachines(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	for file, want := range map[string]int64{
		"hcloud.yaml":        3 + 3 + 1,
		"hcloud-hrobot.yaml": 1 + 2 + 2 + 1,
		"aws-ec2.yaml":       3 + 2,
		"aws-eks.yaml":       3 + 0,
	} {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(filepath.Join("testdata", "specs", file))
			if err != nil {
				t.Fatal(err)
			}
			p, s := detected(t, c, loadSpec(t, c, data))
			got, err := p.Machines(s)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%d machines, want %d", got, want)
			}
		})
	}
}
