package localmgmt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Cluster is a whole local management cluster: a kube-apiserver and etcd
// (started by envtest from AssetsDir) running Cluster API's controllers.
type Cluster struct {
	// Kubeconfig is a cluster-admin kubeconfig file for it.
	Kubeconfig  string
	Controllers *Controllers
	env         *envtest.Environment
}

// ClusterOptions configures StartCluster.
type ClusterOptions struct {
	// AssetsDir holds kube-apiserver and etcd (hack/test-assets.sh).
	AssetsDir string
	// ControllersDir holds the managers (hack/capi-controllers.sh).
	ControllersDir string
	// WorkDir receives the kubeconfig (kubeconfig.yaml), certificates and
	// the managers' logs.
	WorkDir string
}

// StartCluster starts the apiserver and etcd, then Cluster API's
// controllers with their CRDs and webhooks. The caller must call Stop.
func StartCluster(ctx context.Context, opts ClusterOptions) (*Cluster, error) {
	if opts.AssetsDir == "" || opts.ControllersDir == "" || opts.WorkDir == "" {
		return nil, errors.New("localmgmt: AssetsDir, ControllersDir and WorkDir are required")
	}
	if err := os.MkdirAll(opts.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("localmgmt: %w", err)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    opts.AssetsDir,
		ControlPlaneStartTimeout: time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	env.ControlPlane.GetAPIServer().Path = filepath.Join(opts.AssetsDir, "kube-apiserver")
	env.ControlPlane.Etcd = &envtest.Etcd{Path: filepath.Join(opts.AssetsDir, "etcd")}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("localmgmt: start kube-apiserver and etcd: %w", err)
	}
	c := &Cluster{env: env, Kubeconfig: filepath.Join(opts.WorkDir, "kubeconfig.yaml")}
	admin, err := env.AddUser(envtest.User{Name: "lok8s-admin", Groups: []string{"system:masters"}}, nil)
	if err == nil {
		err = writeKubeconfig(c.Kubeconfig, admin.Config())
	}
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("localmgmt: admin kubeconfig: %w", err)
	}
	c.Controllers, err = Start(ctx, Options{Config: cfg, ControllersDir: opts.ControllersDir, WorkDir: opts.WorkDir})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return c, nil
}

// Stop stops the controllers, then the apiserver and etcd.
func (c *Cluster) Stop() error {
	return errors.Join(c.Controllers.Stop(), c.env.Stop())
}
