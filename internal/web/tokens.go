package web

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"lok8s.dev/provisioner/internal/api"
)

// tokensData is the API tokens page: the tenant's tokens, the form's
// values and, once, a token just made.
type tokensData struct {
	Items   []api.TokenInfo
	Name    string
	Days    string
	Created *api.TokenView
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
	var list api.TokenList
	if p := h.get(r, "/v1/tokens", &list); p != nil && page.Problem == nil {
		page.Problem = p
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
	in := api.TokenInput{Name: d.Name}
	if d.Days != "" {
		days, err := strconv.Atoi(d.Days)
		if err != nil || days < 1 || days > 3650 {
			h.renderTokens(w, r, http.StatusUnprocessableEntity, pageData{Problem: &api.Problem{Title: "Invalid request",
				Errors: []api.FieldError{{Field: "days", Message: "must be a number of days from 1 to 3650, or none"}}}}, d)
			return
		}
		at := time.Now().Add(time.Duration(days) * 24 * time.Hour).UTC().Truncate(time.Second)
		in.ExpiresAt = &at
	}
	raw, _ := json.Marshal(in)
	res := h.call(r, http.MethodPost, "/v1/tokens", "application/json", raw)
	if res.Problem != nil {
		h.renderTokens(w, r, res.Status, pageData{Problem: res.Problem}, d)
		return
	}
	var made api.TokenView
	if err := json.Unmarshal(res.Body, &made); err != nil {
		h.renderTokens(w, r, http.StatusInternalServerError, pageData{Problem: &api.Problem{Title: "Unreadable answer", Detail: err.Error()}}, d)
		return
	}
	h.renderTokens(w, r, http.StatusCreated, pageData{}, &tokensData{Days: "90", Created: &made})
}

// revokeToken revokes a token of the session's tenant; revoking the
// session's own token ends the session, so that goes to the sign-in page.
func (h *Handler) revokeToken(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	res := h.call(r, http.MethodDelete, "/v1/tokens/"+pathEscape(id), "", nil)
	if res.Problem != nil {
		h.renderTokens(w, r, res.Status, pageData{Problem: res.Problem}, &tokensData{Days: "90"})
		return
	}
	if id == session(r.Context()).Principal.TokenID.String() {
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/tokens?done=token-revoked", http.StatusSeeOther)
}
