package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"lok8s.dev/provisioner/internal/connguard"
	"lok8s.dev/provisioner/internal/service"
	"lok8s.dev/provisioner/internal/store"
)

// NewToken returns a fresh random API token.
func NewToken() string { return service.NewToken() }

// HashToken is how tokens are stored (service.HashToken).
func HashToken(token string) []byte { return service.HashToken(token) }

type principalKey struct{}

// SessionCookie names the dashboard's session cookie. The API accepts it
// instead of a bearer token on GET requests only (a browser's EventSource
// and download links cannot send headers); everything that changes state
// needs the header, or goes through the dashboard's CSRF-checked forms.
const SessionCookie = "lok8s_session"

func principal(ctx context.Context) store.Principal {
	p, _ := ctx.Value(principalKey{}).(store.Principal)
	return p
}

// seesInternals reports whether the request's principal may see error
// texts as they are (admins); tenants see them without internal addresses.
func seesInternals(r *http.Request) bool { return principal(r.Context()).Admin }

// actor is who the audit log says made the request.
func (s *Server) actor(r *http.Request) store.Actor {
	return service.Actor(r.Context(), principal(r.Context()))
}

var errUnauthorized = &service.Error{Status: http.StatusUnauthorized, Slug: "unauthorized", Title: "Unauthorized",
	Detail: "send a valid API token as 'Authorization: Bearer <token>'"}

// authenticate resolves the bearer token to a principal or answers 401.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie(SessionCookie); err == nil && r.Header.Get("Authorization") == "" &&
			(r.Method == http.MethodGet || r.Method == http.MethodHead) {
			s.authenticateSession(w, r, next, c.Value)
			return
		}
		scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lok8s"`)
			s.writeProblem(w, r, errUnauthorized)
			return
		}
		p, err := s.authenticateToken(r.Context(), HashToken(strings.TrimSpace(token)))
		if errors.Is(err, store.ErrNotFound) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lok8s", error="invalid_token"`)
			s.writeProblem(w, r, errUnauthorized)
			return
		}
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		s.serveAs(w, r, next, p)
	})
}

// authenticateSession resolves a dashboard session cookie to a principal or answers 401.
func (s *Server) authenticateSession(w http.ResponseWriter, r *http.Request, next http.Handler, id string) {
	ses, err := s.svc.Session(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		s.writeProblem(w, r, errUnauthorized)
		return
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	s.serveAs(w, r, next, ses.Principal)
}

// serveAs serves r as p: the access log names p's tenant, and the
// connection counts as authenticated (connguard).
func (s *Server) serveAs(w http.ResponseWriter, r *http.Request, next http.Handler, p store.Principal) {
	if rec, ok := w.(*statusRecorder); ok {
		rec.tenant = p.TenantName
	}
	connguard.Authenticated(r.Context())
	next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
}

// requireAdmin lets only admin tokens through.
func (s *Server) requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !principal(r.Context()).Admin {
			s.writeProblem(w, r, service.Forbidden("this endpoint needs an admin token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
