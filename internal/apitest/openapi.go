// Package apitest checks, in tests, that the API and openapi.yaml agree: a
// middleware validates every request and response a test sends through the
// real server against the document, and records which operations were seen
// so a package can require that each one was exercised.
package apitest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	provisioner "lok8s.dev/provisioner"
)

// Validator validates traffic against openapi.yaml.
type Validator struct {
	doc    *openapi3.T
	router routers.Router

	mu   sync.Mutex
	seen map[string]bool // "METHOD /path/template"
}

// NewValidator loads and checks openapi.yaml.
func NewValidator() (*Validator, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(provisioner.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("load openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi.yaml is not a valid OpenAPI document: %w", err)
	}
	doc.Servers = nil // match paths on any host, such as an httptest server
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route openapi.yaml: %w", err)
	}
	return &Validator{doc: doc, router: router, seen: map[string]bool{}}, nil
}

// Middleware validates each request and its response against the document,
// failing t on any disagreement. A request the document forbids may still
// be refused by the server (that is the server doing its job), but it must
// never be accepted with a 2xx.
func (v *Validator) Middleware(t testing.TB, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))

		route, params, err := v.router.FindRoute(r)
		if err != nil {
			t.Errorf("openapi: %s %s is not in openapi.yaml: %v", r.Method, r.URL.Path, err)
			next.ServeHTTP(w, r)
			return
		}
		v.mu.Lock()
		v.seen[r.Method+" "+route.Path] = true
		v.mu.Unlock()

		vr := r.Clone(r.Context())
		vr.Body = io.NopCloser(bytes.NewReader(body))
		in := &openapi3filter.RequestValidationInput{
			Request: vr, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
		}
		reqErr := openapi3filter.ValidateRequest(r.Context(), in)

		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)

		out := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: rec.Code, Header: rec.Header(),
			Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
		}
		out.SetBodyBytes(rec.Body.Bytes())
		if err := openapi3filter.ValidateResponse(r.Context(), out); err != nil {
			t.Errorf("openapi: response to %s %s (%d) does not match openapi.yaml: %v\nbody: %s",
				r.Method, r.URL.Path, rec.Code, err, rec.Body.String())
		}
		if reqErr != nil && rec.Code < 300 {
			t.Errorf("openapi: %s %s was accepted (%d) but openapi.yaml forbids the request: %v", r.Method, r.URL.Path, rec.Code, reqErr)
		}

		for k, vals := range rec.Header() {
			w.Header()[k] = vals
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// Unexercised lists the document's operations no request went through.
func (v *Validator) Unexercised() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var missing []string
	for path, item := range v.doc.Paths.Map() {
		for method := range item.Operations() {
			if !v.seen[strings.ToUpper(method)+" "+path] {
				missing = append(missing, strings.ToUpper(method)+" "+path)
			}
		}
	}
	sort.Strings(missing)
	return missing
}
