package localmgmt

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"lok8s.dev/provisioner/internal/gomod"
	"lok8s.dev/provisioner/internal/testenv"
)

// Provider is one Cluster API controller manager: its binary (built by
// hack/capi-controllers.sh) and where its CRDs and webhook manifests are in
// its module.
type Provider struct {
	// Name identifies it in log file names and webhook configuration names.
	Name string
	// Binary is the file name in the controllers directory.
	Binary string
	// Module (at testenv.CAPIVersion, the release hack/capi-controllers.sh
	// builds) holds Dir.
	Module string
	// Dir, relative to the module root, holds config/crd/bases and
	// config/webhook/manifests.yaml.
	Dir string
	// FeatureGates is the manager's --feature-gates value.
	FeatureGates string
}

// Providers are the four managers Start runs, in start order: core, kubeadm
// bootstrap, kubeadm control plane, and the Docker infrastructure provider
// (CAPD) whose Dev* kinds have the in-memory backend. Feature gates are the
// release manifests' defaults (config/manager/manager.yaml), with
// ClusterTopology on so that ClusterClass-based clusters work too.
var Providers = []Provider{
	{
		Name: "core", Binary: "capi-core",
		Module: "sigs.k8s.io/cluster-api", Dir: "core",
		FeatureGates: "MachinePool=true,ClusterTopology=true,RuntimeSDK=false,MachineSetPreflightChecks=true,PriorityQueue=true,ReconcilerRateLimiting=true",
	},
	{
		Name: "kubeadm-bootstrap", Binary: "capi-kubeadm-bootstrap",
		Module: "sigs.k8s.io/cluster-api", Dir: "bootstrap/kubeadm",
		FeatureGates: "MachinePool=true,PriorityQueue=true,ReconcilerRateLimiting=true",
	},
	{
		Name: "kubeadm-control-plane", Binary: "capi-kubeadm-control-plane",
		Module: "sigs.k8s.io/cluster-api", Dir: "controlplane/kubeadm",
		FeatureGates: "MachinePool=true,ClusterTopology=true,PriorityQueue=true,ReconcilerRateLimiting=true",
	},
	{
		Name: "docker", Binary: "capd",
		Module: "sigs.k8s.io/cluster-api/test", Dir: "infrastructure/docker",
		FeatureGates: "MachinePool=true,ClusterTopology=true,PriorityQueue=true,ReconcilerRateLimiting=true",
	},
}

// CRDDir is the provider's config/crd/bases in moduleDir.
func (p Provider) CRDDir(moduleDir string) string {
	return filepath.Join(moduleDir, filepath.FromSlash(p.Dir), "config", "crd", "bases")
}

// WebhookManifest is the provider's config/webhook/manifests.yaml in moduleDir.
func (p Provider) WebhookManifest(moduleDir string) string {
	return filepath.Join(moduleDir, filepath.FromSlash(p.Dir), "config", "webhook", "manifests.yaml")
}

// ControllersEnv names a directory holding the built managers, which
// callers read and pass to ControllersDir (when unset, it runs
// hack/capi-controllers.sh).
const ControllersEnv = "LOK8S_CAPI_CONTROLLERS"

const controllersHint = "build them with `hack/capi-controllers.sh` (prints the directory; the first build takes about 4 minutes)"

// ControllersDir returns the directory holding the managers' binaries: dir
// (the caller's $LOK8S_CAPI_CONTROLLERS) when set, otherwise the last line
// printed by hack/capi-controllers.sh under the repository root, which
// builds them on a cache miss (progress goes to progress, which may be nil).
func ControllersDir(ctx context.Context, root, dir string, progress io.Writer) (string, error) {
	if dir != "" {
		if err := checkControllers(dir); err != nil {
			return "", fmt.Errorf("localmgmt: %s=%s: %w; unset it to use hack/capi-controllers.sh, or %s", ControllersEnv, dir, err, controllersHint)
		}
		return dir, nil
	}
	script := filepath.Join(root, "hack", "capi-controllers.sh")
	dir, err := testenv.RunCacheScript(ctx, root, script, progress)
	if err != nil {
		return "", fmt.Errorf("localmgmt: %w\nset %s to a directory with the managers, or %s", err, ControllersEnv, controllersHint)
	}
	if err := checkControllers(dir); err != nil {
		return "", fmt.Errorf("localmgmt: %s printed %q: %w; %s", script, dir, err, controllersHint)
	}
	return dir, nil
}

func checkControllers(dir string) error {
	binaries := make([]string, len(Providers))
	for i, p := range Providers {
		binaries[i] = p.Binary
	}
	return testenv.CheckExecutables(dir, binaries...)
}

// ModuleDirs returns the module-cache directory of each module Providers
// use, at testenv.CAPIVersion, downloading them if needed (hack/capi-controllers.sh
// already did). It runs `go mod download -json` outside any module.
func ModuleDirs(ctx context.Context) (map[string]string, error) {
	var queries []string
	seen := map[string]bool{}
	for _, p := range Providers {
		if !seen[p.Module] {
			seen[p.Module] = true
			queries = append(queries, p.Module+"@"+testenv.CAPIVersion)
		}
	}
	byQuery, err := gomod.Dirs(ctx, queries...)
	if err != nil {
		return nil, fmt.Errorf("localmgmt: %w", err)
	}
	dirs := make(map[string]string, len(seen))
	for mod := range seen {
		dirs[mod] = byQuery[mod+"@"+testenv.CAPIVersion]
	}
	return dirs, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
