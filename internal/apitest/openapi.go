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
		if strings.HasSuffix(r.URL.Path, "/events") {
			// A stream never ends: record the operation and let it through.
			if route, _, err := v.router.FindRoute(r); err == nil {
				v.mu.Lock()
				v.seen[r.Method+" "+route.Path] = true
				v.mu.Unlock()
			} else {
				t.Errorf("openapi: %s %s is not in openapi.yaml: %v", r.Method, r.URL.Path, err)
			}
			next.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		v.check(t, r, body, rec.Code, rec.Header(), rec.Body.Bytes())
		for k, vals := range rec.Header() {
			w.Header()[k] = vals
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// RoundTripper validates, on the client side, each request sent through
// base (http.DefaultTransport when nil) and its response, with the same
// rules as Middleware; for tests that talk to a whole running service.
func (v *Validator) RoundTripper(t testing.TB, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		var body []byte
		if r.Body != nil {
			body, _ = io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		resp, err := base.RoundTrip(r)
		if err != nil {
			return nil, err
		}
		respBody, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(respBody))
		v.check(t, r, body, resp.StatusCode, resp.Header, respBody)
		return resp, nil
	})
}

// check validates one exchange: the request r (with its body) and the
// response's status, header and body.
func (v *Validator) check(t testing.TB, r *http.Request, body []byte, status int, header http.Header, respBody []byte) {
	t.Helper()
	vr := r.Clone(r.Context())
	vr.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := v.router.FindRoute(vr)
	if err != nil {
		t.Errorf("openapi: %s %s is not in openapi.yaml: %v", r.Method, r.URL.Path, err)
		return
	}
	v.mu.Lock()
	v.seen[r.Method+" "+route.Path] = true
	v.mu.Unlock()
	in := &openapi3filter.RequestValidationInput{
		Request: vr, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	}
	reqErr := openapi3filter.ValidateRequest(r.Context(), in)
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	out.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(r.Context(), out); err != nil {
		t.Errorf("openapi: response to %s %s (%d) does not match openapi.yaml: %v\nbody: %s", r.Method, r.URL.Path, status, err, respBody)
	}
	if reqErr != nil && status < 300 {
		t.Errorf("openapi: %s %s was accepted (%d) but openapi.yaml forbids the request: %v", r.Method, r.URL.Path, status, reqErr)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

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

// Operations lists every operation the document describes, as
// "METHOD /path/template", sorted.
func (v *Validator) Operations() []string {
	var ops []string
	for path, item := range v.doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, strings.ToUpper(method)+" "+path)
		}
	}
	sort.Strings(ops)
	return ops
}
