package api

import (
	"net/http"

	"lok8s.dev/provisioner/internal/service"
)

// The catalog's types are the service's.
type (
	// CatalogView is what the service can provision.
	CatalogView = service.CatalogView
	// ManagementClusterView is one management cluster as the catalog sees it.
	ManagementClusterView = service.ManagementClusterView
	// ProviderAvailability says whether a management cluster has a provider.
	ProviderAvailability = service.ProviderAvailability
	// InstalledProviderView is one entry of clusterctl's inventory.
	InstalledProviderView = service.InstalledProviderView
	// ProviderView is an installed infrastructure provider.
	ProviderView = service.ProviderView
	// VersionRangeView is an inclusive range of Kubernetes minors.
	VersionRangeView = service.VersionRangeView
	// CredentialProviderView is what a credential of a provider holds.
	CredentialProviderView = service.CredentialProviderView
	// CredentialField is one field a provider's credential takes.
	CredentialField = service.CredentialField
)

func (s *Server) catalog(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.svc.Catalog(r.Context()))
}
