package web

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"lok8s.dev/provisioner/internal/service"
)

// tokensData is the API tokens page: the tenant's tokens, the form's
// values and, once, a token just made.
type tokensData struct {
	Items   []service.TokenInfo
	Name    string
	Days    string
	Created *service.TokenView
}

// tokenLifetimes are the form's choices of how long a new token lasts, in
// days ("" is no expiry).
var tokenLifetimes = []string{"7", "30", "90", "365", ""}

// Lifetimes is what the form offers.
func (tokensData) Lifetimes() []string { return tokenLifetimes }

func (h *Handler) tokensPage(w http.ResponseWriter, r *http.Request) {
	h.renderTokens(w, r, http.StatusOK, pageData{Notice: notice(r)}, &tokensData{Days: "90"})
}

func (h *Handler) renderTokens(w http.ResponseWriter, r *http.Request, status int, page pageData, d *tokensData) {
	list, err := h.cfg.Service.Tokens(r.Context(), principal(r), service.TenantRef{})
	if err != nil && page.Problem == nil {
		page.Problem = h.problem(r, err)
	}
	d.Items = list.Items
	page.Title, page.Nav, page.Data = "API tokens", "tokens", d
	h.render(w, r, status, "tokens", page)
}

// createToken makes a token of the session's tenant and shows it, this
// once, on the page it answers with (not after a redirect: the value is
// never stored or put in a URL).
func (h *Handler) createToken(w http.ResponseWriter, r *http.Request) {
	d := &tokensData{Name: strings.TrimSpace(r.PostFormValue("name")), Days: r.PostFormValue("days")}
	in := service.TokenInput{Name: d.Name}
	if d.Days != "" {
		days, err := strconv.Atoi(d.Days)
		if err != nil || days < 1 || days > 3650 {
			h.renderTokens(w, r, http.StatusUnprocessableEntity, pageData{Problem: &service.Problem{Title: "Invalid request",
				Errors: []service.FieldError{{Field: "days", Message: "must be a number of days from 1 to 3650, or none"}}}}, d)
			return
		}
		at := time.Now().Add(time.Duration(days) * 24 * time.Hour).UTC().Truncate(time.Second)
		in.ExpiresAt = &at
	}
	made, err := h.cfg.Service.CreateToken(r.Context(), principal(r), service.TenantRef{}, in)
	if err != nil {
		p := h.problem(r, err)
		h.renderTokens(w, r, p.Status, pageData{Problem: p}, d)
		return
	}
	h.renderTokens(w, r, http.StatusCreated, pageData{}, &tokensData{Days: "90", Created: &made})
}

// revokeToken revokes a token of the session's tenant; revoking the
// session's own token ends the session, so that goes to the sign-in page.
func (h *Handler) revokeToken(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if err := h.cfg.Service.RevokeToken(r.Context(), principal(r), service.TenantRef{}, id); err != nil {
		p := h.problem(r, err)
		h.renderTokens(w, r, p.Status, pageData{Problem: p}, &tokensData{Days: "90"})
		return
	}
	if id == session(r.Context()).Principal.TokenID.String() {
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/tokens?done=token-revoked", http.StatusSeeOther)
}
