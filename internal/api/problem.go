package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/store"
)

// problemBase prefixes the type URI of every problem this API returns; the
// slugs are listed in openapi.yaml.
const problemBase = "https://lok8s.dev/problems/"

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Instance  string       `json:"instance,omitempty"`
	RequestID string       `json:"requestId,omitempty"`
	Errors    []FieldError `json:"errors,omitempty"`
	// Phase is set to NotFound when a cluster does not exist.
	Phase string `json:"phase,omitempty"`
	// Line and Column locate a syntax error in the request body.
	Line   int `json:"line,omitempty"`
	Column int `json:"column,omitempty"`
	// Operation is the id of the operation a 409 is about.
	Operation string `json:"operation,omitempty"`
	// Quota is the tenant quota a 403 quota-exceeded is about.
	Quota *QuotaExceeded `json:"quota,omitempty"`
}

// QuotaExceeded names the quota a change would exceed: its limit, what the
// tenant's other clusters use, and what the change asks for.
type QuotaExceeded struct {
	Name      string `json:"name"`
	Limit     int64  `json:"limit"`
	Used      int64  `json:"used"`
	Requested int64  `json:"requested"`
}

// FieldError names a field of the request and what is wrong with it.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// apiError is an error the API reports as is: its detail is meant for the client.
type apiError struct {
	status    int
	slug      string
	title     string
	detail    string
	fields    []FieldError
	phase     string
	line      int
	column    int
	operation string
	quota     *QuotaExceeded
	// cause, when set, is logged with the problem, never sent.
	cause error
}

func (e *apiError) Error() string { return e.title + ": " + e.detail }
func (e *apiError) Unwrap() error { return e.cause }

func errBadRequest(detail string) *apiError {
	return &apiError{status: http.StatusBadRequest, slug: "bad-request", title: "Bad request", detail: detail}
}

func errNotFound(detail string) *apiError {
	return &apiError{status: http.StatusNotFound, slug: "not-found", title: "Not found", detail: detail}
}

func errConflict(detail string) *apiError {
	return &apiError{status: http.StatusConflict, slug: "conflict", title: "Conflict", detail: detail}
}

// maxReportedErrors caps the field errors one problem lists: a huge bad
// spec gets a bounded answer that says how many were left out.
const maxReportedErrors = 100

func errInvalid(fields ...FieldError) *apiError {
	detail := fmt.Sprintf("%d field(s) are invalid; see errors", len(fields))
	if n := len(fields); n > maxReportedErrors {
		detail = fmt.Sprintf("%d field(s) are invalid; the first %d are listed in errors, %d more were left out", n, maxReportedErrors, n-maxReportedErrors)
		fields = fields[:maxReportedErrors]
	}
	return &apiError{status: http.StatusUnprocessableEntity, slug: "validation", title: "Invalid request", detail: detail, fields: fields}
}

func errForbidden(detail string) *apiError {
	return &apiError{status: http.StatusForbidden, slug: "forbidden", title: "Forbidden", detail: detail}
}

// errQuotaExceeded is the 403 for a change beyond the tenant's quota.
func errQuotaExceeded(e *store.QuotaExceededError) *apiError {
	var detail string
	switch e.Quota {
	case store.QuotaClusters:
		detail = fmt.Sprintf("the tenant may have at most %d clusters and has %d: delete one, or ask an admin to raise the quota", e.Limit, e.Used)
	case store.QuotaMachinesPerCluster:
		detail = fmt.Sprintf("a cluster may have at most %d machines (control plane and pools); this spec asks for %d", e.Limit, e.Requested)
	default:
		detail = fmt.Sprintf("the tenant may have at most %d machines in all; its other clusters have %d and this spec asks for %d", e.Limit, e.Used, e.Requested)
	}
	return &apiError{status: http.StatusForbidden, slug: "quota-exceeded", title: "Quota exceeded", detail: detail,
		quota: &QuotaExceeded{Name: e.Quota, Limit: e.Limit, Used: e.Used, Requested: e.Requested}}
}

// errManagementUnavailable is the 503 for a management cluster the
// service could not read (err is logged, not sent: it names addresses).
func errManagementUnavailable(err error) *apiError {
	return &apiError{status: http.StatusServiceUnavailable, slug: "management-unavailable", title: "Management cluster unavailable",
		detail: "the cluster's management cluster could not be read; retry after the time in Retry-After", cause: err}
}

// errOverloaded is the 503 of a replica past its capacity: as many
// requests in flight as it takes (Server.shed), or as many connections
// open (connguard.Limiter, through Overloaded).
func errOverloaded() *apiError {
	return &apiError{status: http.StatusServiceUnavailable, slug: "overloaded", title: "Overloaded",
		detail: "this replica is working as much as it takes; retry after the time in Retry-After"}
}

// retryAfterOverloaded is the Retry-After of 503 overloaded, in seconds.
const retryAfterOverloaded = 1

// Overloaded is the problem+json body and the Retry-After (in seconds) of
// 503 overloaded, for an answer given before any request is read, outside
// the handler: a connection past connguard.Limiter's cap.
func Overloaded() (body []byte, retryAfter int) {
	p, _ := problemFor(errOverloaded())
	body, _ = json.Marshal(p) // strings and an int: it cannot fail
	return body, retryAfterOverloaded
}

// statusClientClosedRequest is the status logged for a request whose
// client went away before the answer.
const statusClientClosedRequest = 499

// retryAfterUnavailable is the Retry-After of a 503, in seconds.
const retryAfterUnavailable = "5"

// problemFor maps any error to the problem the client sees. Errors this
// package did not make for clients become a generic 500: their text may hold
// internals, so it is logged, never sent.
func problemFor(err error) (Problem, bool) {
	var ae *apiError
	var fe spec.FieldErrors
	var se *spec.SyntaxError
	var mbe *http.MaxBytesError
	var qe *store.QuotaExceededError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &qe):
		ae = errQuotaExceeded(qe)
	case errors.As(err, &fe):
		ae = errInvalid(fieldErrors(fe)...)
	case errors.As(err, &se):
		ae = &apiError{status: http.StatusBadRequest, slug: "malformed-body", title: "Malformed request body",
			detail: se.Error(), line: se.Line, column: se.Column}
	case errors.As(err, &mbe):
		ae = &apiError{status: http.StatusRequestEntityTooLarge, slug: "body-too-large", title: "Request body too large",
			detail: fmt.Sprintf("the request body must be at most %d bytes", mbe.Limit)}
	case errors.Is(err, store.ErrNotFound):
		ae = errNotFound(err.Error())
	case errors.Is(err, store.ErrConflict):
		ae = errConflict(err.Error())
	case store.IsUnavailable(err):
		ae = &apiError{status: http.StatusServiceUnavailable, slug: "unavailable", title: "Service unavailable",
			detail: "the service's database does not answer; retry after the time in Retry-After"}
	default:
		return Problem{Type: problemBase + "internal", Title: "Internal server error", Status: http.StatusInternalServerError,
			Detail: "the server failed to handle the request; quote the request id when reporting it"}, false
	}
	return Problem{
		Type: problemBase + ae.slug, Title: ae.title, Status: ae.status, Detail: ae.detail,
		Errors: ae.fields, Phase: ae.phase, Line: ae.line, Column: ae.column, Operation: ae.operation,
		Quota: ae.quota,
	}, true
}

// sortFields orders field errors by field, keeping each field's in order.
func sortFields(fields []FieldError) {
	slices.SortStableFunc(fields, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
}

func fieldErrors(fe spec.FieldErrors) []FieldError {
	out := make([]FieldError, 0, len(fe))
	for _, e := range fe {
		out = append(out, FieldError{Field: e.Field, Message: e.Message})
	}
	return out
}

// writeProblem sends err as problem+json, logging errors that are not the client's.
func (s *Server) writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		// The client went away (or its deadline passed) mid-request: not
		// the service's error. The access log's one INFO line records it
		// with status 499 (nginx's "client closed request"); nobody reads
		// a body.
		w.WriteHeader(statusClientClosedRequest)
		return
	}
	p, known := problemFor(err)
	p.Instance = r.URL.Path
	p.RequestID = requestID(r.Context())
	switch {
	case !known:
		s.logger.ErrorContext(r.Context(), "request failed", "error", err, "request_id", p.RequestID)
	case p.Status == http.StatusServiceUnavailable && p.Type == problemBase+"management-unavailable":
		s.logger.WarnContext(r.Context(), "request failed: the management cluster cannot be read", "error", err, "request_id", p.RequestID)
		w.Header().Set("Retry-After", retryAfterUnavailable)
	case p.Status == http.StatusServiceUnavailable:
		s.logger.WarnContext(r.Context(), "request failed: unavailable", "error", err, "request_id", p.RequestID)
		if w.Header().Get("Retry-After") == "" {
			w.Header().Set("Retry-After", retryAfterUnavailable)
		}
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
