package service

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"k8s.io/apimachinery/pkg/util/validation"

	"lok8s.dev/provisioner/internal/store"
)

// tokenPrefix marks lok8s API tokens, so leaked ones are easy to recognise.
const tokenPrefix = "lok8s_"

// NewToken returns a fresh random API token.
func NewToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// HashToken is how tokens are stored: SHA-256, which suffices for random
// 256-bit tokens (no password to stretch).
func HashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
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

// TokenList is a tenant's tokens.
type TokenList struct {
	Items []TokenInfo `json:"items"`
}

// ValidName refuses a name (of field) that is not a DNS label.
func ValidName(field, name string) error {
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return Invalid(FieldError{Field: field, Message: strings.Join(msgs, "; ")})
	}
	return nil
}

// errNeedsAdmin is the 403 of what only admin tokens may do.
var errNeedsAdmin = Forbidden("this endpoint needs an admin token")

// TenantRef names the tenant a use case acts on: the caller's own (the
// zero value) or, for admins only, one named (NamedTenant).
type TenantRef struct {
	name  string
	named bool
}

// NamedTenant refers to the tenant name (admins only).
func NamedTenant(name string) TenantRef { return TenantRef{name: name, named: true} }

// Tenant is the tenant ref names for p: p's own, or (admins only) the
// tenant named.
func (s *Service) Tenant(ctx context.Context, p store.Principal, ref TenantRef) (store.Tenant, error) {
	if !ref.named {
		return store.Tenant{ID: p.TenantID, Name: p.TenantName}, nil
	}
	name := ref.name
	if !p.Admin {
		return store.Tenant{}, errNeedsAdmin
	}
	t, err := s.store.TenantByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return store.Tenant{}, NotFound(fmt.Sprintf("no tenant named %q", name))
	}
	return t, err
}

// CreateToken makes a (never admin) token of tenant, returned this once.
func (s *Service) CreateToken(ctx context.Context, p store.Principal, tenant TenantRef, in TokenInput) (TokenView, error) {
	err := ValidName("name", in.Name)
	if err == nil && in.ExpiresAt != nil && !in.ExpiresAt.After(time.Now()) {
		err = Invalid(FieldError{Field: "expiresAt", Message: "must be in the future"})
	}
	if err != nil {
		return TokenView{}, err
	}
	t, err := s.Tenant(ctx, p, tenant)
	if err != nil {
		return TokenView{}, err
	}
	token := NewToken()
	id, err := s.store.CreateToken(ctx, t.ID, in.Name, HashToken(token), false, in.ExpiresAt)
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			err = Conflict(fmt.Sprintf("tenant %q already has a token named %q", t.Name, in.Name))
		}
		return TokenView{}, err
	}
	if err := s.store.Audit(ctx, Actor(ctx, p), "token.create", "tenants/"+t.Name+"/tokens/"+in.Name, nil); err != nil {
		return TokenView{}, err
	}
	return TokenView{ID: id.String(), Name: in.Name, Tenant: t.Name, Token: token, ExpiresAt: in.ExpiresAt}, nil
}

// Tokens lists tenant's tokens: each one's metadata, last use (to the minute), expiry and
// revocation, p's own marked current; never a token.
func (s *Service) Tokens(ctx context.Context, p store.Principal, tenant TenantRef) (TokenList, error) {
	t, err := s.Tenant(ctx, p, tenant)
	if err != nil {
		return TokenList{}, err
	}
	tokens, err := s.store.Tokens(ctx, t.ID)
	if err != nil {
		return TokenList{}, err
	}
	out := TokenList{Items: make([]TokenInfo, 0, len(tokens))}
	for _, k := range tokens {
		out.Items = append(out.Items, TokenInfo{ID: k.ID.String(), Name: k.Name, Admin: k.Admin, CreatedAt: k.CreatedAt,
			LastUsedAt: k.LastUsedAt, ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt, Current: k.ID == p.TokenID})
	}
	return out, nil
}

// RevokeToken makes token id of tenant (p's own token too) stop working at once; its dashboard
// sessions end, its event streams within a heartbeat. A token of another
// tenant is not found.
func (s *Service) RevokeToken(ctx context.Context, p store.Principal, tenant TenantRef, id string) error {
	t, err := s.Tenant(ctx, p, tenant)
	if err != nil {
		return err
	}
	tokenID, err := uuid.Parse(id)
	if err != nil {
		return NotFound("no such token")
	}
	err = s.store.RevokeToken(ctx, Actor(ctx, p), t.ID, tokenID)
	if s.cfg.Reads != nil {
		s.cfg.Reads.InvalidateToken(tokenID) // this replica: at once; the others hear of it
	}
	return err
}

// Session is the dashboard session whose id (the cookie's value) is id:
// store.ErrNotFound for none, an expired one, or one whose token was
// revoked. The dashboard's pages and the API's GETs with the session
// cookie both resolve it here.
func (s *Service) Session(ctx context.Context, id string) (store.Session, error) {
	if id == "" {
		return store.Session{}, fmt.Errorf("no session id: %w", store.ErrNotFound)
	}
	return s.store.SessionByHash(ctx, HashToken(id))
}
