// Package mgmt knows the management clusters the service can drive: the
// SaaS default (LOK8S_MGMT_KUBECONFIG, or in-cluster config) and named ones
// by domain, each a kubeconfig file <dir>/<domain>.yaml.
package mgmt

import (
	"os"
	"path/filepath"
)

// Registry locates management clusters' kubeconfigs.
type Registry struct {
	// DefaultKubeconfig is the SaaS-mode management cluster's kubeconfig
	// ("" means in-cluster config).
	DefaultKubeconfig string
	// KubeconfigDir holds <domain>.yaml for named management clusters.
	KubeconfigDir string
}

// KubeconfigPath is where the named management cluster's kubeconfig lives.
func (r Registry) KubeconfigPath(domain string) string {
	return filepath.Join(r.KubeconfigDir, domain+".yaml")
}

// Known reports whether a named management cluster is configured.
func (r Registry) Known(domain string) bool {
	if r.KubeconfigDir == "" || domain == "" || filepath.Base(domain) != domain {
		return false
	}
	info, err := os.Stat(r.KubeconfigPath(domain))
	return err == nil && info.Mode().IsRegular()
}
