package api

import (
	"net/http"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"
	"lok8s.dev/provisioner/internal/service"
)

// queryParams lists, by method and route pattern (without a trailing
// slash), the query parameters each endpoint reads. Any other is refused with 400, naming it, rather
// than ignored: GET /v1/clusters?domain=x would otherwise answer every
// cluster as if filtered.
var queryParams = map[string][]string{
	"POST /v1/clusters":                  {"dryRun"},
	"GET /v1/clusters":                   {"phase", "limit", "cursor"},
	"GET /v1/clusters/{name}/kubeconfig": {"form", "ttl"},
	"GET /api/clusters":                  {"domain"},
	"DELETE /api/clusters":               {"domain"},
	"GET /api/clusters/{id}/kubeconfig":  {"form", "ttl"},
}

// refuseUnknownQuery answers 400 to a request with a query parameter its
// endpoint does not read (queryParams); requests no route matches go on
// to the 404 and 405 handlers.
func (s *Server) refuseUnknownQuery(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery == "" {
			next.ServeHTTP(w, r)
			return
		}
		pattern := s.router.Find(chi.NewRouteContext(), r.Method, r.URL.Path)
		if pattern == "" {
			next.ServeHTTP(w, r)
			return
		}
		allowed := queryParams[r.Method+" "+strings.TrimSuffix(pattern, "/")]
		var fields []FieldError
		for name := range r.URL.Query() {
			if slices.Contains(allowed, name) {
				continue
			}
			msg := "unknown query parameter: " + r.Method + " " + r.URL.Path + " takes none"
			if len(allowed) > 0 {
				msg = "unknown query parameter: " + r.Method + " " + r.URL.Path + " takes " + strings.Join(allowed, ", ")
			}
			fields = append(fields, FieldError{Field: name, Message: msg})
		}
		if len(fields) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		service.SortFields(fields)
		e := service.BadRequest("unknown query parameter(s); see errors")
		e.Fields = fields
		s.writeProblem(w, r, e)
	})
}
