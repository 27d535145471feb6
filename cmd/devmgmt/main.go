// Command devmgmt runs a local management cluster for development: a
// kube-apiserver and etcd with Cluster API's own controllers (core, kubeadm
// bootstrap and control plane, and CAPD with its in-memory backend), all
// built from the Go module proxy. hack/dev.sh (make run) starts it and points
// the service at the kubeconfig it writes, once it has written <workdir>/ready;
// it runs until SIGINT or SIGTERM.
//
//	KUBEBUILDER_ASSETS=... LOK8S_CAPI_CONTROLLERS=... devmgmt -workdir DIR
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"lok8s.dev/provisioner/internal/localmgmt"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "devmgmt:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	workDir := flag.String("workdir", "", "where the kubeconfig (kubeconfig.yaml), certificates and controller logs go")
	flag.Parse()
	assets, controllers := os.Getenv("KUBEBUILDER_ASSETS"), os.Getenv(localmgmt.ControllersEnv)
	switch {
	case *workDir == "":
		return errors.New("-workdir is required")
	case assets == "":
		return errors.New("KUBEBUILDER_ASSETS is required: the output of hack/test-assets.sh")
	case controllers == "":
		return fmt.Errorf("%s is required: the output of hack/capi-controllers.sh", localmgmt.ControllersEnv)
	}
	c, err := localmgmt.StartCluster(ctx, localmgmt.ClusterOptions{AssetsDir: assets, ControllersDir: controllers, WorkDir: *workDir})
	if err != nil {
		return err
	}
	ready := filepath.Join(*workDir, "ready")
	if err := os.WriteFile(ready, []byte(c.Kubeconfig+"\n"), 0o644); err != nil {
		return errors.Join(err, c.Stop())
	}
	defer os.Remove(ready)
	fmt.Fprintf(os.Stderr, "devmgmt: management cluster ready (controllers started in %s); kubeconfig %s; logs in %s/logs\n",
		c.Controllers.StartDuration.Round(100_000_000), c.Kubeconfig, *workDir)
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "devmgmt: stopping")
	return c.Stop()
}
