package service

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/store"
)

// ProblemBase prefixes the type URI of every problem; the slugs are
// listed in openapi.yaml.
const ProblemBase = "https://lok8s.dev/problems/"

// Problem is an RFC 9457 problem details object: what a caller is told of
// an error (the API sends it as problem+json, the dashboard shows it).
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

// Error is an error meant for the caller as it is: its problem's status
// (an HTTP status code, which the dashboard answers with too), type slug,
// title, detail and members.
type Error struct {
	Status    int
	Slug      string
	Title     string
	Detail    string
	Fields    []FieldError
	Phase     string
	Line      int
	Column    int
	Operation string
	Quota     *QuotaExceeded
	// Cause, when set, is logged with the problem, never sent.
	Cause error
}

func (e *Error) Error() string { return e.Title + ": " + e.Detail }
func (e *Error) Unwrap() error { return e.Cause }

// BadRequest is a 400 bad-request.
func BadRequest(detail string) *Error {
	return &Error{Status: http.StatusBadRequest, Slug: "bad-request", Title: "Bad request", Detail: detail}
}

// NotFound is a 404 not-found.
func NotFound(detail string) *Error {
	return &Error{Status: http.StatusNotFound, Slug: "not-found", Title: "Not found", Detail: detail}
}

// Conflict is a 409 conflict.
func Conflict(detail string) *Error {
	return &Error{Status: http.StatusConflict, Slug: "conflict", Title: "Conflict", Detail: detail}
}

// Forbidden is a 403 forbidden.
func Forbidden(detail string) *Error {
	return &Error{Status: http.StatusForbidden, Slug: "forbidden", Title: "Forbidden", Detail: detail}
}

// PreconditionFailed is a 412 precondition-failed.
func PreconditionFailed(detail string) *Error {
	return &Error{Status: http.StatusPreconditionFailed, Slug: "precondition-failed", Title: "Precondition failed", Detail: detail}
}

// maxReportedErrors caps the field errors one problem lists: a huge bad
// spec gets a bounded answer that says how many were left out.
const maxReportedErrors = 100

// Invalid is a 422 validation problem listing the fields.
func Invalid(fields ...FieldError) *Error {
	detail := fmt.Sprintf("%d field(s) are invalid; see errors", len(fields))
	if n := len(fields); n > maxReportedErrors {
		detail = fmt.Sprintf("%d field(s) are invalid; the first %d are listed in errors, %d more were left out", n, maxReportedErrors, n-maxReportedErrors)
		fields = fields[:maxReportedErrors]
	}
	return &Error{Status: http.StatusUnprocessableEntity, Slug: "validation", Title: "Invalid request", Detail: detail, Fields: fields}
}

// ManagementUnavailable is the 503 for a management cluster the service
// could not read (err is logged, not sent: it names addresses).
func ManagementUnavailable(err error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Slug: "management-unavailable", Title: "Management cluster unavailable",
		Detail: "the cluster's management cluster could not be read; retry after the time in Retry-After", Cause: err}
}

// quotaExceeded is the 403 for a change beyond the tenant's quota.
func quotaExceeded(e *store.QuotaExceededError) *Error {
	var detail string
	switch e.Quota {
	case store.QuotaClusters:
		detail = fmt.Sprintf("the tenant may have at most %d clusters and has %d: delete one, or ask an admin to raise the quota", e.Limit, e.Used)
	case store.QuotaMachinesPerCluster:
		detail = fmt.Sprintf("a cluster may have at most %d machines (control plane and pools); this spec asks for %d", e.Limit, e.Requested)
	default:
		detail = fmt.Sprintf("the tenant may have at most %d machines in all; its other clusters have %d and this spec asks for %d", e.Limit, e.Used, e.Requested)
	}
	return &Error{Status: http.StatusForbidden, Slug: "quota-exceeded", Title: "Quota exceeded", Detail: detail,
		Quota: &QuotaExceeded{Name: e.Quota, Limit: e.Limit, Used: e.Used, Requested: e.Requested}}
}

// ProblemOf maps any error to the problem the caller sees; known reports
// whether it was one meant for the caller. Errors not made for callers
// become a generic 500: their text may hold internals, so the caller logs
// it, never shows it.
func ProblemOf(err error) (p Problem, known bool) {
	var ae *Error
	var fe spec.FieldErrors
	var se *spec.SyntaxError
	var qe *store.QuotaExceededError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &qe):
		ae = quotaExceeded(qe)
	case errors.As(err, &fe):
		ae = Invalid(fieldErrors(fe)...)
	case errors.As(err, &se):
		ae = &Error{Status: http.StatusBadRequest, Slug: "malformed-body", Title: "Malformed request body",
			Detail: se.Error(), Line: se.Line, Column: se.Column}
	case errors.Is(err, store.ErrNotFound):
		ae = NotFound(err.Error())
	case errors.Is(err, store.ErrConflict):
		ae = Conflict(err.Error())
	case store.IsUnavailable(err):
		ae = &Error{Status: http.StatusServiceUnavailable, Slug: "unavailable", Title: "Service unavailable",
			Detail: "the service's database does not answer; retry after the time in Retry-After"}
	default:
		return Problem{Type: ProblemBase + "internal", Title: "Internal server error", Status: http.StatusInternalServerError,
			Detail: "the server failed to handle the request; quote the request id when reporting it"}, false
	}
	return Problem{
		Type: ProblemBase + ae.Slug, Title: ae.Title, Status: ae.Status, Detail: ae.Detail,
		Errors: ae.Fields, Phase: ae.Phase, Line: ae.Line, Column: ae.Column, Operation: ae.Operation,
		Quota: ae.Quota,
	}, true
}

// SortFields orders field errors by field, keeping each field's in order.
func SortFields(fields []FieldError) {
	slices.SortStableFunc(fields, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
}

func fieldErrors(fe spec.FieldErrors) []FieldError {
	out := make([]FieldError, 0, len(fe))
	for _, e := range fe {
		out = append(out, FieldError{Field: e.Field, Message: e.Message})
	}
	return out
}
