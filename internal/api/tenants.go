package api

import (
	"errors"
	"fmt"
	"github.com/google/uuid"
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
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Tenant    string     `json:"tenant"`
	Token     string     `json:"token"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// TokenInput asks for a token: its name and, optionally, when it expires.
type TokenInput struct {
	Name      string     `json:"name"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// TokenInfo is a token's metadata; the token itself is never shown again.
type TokenInfo struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Admin      bool       `json:"admin"`
	CreatedAt  time.Time  `json:"createdAt"`
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty"`
	ExpiresAt  *time.Time `json:"expiresAt,omitempty"`
	RevokedAt  *time.Time `json:"revokedAt,omitempty"`
	// Current marks the token the request was made with.
	Current bool `json:"current,omitempty"`
}

// TokenList is GET /v1/tokens and GET /v1/tenants/{tenant}/tokens.
type TokenList struct {
	Items []TokenInfo `json:"items"`
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

// createToken is POST /v1/tenants/{tenant}/tokens (admin).
func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	s.createTokenOf(w, r, s.tenantParam)
}

// createOwnToken is POST /v1/tokens: a token of the caller's own tenant
// (never an admin token).
func (s *Server) createOwnToken(w http.ResponseWriter, r *http.Request) {
	s.createTokenOf(w, r, ownTenant)
}

// ownTenant is the tenant of the request's principal.
func ownTenant(r *http.Request) (store.Tenant, error) {
	p := principal(r.Context())
	return store.Tenant{ID: p.TenantID, Name: p.TenantName}, nil
}

func (s *Server) createTokenOf(w http.ResponseWriter, r *http.Request, tenantOf func(*http.Request) (store.Tenant, error)) {
	in, err := decodeStrict[TokenInput](r.Body)
	if err == nil {
		err = validName("name", in.Name)
	}
	if err == nil && in.ExpiresAt != nil && !in.ExpiresAt.After(time.Now()) {
		err = errInvalid(FieldError{Field: "expiresAt", Message: "must be in the future"})
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	t, err := tenantOf(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	token := NewToken()
	id, err := s.store.CreateToken(r.Context(), t.ID, in.Name, HashToken(token), false, in.ExpiresAt)
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			err = errConflict(fmt.Sprintf("tenant %q already has a token named %q", t.Name, in.Name))
		}
		s.writeProblem(w, r, err)
		return
	}
	if err := s.store.Audit(r.Context(), s.actor(r), "token.create", "tenants/"+t.Name+"/tokens/"+in.Name, nil); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, TokenView{ID: id.String(), Name: in.Name, Tenant: t.Name, Token: token, ExpiresAt: in.ExpiresAt})
}

// tenantParam is the tenant the {tenant} path parameter names.
func (s *Server) tenantParam(r *http.Request) (store.Tenant, error) {
	name := chi.URLParam(r, "tenant")
	t, err := s.store.TenantByName(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		return store.Tenant{}, errNotFound(fmt.Sprintf("no tenant named %q", name))
	}
	return t, err
}

// listTokens is GET /v1/tenants/{tenant}/tokens (admin).
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	s.listTokensOf(w, r, s.tenantParam)
}

// listOwnTokens is GET /v1/tokens: the caller's tenant's tokens, the
// caller's own marked current.
func (s *Server) listOwnTokens(w http.ResponseWriter, r *http.Request) {
	s.listTokensOf(w, r, ownTenant)
}

// listTokensOf writes each token's metadata, last use (to the minute),
// expiry and revocation; never a token.
func (s *Server) listTokensOf(w http.ResponseWriter, r *http.Request, tenantOf func(*http.Request) (store.Tenant, error)) {
	t, err := tenantOf(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	tokens, err := s.store.Tokens(r.Context(), t.ID)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	caller := principal(r.Context()).TokenID
	out := TokenList{Items: make([]TokenInfo, 0, len(tokens))}
	for _, k := range tokens {
		out.Items = append(out.Items, TokenInfo{ID: k.ID.String(), Name: k.Name, Admin: k.Admin, CreatedAt: k.CreatedAt,
			LastUsedAt: k.LastUsedAt, ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt, Current: k.ID == caller})
	}
	writeJSON(w, http.StatusOK, out)
}

// revokeToken is DELETE /v1/tenants/{tenant}/tokens/{id} (admin).
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	s.revokeTokenOf(w, r, s.tenantParam)
}

// revokeOwnToken is DELETE /v1/tokens/{id}: a token of the caller's own
// tenant (the caller's own too: it signs the caller out).
func (s *Server) revokeOwnToken(w http.ResponseWriter, r *http.Request) {
	s.revokeTokenOf(w, r, ownTenant)
}

// revokeTokenOf makes the token stop working at once; its dashboard
// sessions end, its event streams within a heartbeat. A token of another
// tenant is not found.
func (s *Server) revokeTokenOf(w http.ResponseWriter, r *http.Request, tenantOf func(*http.Request) (store.Tenant, error)) {
	t, err := tenantOf(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	id, err := uuid.Parse(chi.URLParam(r, "id"))
	if err != nil {
		s.writeProblem(w, r, errNotFound("no such token"))
		return
	}
	err = s.store.RevokeToken(r.Context(), s.actor(r), t.ID, id)
	if s.Reads != nil {
		s.Reads.InvalidateToken(id) // this replica: at once; the others hear of it
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
