package api_test

import (
	"net/http"
	"testing"
)

// A query parameter an endpoint does not read is refused with 400 naming
// it, not ignored: GET /v1/clusters?domain=x used to list every cluster.
func TestUnknownQueryParameters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putHetznerCredential(b.adminToken, "prod-credentials")
	b.expect(b.do(http.MethodPost, "/v1/clusters", b.adminToken, "application/yaml", seedSpec(t)), http.StatusAccepted)
	for _, tc := range []struct {
		method, path, contentType string
		body                      []byte
		status                    int
		field                     string
	}{
		{http.MethodGet, "/v1/clusters?domain=x", "", nil, http.StatusBadRequest, "domain"},
		{http.MethodGet, "/v1/clusters?phase=Pending&limit=5", "", nil, http.StatusOK, ""},
		{http.MethodPost, "/v1/clusters?dryrun=true", "application/yaml", seedSpec(t), http.StatusBadRequest, "dryrun"},
		{http.MethodGet, "/v1/clusters/prod?verbose=1", "", nil, http.StatusBadRequest, "verbose"},
		{http.MethodGet, "/v1/clusters/prod/kubeconfig?ttl=1h&user=x", "", nil, http.StatusBadRequest, "user"},
		{http.MethodDelete, "/v1/clusters/prod?force=true", "", nil, http.StatusBadRequest, "force"},
		{http.MethodGet, "/v1/credentials?provider=aws", "", nil, http.StatusBadRequest, "provider"},
		{http.MethodGet, "/healthz?probe=1", "", nil, http.StatusBadRequest, "probe"},
	} {
		r := b.do(tc.method, tc.path, b.adminToken, tc.contentType, tc.body)
		if tc.status != http.StatusBadRequest {
			if r.status != tc.status {
				t.Errorf("%s %s: %d, want %d: %s", tc.method, tc.path, r.status, tc.status, r.body)
			}
			continue
		}
		p := problem(t, r, http.StatusBadRequest)
		if msg := fieldMessages(t, p)[tc.field]; msg == "" {
			t.Errorf("%s %s: no error on %s: %s", tc.method, tc.path, tc.field, r.body)
		}
	}
	// Without a token, 401 comes first: a token in the URL is no token.
	problem(t, b.do(http.MethodGet, "/v1/clusters?access_token="+b.adminToken, "", "", nil), http.StatusUnauthorized)
	if n := b.count(`SELECT count(*) FROM operations WHERE kind = 'deprovision'`); n != 0 {
		t.Errorf("a refused DELETE started %d deprovisions", n)
	}
}
