// Package web is the dashboard: server-rendered pages at / with a little
// JavaScript (embedded, nothing from a CDN). A person signs in with an API
// token and gets a server-side session (cookie lok8s_session); every page
// and form then calls the service (internal/service) as that token's
// principal, as the API's handlers do, so the dashboard repeats none of
// the API's validation or tenant checks.
package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"lok8s.dev/provisioner/internal/api"
	"lok8s.dev/provisioner/internal/connguard"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/service"
	"lok8s.dev/provisioner/internal/store"
)

//go:embed static templates
var assets embed.FS

// SessionTTL is how long a sign-in lasts.
const SessionTTL = 12 * time.Hour

// signinCookie carries the sign-in form's nonce; the form carries the
// nonce signed with the server's key (a signed double submit: there is no
// session yet to keep a token in, and a cookie an attacker plants passes
// only with a signature only the server can make).
const signinCookie = "lok8s_signin"

// csrfField names the hidden field every form carries.
const csrfField = "csrf"

// contentSecurityPolicy allows no inline script or style: all of it is in
// the embedded files under /static/.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// Config is what the dashboard needs.
type Config struct {
	Store *store.Store
	// API is the API handler (api.Server): the dashboard serves /v1,
	// /api, /healthz, /readyz and /openapi.yaml with it.
	API http.Handler
	// Service runs what the pages show and the forms do (the API's
	// Server.Service).
	Service *service.Service
	Logger  *slog.Logger
	// RiverUI, when set, is River's own UI, served under RiverUIPath to
	// sessions of admin tokens only.
	RiverUI http.Handler
	// Keyring signs the sign-in form's CSRF nonce.
	Keyring *seal.Keyring
}

const signinPurpose = "dashboard sign-in form"

// RiverUIPath is where River's UI is mounted (its handler's prefix).
const RiverUIPath = "/admin/river"

// Handler serves the dashboard and, beside it, the API.
type Handler struct {
	cfg   Config
	pages map[string]*template.Template
	// parts holds the templates of templates/part_*.html (renderPart).
	parts  *template.Template
	router chi.Router
}

// New builds the handler of the whole service: the API's paths go to
// cfg.API, everything else to the dashboard.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil || cfg.API == nil || cfg.Service == nil || cfg.Keyring == nil {
		return nil, errors.New("web: Config.Store, Config.API, Config.Service and Config.Keyring are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, pages: map[string]*template.Template{}}
	// The layout and the parts (templates/part_*.html) every page may use,
	// which fragments are also rendered with alone.
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/part_*.html")
	if err != nil {
		return nil, err
	}
	if h.parts, err = layout.Clone(); err != nil {
		return nil, err
	}
	pages, err := fs.Glob(assets, "templates/page_*.html")
	if err != nil {
		return nil, err
	}
	for _, p := range pages {
		t, err := template.Must(layout.Clone()).ParseFS(assets, p)
		if err != nil {
			return nil, err
		}
		h.pages[p[len("templates/page_"):len(p)-len(".html")]] = t
	}
	h.router = h.routes()
	return h, nil
}

// ServeHTTP implements http.Handler: the API's paths go to the API as they
// came, the rest to the dashboard.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case p == "/v1" || strings.HasPrefix(p, "/v1/") || p == "/api" || strings.HasPrefix(p, "/api/") ||
		p == "/healthz" || p == "/readyz" || p == "/openapi.yaml":
		h.cfg.API.ServeHTTP(w, r)
	default:
		h.router.ServeHTTP(w, r)
	}
}

func (h *Handler) routes() chi.Router {
	r := chi.NewRouter()
	static, _ := fs.Sub(assets, "static")
	r.Group(func(r chi.Router) {
		r.Use(securityHeaders, h.refuseBadPath)
		r.Handle("/static/*", http.StripPrefix("/static/", http.FileServerFS(static)))
		r.Get("/signin", h.signinPage)
		r.Post("/signin", h.signin)
		r.NotFound(func(w http.ResponseWriter, r *http.Request) {
			h.render(w, r, http.StatusNotFound, "error", pageData{Title: "Not found", Error: "There is no page at " + r.URL.Path + "."})
		})
		if h.cfg.RiverUI != nil {
			// River's UI has its own pages and a JSON API (no form
			// fields for CSRF tokens): the session cookie is
			// SameSite=Strict, its API takes JSON only, and every
			// request that changes something must come from this
			// origin (a browser sends Origin with each such request).
			admin := sameOrigin(h.requireAdminSession(h.cfg.RiverUI))
			r.Handle(RiverUIPath, admin)
			r.Handle(RiverUIPath+"/*", admin)
		}
		r.Group(func(r chi.Router) {
			r.Use(h.requireSession)
			r.Post("/signout", h.signout)
			r.Get("/", h.clustersPage)
			r.Get("/clusters/new", h.newClusterPage)
			r.Post("/clusters/new", h.createCluster)
			r.Get("/clusters/{name}", h.clusterPage)
			r.Get("/clusters/{name}/row", h.clusterRow)
			r.Post("/clusters/{name}/retry", h.retryCluster)
			r.Post("/clusters/{name}/delete", h.deleteCluster)
			r.Post("/clusters/{name}/scale", h.scalePool)
			r.Get("/credentials", h.credentialsPage)
			r.Post("/credentials", h.putCredential)
			r.Post("/credentials/{name}/delete", h.deleteCredential)
			r.Get("/tokens", h.tokensPage)
			r.Post("/tokens", h.createToken)
			r.Post("/tokens/{id}/revoke", h.revokeToken)
		})
	})
	return r
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// refuseBadPath answers a path that holds a NUL byte or invalid UTF-8
// with 404, as the API does: no cluster, credential or token can have
// such a name, and Postgres cannot compare such text.
func (h *Handler) refuseBadPath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; strings.ContainsRune(p, 0) || !utf8.ValidString(p) {
			h.render(w, r, http.StatusNotFound, "error", pageData{Title: "Not found", Error: "There is no such page: its address is not valid UTF-8 text."})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// secure reports whether the request came over TLS (directly or through a
// proxy that says so), so cookies get the Secure attribute.
func secure(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

type sessionKey struct{}

func session(ctx context.Context) store.Session {
	s, _ := ctx.Value(sessionKey{}).(store.Session)
	return s
}

// loadSession resolves the session cookie; without a session (none, or
// one that ended) it sends the request to the sign-in page, and when the
// session cannot be read it says so, and reports false.
func (h *Handler) loadSession(w http.ResponseWriter, r *http.Request) (store.Session, bool) {
	var id string
	if c, err := r.Cookie(api.SessionCookie); err == nil {
		id = c.Value
	}
	ses, err := h.cfg.Service.Session(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return store.Session{}, false
	case err != nil:
		h.cfg.Logger.ErrorContext(r.Context(), "dashboard: load session", "error", err)
		h.render(w, r, http.StatusInternalServerError, "error", pageData{Title: "Error", Error: "The server could not load your session; try again."})
		return store.Session{}, false
	}
	return ses, true
}

// requireSession resolves the session cookie, sending those without one to
// the sign-in page, and checks the CSRF token of every POST.
func (h *Handler) requireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ses, ok := h.loadSession(w, r)
		if !ok {
			return
		}
		if r.Method == http.MethodPost && !sameToken(r.PostFormValue(csrfField), ses.CSRFToken) {
			h.render(w, r, http.StatusForbidden, "error", pageData{Title: "Forbidden",
				Error: "The form was missing its security token (it may be from an old page). Go back, reload and try again."})
			return
		}
		connguard.Authenticated(r.Context())
		// What the service does for this request (audit rows, log
		// lines) names one request id, as an API request's does.
		ctx := service.WithRequestID(context.WithValue(r.Context(), sessionKey{}, ses), uuid.NewString())
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// sameOrigin refuses, with 403, a request other than GET, HEAD or OPTIONS
// whose Origin header is missing or names another origin than the one it
// was sent to: the check browsers make possible where a CSRF token cannot
// be added (River's UI calls its JSON API with fetch).
func sameOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			next.ServeHTTP(w, r)
			return
		}
		scheme := "http"
		if secure(r) {
			scheme = "https"
		}
		if origin := r.Header.Get("Origin"); origin == "" || origin != scheme+"://"+r.Host {
			http.Error(w, "forbidden: a request that changes something must come from this origin", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireAdminSession lets through sessions of admin tokens only.
func (h *Handler) requireAdminSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ses, ok := h.loadSession(w, r)
		switch {
		case !ok:
		case !ses.Principal.Admin:
			h.render(w, r, http.StatusForbidden, "error", pageData{Title: "Forbidden", Error: "The job queue is for operators: sign in with an admin token."})
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func (h *Handler) signinPage(w http.ResponseWriter, r *http.Request) {
	h.renderSignin(w, r, http.StatusOK, "")
}

func (h *Handler) renderSignin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	nonce := randomToken()
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: nonce, Path: "/signin", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: secure(r), MaxAge: 3600})
	h.render(w, r, status, "signin", pageData{Title: "Sign in", CSRF: h.cfg.Keyring.Sign(signinPurpose, []byte(nonce)), Error: msg})
}

func (h *Handler) signin(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(signinCookie)
	if err != nil || !sameToken(r.PostFormValue(csrfField), h.cfg.Keyring.Sign(signinPurpose, []byte(c.Value))) {
		h.renderSignin(w, r, http.StatusForbidden, "The sign-in form expired; try again.")
		return
	}
	token := r.PostFormValue("token")
	p, err := h.cfg.Store.Authenticate(r.Context(), api.HashToken(token))
	if errors.Is(err, store.ErrNotFound) || token == "" {
		h.renderSignin(w, r, http.StatusUnauthorized, "That API token is not valid (or was revoked).")
		return
	}
	if err != nil {
		h.cfg.Logger.ErrorContext(r.Context(), "dashboard: sign in", "error", err)
		h.renderSignin(w, r, http.StatusInternalServerError, "The server could not check the token; try again.")
		return
	}
	id := randomToken()
	expires := time.Now().Add(SessionTTL)
	if err := h.cfg.Store.CreateSession(r.Context(), api.HashToken(id), p, randomToken(), expires); err != nil {
		h.cfg.Logger.ErrorContext(r.Context(), "dashboard: create session", "error", err)
		h.renderSignin(w, r, http.StatusInternalServerError, "The server could not start a session; try again.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: "", Path: "/signin", MaxAge: -1})
	http.SetCookie(w, &http.Cookie{Name: api.SessionCookie, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: secure(r), Expires: expires})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (h *Handler) signout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(api.SessionCookie); err == nil {
		if err := h.cfg.Store.DeleteSession(r.Context(), api.HashToken(c.Value)); err != nil {
			h.cfg.Logger.ErrorContext(r.Context(), "dashboard: sign out", "error", err)
		}
	}
	http.SetCookie(w, &http.Cookie{Name: api.SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: secure(r)})
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// principal is the session's principal: who the service acts for.
func principal(r *http.Request) store.Principal { return session(r.Context()).Principal }

// problem is what the page shows of err: the service's problem, or, for
// an error not meant for people (logged here), a generic one.
func (h *Handler) problem(r *http.Request, err error) *service.Problem {
	p, known := service.ProblemOf(err)
	p.RequestID = service.RequestID(r.Context())
	if !known && r.Context().Err() == nil { // else the person went away: not the service's error
		h.cfg.Logger.ErrorContext(r.Context(), "dashboard: request failed", "error", err, "request_id", p.RequestID)
	}
	return &p
}

// warningsPurpose signs the warnings a redirect carries (carryWarnings).
const warningsPurpose = "dashboard warnings"

// carryWarnings adds warnings to target, the page a form's success
// redirects to, signed for the session: the page shows them
// (carriedWarnings), and a link made elsewhere cannot put words on it.
func (h *Handler) carryWarnings(r *http.Request, target string, warnings []string) string {
	if len(warnings) == 0 {
		return target
	}
	data, err := json.Marshal(warnings)
	if err != nil {
		return target
	}
	sep := "?"
	if strings.Contains(target, "?") {
		sep = "&"
	}
	q := url.Values{"warnings": {base64.RawURLEncoding.EncodeToString(data)}, "sig": {h.signWarnings(r, data)}}
	return target + sep + q.Encode()
}

// carriedWarnings returns the warnings carryWarnings put on the request's
// URL, or nil when there are none or their signature is not this
// session's.
func (h *Handler) carriedWarnings(r *http.Request) []string {
	q := r.URL.Query()
	data, err := base64.RawURLEncoding.DecodeString(q.Get("warnings"))
	if err != nil || len(data) == 0 || !sameToken(q.Get("sig"), h.signWarnings(r, data)) {
		return nil
	}
	var out []string
	if json.Unmarshal(data, &out) != nil {
		return nil
	}
	return out
}

func (h *Handler) signWarnings(r *http.Request, data []byte) string {
	return h.cfg.Keyring.Sign(warningsPurpose, append([]byte(session(r.Context()).CSRFToken+"\x00"), data...))
}

// pageData is what every page template gets.
type pageData struct {
	Title  string
	Nav    string
	CSRF   string
	Tenant string
	Notice string
	// Warnings are what the API accepted and ignored of what was
	// submitted (shown with the notice).
	Warnings []string
	Error    string
	Problem  *service.Problem
	// Stream is the event stream the page's script listens to, and Cluster
	// the cluster the page shows.
	Stream, Cluster string
	Data            any
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, page string, d pageData) {
	if ses := session(r.Context()); ses.CSRFToken != "" {
		d.CSRF, d.Tenant = ses.CSRFToken, ses.Principal.TenantName
	}
	h.write(w, r, status, page, h.pages[page], "layout.html", d)
}

// renderPart writes one of the parts alone, an HTML fragment (no layout)
// for a page's script to insert.
func (h *Handler) renderPart(w http.ResponseWriter, r *http.Request, part string, data any) {
	h.write(w, r, http.StatusOK, part, h.parts, part, data)
}

// write executes the template name of t with data and sends it with
// status, never to be cached: what it shows is the session's. page names
// what is rendered in the log.
func (h *Handler) write(w http.ResponseWriter, r *http.Request, status int, page string, t *template.Template, name string, data any) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		h.cfg.Logger.ErrorContext(r.Context(), "dashboard: render", "page", page, "error", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = io.Copy(w, &buf)
}

// notices are the messages a redirect may ask a page to show (by key, so a
// link cannot put words on the page).
var notices = map[string]string{
	"created":       "Cluster submitted: it is being provisioned.",
	"deleting":      "Cluster deletion started.",
	"retried":       "Retry started.",
	"cred-saved":    "Credential saved.",
	"cred-delete":   "Credential deleted.",
	"token-revoked": "Token revoked.",
}

func notice(r *http.Request) string { return notices[r.URL.Query().Get("done")] }

func pathEscape(s string) string { return url.PathEscape(s) }
