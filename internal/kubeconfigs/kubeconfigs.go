// Package kubeconfigs gives out a workload cluster's kubeconfig, for every
// use the service makes of it (addons, gitops, updates) and for the user's
// download: the one the kubeconfig step stored, or, where the provider's
// kubeconfig rotates (EKS: CAPA rewrites a token valid 15 minutes), the
// CAPI <cluster>-kubeconfig Secret read from the management cluster on
// every call and never stored.
package kubeconfigs

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/client-go/tools/clientcmd"

	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/store"
)

// Errors of Source.Kubeconfig, wrapping the cause.
var (
	// ErrNotAvailable: there is no kubeconfig yet (the kubeconfig step has
	// not stored one, or CAPI has not written its Secret).
	ErrNotAvailable = errors.New("workload kubeconfig not available yet")
	// ErrManagementUnavailable: the management cluster holding a rotating
	// kubeconfig could not be read (not configured, unreachable, refused).
	ErrManagementUnavailable = errors.New("management cluster cannot be read")
	// ErrNoExecForm: the cluster's provider writes no exec-plugin kubeconfig
	// (only EKS's, whose kubeconfig rotates, does).
	ErrNoExecForm = errors.New("no exec-plugin kubeconfig for this cluster")
)

// Catalog is what Source asks of the provider catalog.
type Catalog interface {
	ProviderSections() []string
	KubeconfigRotates(*spec.Capi) (bool, error)
	KubeconfigSimulated(*spec.Capi) (bool, error)
}

// Source returns workload kubeconfigs.
type Source struct {
	Store    *store.Store
	Keyring  *seal.Keyring
	Clusters *mgmt.Registry
	Catalog  Catalog
}

// Rotates reports whether c's kubeconfig rotates, from its spec's provider
// or flavor.
func (s *Source) Rotates(c store.Cluster) (bool, error) {
	sp, err := spec.ParseSections(c.Spec, s.Catalog.ProviderSections())
	if err != nil {
		return false, fmt.Errorf("kubeconfig of %s: spec: %w", c.Name, err)
	}
	return s.RotatesFor(sp)
}

// Simulated reports whether c's workload API server is a simulation
// (capi.KubeconfigPolicy.Simulated): its kubeconfig is handed out as it
// is, since none can be issued there.
func (s *Source) Simulated(c store.Cluster) (bool, error) {
	sp, err := spec.ParseSections(c.Spec, s.Catalog.ProviderSections())
	if err != nil {
		return false, fmt.Errorf("kubeconfig of %s: spec: %w", c.Name, err)
	}
	simulated, err := s.Catalog.KubeconfigSimulated(sp)
	if err != nil {
		return false, fmt.Errorf("kubeconfig of %s: %w", sp.Metadata.Name, err)
	}
	return simulated, nil
}

// RotatesFor reports whether the kubeconfig of a cluster of spec sp rotates.
func (s *Source) RotatesFor(sp *spec.Capi) (bool, error) {
	rotates, err := s.Catalog.KubeconfigRotates(sp)
	if err != nil {
		return false, fmt.Errorf("kubeconfig of %s: %w", sp.Metadata.Name, err)
	}
	return rotates, nil
}

// Kubeconfig returns c's workload kubeconfig as it is now. A rotating one
// is read from the management cluster on every call: callers use it at
// once and do not keep it.
func (s *Source) Kubeconfig(ctx context.Context, c store.Cluster) ([]byte, error) {
	rotates, err := s.Rotates(c)
	if err != nil {
		return nil, err
	}
	return s.KubeconfigOf(ctx, c, rotates)
}

// KubeconfigOf is Kubeconfig for a caller that knows whether c's
// kubeconfig rotates (the pipeline, from the cluster's stored provider).
func (s *Source) KubeconfigOf(ctx context.Context, c store.Cluster, rotates bool) ([]byte, error) {
	if rotates {
		return s.Current(ctx, c)
	}
	return s.stored(ctx, c)
}

// Exec returns the kubeconfig CAPA writes for users of an EKS cluster
// (<cluster>-user-kubeconfig, written once): the same endpoint and CA with
// an exec plugin, `aws eks get-token`, that makes a token from the user's
// own AWS credentials at each use, so it does not expire. It holds no
// secret. ErrNoExecForm for a cluster whose kubeconfig does not rotate.
func (s *Source) Exec(ctx context.Context, c store.Cluster) ([]byte, error) {
	rotates, err := s.Rotates(c)
	if err != nil {
		return nil, err
	}
	if !rotates {
		return nil, ErrNoExecForm
	}
	return s.read(ctx, c, c.Name+"-user")
}

// Current reads c's kubeconfig from CAPI's Secret on its management
// cluster, once the CAPI Cluster there is checked to be the tenant's (the
// Secret is CAPI's and carries no tenant label).
func (s *Source) Current(ctx context.Context, c store.Cluster) ([]byte, error) {
	return s.read(ctx, c, c.Name)
}

// read reads the Secret <prefix>-kubeconfig of c's namespace.
func (s *Source) read(ctx context.Context, c store.Cluster, prefix string) ([]byte, error) {
	mc, err := s.Clusters.Cluster(c.ManagementDomain)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrManagementUnavailable, err)
	}
	if err := mc.CheckOwner(ctx, mgmt.ClusterGVK, c.Namespace, c.Name, c.TenantID.String()); err != nil {
		if errors.Is(err, mgmt.ErrNotOwned) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrManagementUnavailable, err)
	}
	kc, err := mc.Kubeconfig(ctx, c.Namespace, prefix)
	switch {
	case errors.Is(err, mgmt.ErrNotFound):
		return nil, fmt.Errorf("%w: %w", ErrNotAvailable, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrManagementUnavailable, err)
	}
	if _, err := clientcmd.Load(kc); err != nil {
		return nil, fmt.Errorf("kubeconfig Secret %s/%s-kubeconfig: %w", c.Namespace, prefix, err)
	}
	return kc, nil
}

// stored opens the kubeconfig the kubeconfig step stored.
func (s *Source) stored(ctx context.Context, c store.Cluster) ([]byte, error) {
	sealed, err := s.Store.SealedKubeconfig(ctx, c.TenantID, c.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: none stored for %s", ErrNotAvailable, c.Name)
	}
	if err != nil {
		return nil, err
	}
	kc, err := s.Keyring.Open(sealed, store.KubeconfigAAD(c.TenantID, c.ID))
	if err != nil {
		return nil, fmt.Errorf("workload kubeconfig of %s cannot be opened with the configured keys: %w", c.Name, err)
	}
	return kc, nil
}
