package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"lok8s.dev/provisioner/internal/service"
)

// problemBase prefixes the type URI of every problem this API returns; the
// slugs are listed in openapi.yaml.
const problemBase = service.ProblemBase

// The API's problems and their members are the service's.
type (
	// Problem is an RFC 9457 problem details object.
	Problem = service.Problem
	// FieldError names a field of the request and what is wrong with it.
	FieldError = service.FieldError
)

// errOverloaded is the 503 of a replica past its capacity: as many
// requests in flight as it takes (Server.shed), or as many connections
// open (connguard.Limiter, through Overloaded).
func errOverloaded() *service.Error {
	return &service.Error{Status: http.StatusServiceUnavailable, Slug: "overloaded", Title: "Overloaded",
		Detail: "this replica is working as much as it takes; retry after the time in Retry-After"}
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

// problemFor maps any error to the problem the client sees: a request
// body past the size limit is a 413, the rest as service.ProblemOf says.
func problemFor(err error) (Problem, bool) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		err = &service.Error{Status: http.StatusRequestEntityTooLarge, Slug: "body-too-large", Title: "Request body too large",
			Detail: fmt.Sprintf("the request body must be at most %d bytes", mbe.Limit)}
	}
	return service.ProblemOf(err)
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
	p.RequestID = service.RequestID(r.Context())
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
