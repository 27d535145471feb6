package api_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkStatusFromMemory is a status read the read model answers,
// through the whole handler (middleware, authentication from memory, the
// kept body) with the production logger writing its access log line:
// what each request of make bench-reads costs the server, beside the
// network. Its allocations are the garbage a replica makes per read.
func BenchmarkStatusFromMemory(b *testing.B) {
	x := setupWith(b, setupOptions{bench: true})
	token := x.newTenant("initech")
	x.putHetznerCredential(token, "prod-credentials")
	x.expect(x.do(http.MethodPost, "/v1/clusters", token, "application/yaml", seedSpec(b)), http.StatusAccepted)
	x.waitFresh()
	req := httptest.NewRequest(http.MethodGet, "/v1/clusters/prod/status", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	serve := func() {
		w := httptest.NewRecorder()
		x.handler.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	serve()
	if x.reads.Statuses.Len() != 1 {
		b.Fatal("the status was not kept")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		serve()
	}
}
