package capi_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lok8s.dev/provisioner/internal/capi"
)

// TestCheckRequirements holds specs against what the provider manifests
// state: CAPH v1.1.x supports Kubernetes 1.32 to 1.36
// (docs/caph/01-getting-started/01-introduction.md) and its nodes need a
// CNI and the hcloud CCM; EC2 nodes a CNI and the AWS CCM, which exists for
// 1.32 to 1.36; EKS runs its own CNI and CCM, and its managed
// node groups start at 1.33 (CAPA book, topics/eks/creating-a-cluster.md);
// a CCM of ours there is refused.
func TestCheckRequirements(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	roles := map[string]string{"cilium": "cni", "ccm": "ccm"}
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join("testdata", "specs", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	for _, tc := range []struct {
		name, spec string
		want       map[string]string // field -> message part; nil: no errors
	}{
		{"hcloud with cilium and ccm", read("hcloud.yaml"), nil},
		{"hcloud below the range", strings.Replace(read("hcloud.yaml"), `version: "v1.34.2"`, `version: "v1.31.10"`, 1),
			map[string]string{"spec.kubernetes.version": "provider hetzner supports Kubernetes v1.32 to v1.36; v1.31.10 is outside that range"}},
		{"hcloud above the range", strings.Replace(read("hcloud.yaml"), `version: "v1.34.2"`, `version: "v1.37.0"`, 1),
			map[string]string{"spec.kubernetes.version": "v1.32 to v1.36"}},
		{"hcloud without its CNI", strings.Replace(read("hcloud.yaml"), "    - cilium\n", "", 1),
			map[string]string{"spec.bootstrap": "needs a CNI (cilium) in spec.bootstrap"}},
		{"hcloud without addons", strings.Replace(read("hcloud.yaml"), "    - cilium\n    - ccm\n", "", 1),
			map[string]string{"spec.bootstrap": "needs a CNI (cilium) and a cloud-controller-manager (ccm)"}},
		{"ec2 with cilium and ccm", read("aws-ec2.yaml"), nil},
		// EC2: the minors of the AWS CCM image table (cloud-provider-aws
		// supports only its own minor: docs/README.md, "Compatibility with
		// Kubernetes"; TestAWSCCMImageFollowsTheMinor).
		{"ec2 below the range", strings.Replace(read("aws-ec2.yaml"), `version: "v1.34.1"`, `version: "v1.31.10"`, 1),
			map[string]string{"spec.kubernetes.version": "provider aws supports Kubernetes v1.32 to v1.36; v1.31.10 is outside that range"}},
		{"ec2 above the range", strings.Replace(read("aws-ec2.yaml"), `version: "v1.34.1"`, `version: "v1.37.0"`, 1),
			map[string]string{"spec.kubernetes.version": "v1.32 to v1.36"}},
		{"ec2 without its CNI", strings.Replace(read("aws-ec2.yaml"), "bootstrap: [cilium, ccm]", "bootstrap: [ccm]", 1),
			map[string]string{"spec.bootstrap": "needs a CNI (cilium)"}},
		{"eks needs neither", read("aws-eks.yaml"), nil},
		{"eks with cilium", read("aws-eks-cilium.yaml"), nil},
		// EKS runs its own cloud-controller-manager: the eks flavor's
		// requirements.refusedAddons.
		{"eks with a ccm", strings.Replace(read("aws-eks-cilium.yaml"), "bootstrap: [cilium, cert-manager]", "bootstrap: [cilium, ccm, cert-manager]", 1),
			map[string]string{"spec.bootstrap": "provider aws (flavor eks) runs its own cloud-controller-manager: remove ccm from spec.bootstrap"}},
		{"eks below its range", strings.Replace(read("aws-eks.yaml"), `version: "v1.33.2"`, `version: "v1.32.4"`, 1),
			map[string]string{"spec.kubernetes.version": "provider aws (flavor eks) supports Kubernetes v1.33 or later"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, s := detected(t, c, loadSpec(t, c, []byte(tc.spec)))
			errs := p.CheckRequirements(s, roles)
			if len(errs) != len(tc.want) {
				t.Fatalf("errors %v, want %v", errs, tc.want)
			}
			for _, e := range errs {
				if want, ok := tc.want[e.Field]; !ok || !strings.Contains(e.Message, want) {
					t.Errorf("%s: %q, want %q", e.Field, e.Message, want)
				}
			}
		})
	}
}

func TestVersionRange(t *testing.T) {
	t.Parallel()
	r := capi.VersionRange{Min: "v1.32", Max: "v1.36"}
	for v, want := range map[string]bool{"v1.31.10": false, "v1.32.0": true, "v1.36.9": true, "v1.37.0": false, "v1.100.0": false, "bad": false} {
		if got := r.Contains(v); got != want {
			t.Errorf("%s in %s: %v, want %v", v, r, got, want)
		}
	}
}

// A manifest's requirements are checked at load, naming the file.
func TestLoadCatalogChecksRequirements(t *testing.T) {
	t.Parallel()
	dir := copyTemplates(t)
	replaceInFile(t, filepath.Join(dir, "providers", "hetzner", "provider.yaml"), "kubernetes: {min: v1.32, max: v1.36}", "kubernetes: {min: v1.36, max: \"1.32\"}")
	_, err := capi.LoadCatalog(os.DirFS(dir))
	if err == nil || !strings.Contains(err.Error(), "providers/hetzner/provider.yaml") || !strings.Contains(err.Error(), `requirements.kubernetes.max: "1.32"`) {
		t.Fatalf("error %v", err)
	}
}

// A role both required and refused is a manifest error, named at load.
func TestLoadCatalogChecksRefusedAddons(t *testing.T) {
	t.Parallel()
	dir := copyTemplates(t)
	replaceInFile(t, filepath.Join(dir, "providers", "aws", "provider.yaml"), "refusedAddons: [ccm]", "addons: [ccm]\n      refusedAddons: [ccm, CNI]")
	_, err := capi.LoadCatalog(os.DirFS(dir))
	if err == nil || !strings.Contains(err.Error(), "providers/aws/provider.yaml") ||
		!strings.Contains(err.Error(), `requirements.refusedAddons[0]: "ccm" is also required`) ||
		!strings.Contains(err.Error(), `requirements.refusedAddons[1]: "CNI" is not an addon role`) {
		t.Fatalf("error %v", err)
	}
}
