package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"lok8s.dev/provisioner/internal/service"
	"lok8s.dev/provisioner/internal/store"
)

// NameInput is a body that names something.
type NameInput struct {
	Name string `json:"name"`
}

// TenantView is a tenant as the API shows it.
type TenantView struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
}

// maxNamespace is the longest Kubernetes namespace name (a DNS label).
const maxNamespace = 63

func (s *Server) createTenant(w http.ResponseWriter, r *http.Request) {
	in, err := decodeStrict[NameInput](r.Body)
	if err == nil {
		err = service.ValidName("name", in.Name)
	}
	if err == nil && len(service.TenantNamespacePrefix)+len(in.Name) > maxNamespace {
		// The tenant's namespace on the SaaS management cluster is
		// lok8s-<tenant>, itself a DNS label.
		err = service.Invalid(FieldError{Field: "name", Message: fmt.Sprintf("must be at most %d characters: the tenant's namespace %s<name> must be a DNS label of at most %d",
			maxNamespace-len(service.TenantNamespacePrefix), service.TenantNamespacePrefix, maxNamespace)})
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	t, err := s.store.CreateTenant(r.Context(), in.Name)
	if errors.Is(err, store.ErrConflict) {
		s.writeProblem(w, r, service.Conflict(fmt.Sprintf("tenant %q already exists", in.Name)))
		return
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if err := s.store.Audit(r.Context(), s.actor(r), "tenant.create", "tenants/"+t.Name, nil); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, TenantView{Name: t.Name, CreatedAt: t.CreatedAt})
}

// createToken is POST /v1/tenants/{tenant}/tokens (admin).
func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	s.createTokenOf(w, r, service.NamedTenant(chi.URLParam(r, "tenant")))
}

// createOwnToken is POST /v1/tokens: a token of the caller's own tenant
// (never an admin token).
func (s *Server) createOwnToken(w http.ResponseWriter, r *http.Request) {
	s.createTokenOf(w, r, service.TenantRef{})
}

func (s *Server) createTokenOf(w http.ResponseWriter, r *http.Request, tenant service.TenantRef) {
	in, err := decodeStrict[service.TokenInput](r.Body)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	view, err := s.svc.CreateToken(r.Context(), principal(r.Context()), tenant, in)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, view)
}

// tenantParam is the tenant the {tenant} path parameter names.
func (s *Server) tenantParam(r *http.Request) (store.Tenant, error) {
	return s.svc.Tenant(r.Context(), principal(r.Context()), service.NamedTenant(chi.URLParam(r, "tenant")))
}

// listTokens is GET /v1/tenants/{tenant}/tokens (admin).
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	s.listTokensOf(w, r, service.NamedTenant(chi.URLParam(r, "tenant")))
}

// listOwnTokens is GET /v1/tokens: the caller's tenant's tokens, the
// caller's own marked current.
func (s *Server) listOwnTokens(w http.ResponseWriter, r *http.Request) {
	s.listTokensOf(w, r, service.TenantRef{})
}

func (s *Server) listTokensOf(w http.ResponseWriter, r *http.Request, tenant service.TenantRef) {
	out, err := s.svc.Tokens(r.Context(), principal(r.Context()), tenant)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// revokeToken is DELETE /v1/tenants/{tenant}/tokens/{id} (admin).
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	s.revokeTokenOf(w, r, service.NamedTenant(chi.URLParam(r, "tenant")))
}

// revokeOwnToken is DELETE /v1/tokens/{id}: a token of the caller's own
// tenant (the caller's own too: it signs the caller out).
func (s *Server) revokeOwnToken(w http.ResponseWriter, r *http.Request) {
	s.revokeTokenOf(w, r, service.TenantRef{})
}

func (s *Server) revokeTokenOf(w http.ResponseWriter, r *http.Request, tenant service.TenantRef) {
	if err := s.svc.RevokeToken(r.Context(), principal(r.Context()), tenant, chi.URLParam(r, "id")); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
