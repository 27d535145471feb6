// Package service owns what a principal may do with clusters, their
// operations, credentials and API tokens: each use case is a method taking
// the caller's principal and typed input, and answering with the views the
// caller may see, or an error ProblemOf turns into an RFC 9457 problem.
// Tenant scoping and the admin checks live here, once; the JSON API
// (internal/api) and the dashboard (internal/web) are two front ends over
// it that decode their requests, call it and encode its answers.
package service

import (
	"context"
	"errors"
	"log/slog"

	"lok8s.dev/provisioner/internal/capi"
	"lok8s.dev/provisioner/internal/readmodel"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/store"
)

// Config is what the service needs.
type Config struct {
	Store   *store.Store
	Keyring *seal.Keyring
	Logger  *slog.Logger
	// Enqueue and CancelJob join the queue to the store's transactions.
	Enqueue   store.EnqueueFunc
	CancelJob store.CancelJobFunc
	// StepNames lists an operation kind's pipeline steps.
	StepNames func(store.OperationKind) []string
	// ManagementClusterKnown reports whether a named management cluster
	// (spec.managementCluster.domain) is configured.
	ManagementClusterKnown func(domain string) bool
	// SpecOptions validate submitted specs: known addons, and the provider
	// sections the catalog installs (zero: the spec package's defaults).
	SpecOptions spec.ValidateOptions
	// Providers are the installed infrastructure providers (the catalog).
	Providers []ProviderView
	// CredentialProviders lists the providers credentials can be stored for,
	// and CredentialFields the fields each takes (from the provider catalog).
	CredentialProviders []string
	CredentialFields    func(provider string) ([]CredentialField, bool)
	// Catalog is the provider catalog a submitted spec is read against
	// (LoadSpec): the provider it selects, that provider's requirements,
	// and the machines it asks for, held against the tenant's quota.
	Catalog *capi.Catalog
	// ProviderMissing, for a named management cluster, says why it cannot
	// take the named provider ("" when it can, or when it could not be
	// asked); nil: not checked.
	ProviderMissing func(ctx context.Context, domain, provider string) string
	// AddonRoles maps addons to their roles (cni, ccm): what the
	// providers' requirements name, and the catalog lists.
	AddonRoles map[string]string
	// ManagementClusters reports, for the catalog, which providers each
	// configured management cluster really has; nil: none listed.
	ManagementClusters func(ctx context.Context) []ManagementClusterView
	// Reads keeps cluster statuses and API tokens in memory (nil: every
	// read goes to Postgres); writes invalidate what they change.
	Reads *readmodel.Model
}

func (c Config) validate() error {
	switch {
	case c.Store == nil:
		return errors.New("service: Config.Store is required")
	case c.Keyring == nil:
		return errors.New("service: Config.Keyring is required")
	case c.Enqueue == nil || c.CancelJob == nil:
		return errors.New("service: Config.Enqueue and Config.CancelJob are required")
	case c.StepNames == nil:
		return errors.New("service: Config.StepNames is required")
	case c.ManagementClusterKnown == nil:
		return errors.New("service: Config.ManagementClusterKnown is required")
	case c.Catalog == nil:
		return errors.New("service: Config.Catalog is required")
	case c.CredentialFields == nil:
		return errors.New("service: Config.CredentialFields is required")
	}
	return nil
}

// Service runs the use cases.
type Service struct {
	cfg    Config
	store  *store.Store
	logger *slog.Logger
}

// New checks cfg and builds the service.
func New(cfg Config) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, store: cfg.Store, logger: cfg.Logger}, nil
}

type requestIDKey struct{}

// WithRequestID marks ctx as working request id: the audit rows and log
// lines of what is done under it name it.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID is the request id WithRequestID set ("" when none).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// Actor is who the audit log says did what ctx is working for p.
func Actor(ctx context.Context, p store.Principal) store.Actor {
	return store.Actor{TenantID: p.TenantID, TokenID: p.TokenID, RequestID: RequestID(ctx)}
}

// seesInternals reports whether p may see error texts as they are
// (admins); tenants see them without internal addresses.
func seesInternals(p store.Principal) bool { return p.Admin }

// clusterChanged drops what the read model holds of p's cluster name:
// called right after a write, before answering, so this replica's next
// read of it goes to Postgres (read-your-writes); other replicas hear of
// the change through Postgres.
func (s *Service) clusterChanged(p store.Principal, name string) {
	if s.cfg.Reads != nil {
		s.cfg.Reads.InvalidateCluster(p.TenantID, name)
	}
}
