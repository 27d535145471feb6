package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"lok8s.dev/provisioner/internal/gomod"
)

// Where the CRDs come from.
const (
	// CAPIModule's CRDs are read from the module cache at CAPIVersion, the
	// version go.mod requires (the service imports it): the hack/ scripts
	// ask go.mod for it, and TestCAPIVersionIsGoMods fails when this one
	// differs.
	CAPIModule  = "sigs.k8s.io/cluster-api"
	CAPIVersion = "v1.14.2"
	// CAPAModule is not a dependency of the main module (its dependency graph
	// is large); its CRDs are read from the module cache at this version,
	// declared only here (hack/test-assets.sh reads it from this file).
	CAPAModule  = "sigs.k8s.io/cluster-api-provider-aws/v2"
	CAPAVersion = "v2.13.0"
	// CAPHDir (relative to the repository root) holds CAPH's CRDs as data:
	// its module is not served by the module proxy.
	CAPHDir = "testdata/crds/caph-v1.1.8"
)

// CRDPaths returns the directories whose CRDs Start installs: Cluster API's
// core, kubeadm bootstrap and kubeadm control plane bases, CAPA's bases and
// the repository's CAPH copy. Modules are located in (and if need be
// downloaded to) the Go module cache with `go mod download -json`, so tests
// need neither hack/test-assets.sh nor network once the cache is warm.
func CRDPaths(ctx context.Context, root string) ([]string, error) {
	capiQuery, capaQuery := CAPIModule+"@"+CAPIVersion, CAPAModule+"@"+CAPAVersion
	dirs, err := gomod.Dirs(ctx, capiQuery, capaQuery)
	if err != nil {
		return nil, fmt.Errorf("testenv: CRD modules: %w", err)
	}
	capi, capa := dirs[capiQuery], dirs[capaQuery]
	return []string{
		filepath.Join(capi, "core", "config", "crd", "bases"),
		filepath.Join(capi, "bootstrap", "kubeadm", "config", "crd", "bases"),
		filepath.Join(capi, "controlplane", "kubeadm", "config", "crd", "bases"),
		filepath.Join(capa, "config", "crd", "bases"),
		filepath.Join(root, filepath.FromSlash(CAPHDir)),
	}, nil
}

// LoadCRDs reads every CRD under CRDPaths (a missing directory is an error)
// and prepares them for a cluster without the providers' webhooks.
//
// Conversion: a CRD whose spec.conversion uses a Webhook strategy names the
// provider's webhook Service, which does not exist here, and the apiserver
// would then fail every read or write of a non-storage version. Such CRDs get
// strategy None instead: the apiserver serves each version by rewriting only
// apiVersion. That is fine for tests that use the storage versions (CAPI
// v1beta2, CAPA v1beta2, CAPH v1beta1), which is what our manifests use; do
// not rely on v1beta1<->v1beta2 field conversions here. (The bases shipped
// by CAPI v1.14.2, CAPA v2.13.0 and CAPH v1.1.8 declare no conversion at all
// — kustomize adds it at release — so today this changes nothing.)
func LoadCRDs(ctx context.Context, root string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	paths, err := CRDPaths(ctx, root)
	if err != nil {
		return nil, err
	}
	opts := envtest.CRDInstallOptions{Paths: paths, ErrorIfPathMissing: true}
	if err := envtest.ReadCRDFiles(&opts); err != nil {
		return nil, fmt.Errorf("testenv: reading CRDs: %w", err)
	}
	for i, p := range paths {
		// envtest skips a directory with no .yaml/.yml/.json: that would be a
		// silently missing provider.
		if n := countCRDFiles(p); n == 0 {
			return nil, fmt.Errorf("testenv: no CRD files in %s (path %d)", p, i)
		}
	}
	for _, crd := range opts.CRDs {
		if c := crd.Spec.Conversion; c != nil && c.Strategy == apiextensionsv1.WebhookConverter {
			crd.Spec.Conversion = &apiextensionsv1.CustomResourceConversion{Strategy: apiextensionsv1.NoneConverter}
		}
	}
	return opts.CRDs, nil
}

func countCRDFiles(dir string) int {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".yaml", ".yml", ".json":
			n++
		}
	}
	return n
}
