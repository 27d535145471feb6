package api

import (
	"fmt"
	"net/http"
	"time"

	"lok8s.dev/provisioner/internal/access"
	"lok8s.dev/provisioner/internal/service"

	"lok8s.dev/provisioner/internal/store"
)

// QuotaLimits is a tenant's quota; a limit left out (or null) is no limit.
type QuotaLimits struct {
	Clusters           *int32 `json:"clusters"`
	MachinesPerCluster *int32 `json:"machinesPerCluster"`
	Machines           *int32 `json:"machines"`
	// KubeconfigMaxTTLSeconds bounds the ?ttl= of a kubeconfig download
	// (null: the service's default, 24 h).
	KubeconfigMaxTTLSeconds *int32 `json:"kubeconfigMaxTTLSeconds"`
}

// QuotaUsage is what a tenant's live clusters use.
type QuotaUsage struct {
	Clusters int64 `json:"clusters"`
	Machines int64 `json:"machines"`
}

// QuotaView is a tenant's quota and usage.
type QuotaView struct {
	Tenant string      `json:"tenant"`
	Limits QuotaLimits `json:"limits"`
	Usage  QuotaUsage  `json:"usage"`
}

// maxKubeconfigTTLPolicy is the longest kubeconfig TTL an admin may allow
// a tenant, in seconds (30 days).
const maxKubeconfigTTLPolicy = 30 * 24 * 3600

func (s *Server) writeQuota(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	q, u, err := s.store.Quota(r.Context(), t.ID)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, QuotaView{
		Tenant: t.Name,
		Limits: QuotaLimits{Clusters: q.Clusters, MachinesPerCluster: q.MachinesPerCluster, Machines: q.Machines,
			KubeconfigMaxTTLSeconds: q.KubeconfigMaxTTL},
		Usage: QuotaUsage{Clusters: u.Clusters, Machines: u.Machines},
	})
}

// getOwnQuota is GET /v1/quota: the caller's tenant's quota and usage.
func (s *Server) getOwnQuota(w http.ResponseWriter, r *http.Request) {
	p := principal(r.Context())
	s.writeQuota(w, r, store.Tenant{ID: p.TenantID, Name: p.TenantName})
}

// getTenantQuota is GET /v1/tenants/{tenant}/quota (admin).
func (s *Server) getTenantQuota(w http.ResponseWriter, r *http.Request) {
	t, err := s.tenantParam(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	s.writeQuota(w, r, t)
}

// putTenantQuota is PUT /v1/tenants/{tenant}/quota (admin): it replaces
// the tenant's limits. Clusters and machines already there stay; only
// growth beyond a limit is refused (403 quota-exceeded at POST, PUT and
// PATCH of a cluster).
func (s *Server) putTenantQuota(w http.ResponseWriter, r *http.Request) {
	t, err := s.tenantParam(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	in, err := decodeStrict[QuotaLimits](r.Body)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	var fields []FieldError
	for name, v := range map[string]*int32{"clusters": in.Clusters, "machinesPerCluster": in.MachinesPerCluster, "machines": in.Machines} {
		if v != nil && *v < 0 {
			fields = append(fields, FieldError{Field: name, Message: "must be at least 0 (leave it out for no limit)"})
		}
	}
	if v := in.KubeconfigMaxTTLSeconds; v != nil && (*v < int32(access.MinTTL/time.Second) || *v > maxKubeconfigTTLPolicy) {
		fields = append(fields, FieldError{Field: "kubeconfigMaxTTLSeconds",
			Message: fmt.Sprintf("must be from %d (10 minutes, the least a token may last) to %d (30 days)", int32(access.MinTTL/time.Second), maxKubeconfigTTLPolicy)})
	}
	if len(fields) > 0 {
		service.SortFields(fields)
		s.writeProblem(w, r, service.Invalid(fields...))
		return
	}
	if err := s.store.SetQuota(r.Context(), s.actor(r), t.ID, store.Quota{
		Clusters: in.Clusters, MachinesPerCluster: in.MachinesPerCluster, Machines: in.Machines,
		KubeconfigMaxTTL: in.KubeconfigMaxTTLSeconds}); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	s.writeQuota(w, r, t)
}
