package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"k8s.io/apimachinery/pkg/util/validation"

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

// TokenView is a newly made token: the only time its value is shown.
type TokenView struct {
	Name   string `json:"name"`
	Tenant string `json:"tenant"`
	Token  string `json:"token"`
}

func validName(field, name string) error {
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return errInvalid(FieldError{Field: field, Message: strings.Join(msgs, "; ")})
	}
	return nil
}

// maxNamespace is the longest Kubernetes namespace name (a DNS label).
const maxNamespace = 63

func (s *Server) createTenant(w http.ResponseWriter, r *http.Request) {
	in, err := decodeStrict[NameInput](r.Body)
	if err == nil {
		err = validName("name", in.Name)
	}
	if err == nil && len(TenantNamespacePrefix)+len(in.Name) > maxNamespace {
		// The tenant's namespace on the SaaS management cluster is
		// lok8s-<tenant>, itself a DNS label.
		err = errInvalid(FieldError{Field: "name", Message: fmt.Sprintf("must be at most %d characters: the tenant's namespace %s<name> must be a DNS label of at most %d",
			maxNamespace-len(TenantNamespacePrefix), TenantNamespacePrefix, maxNamespace)})
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	t, err := s.store.CreateTenant(r.Context(), in.Name)
	if errors.Is(err, store.ErrConflict) {
		s.writeProblem(w, r, errConflict(fmt.Sprintf("tenant %q already exists", in.Name)))
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

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	tenantName := chi.URLParam(r, "tenant")
	in, err := decodeStrict[NameInput](r.Body)
	if err == nil {
		err = validName("name", in.Name)
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	t, err := s.store.TenantByName(r.Context(), tenantName)
	if errors.Is(err, store.ErrNotFound) {
		s.writeProblem(w, r, errNotFound(fmt.Sprintf("no tenant named %q", tenantName)))
		return
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	token := NewToken()
	if _, err := s.store.CreateToken(r.Context(), t.ID, in.Name, HashToken(token), false); err != nil {
		if errors.Is(err, store.ErrConflict) {
			err = errConflict(fmt.Sprintf("tenant %q already has a token named %q", tenantName, in.Name))
		}
		s.writeProblem(w, r, err)
		return
	}
	if err := s.store.Audit(r.Context(), s.actor(r), "token.create", "tenants/"+t.Name+"/tokens/"+in.Name, nil); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, TokenView{Name: in.Name, Tenant: t.Name, Token: token})
}
