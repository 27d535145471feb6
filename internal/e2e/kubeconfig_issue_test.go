package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestIssuedKubeconfig: a download is a kubeconfig of the caller's own
// identity on the workload cluster, issued for ?ttl= (the token's expiry,
// which the workload apiserver enforces, is the one asked for and the one
// the response states), with cluster-admin there; CAPI's admin kubeconfig
// never appears in a response; TTLs below the TokenRequest minimum or
// above the tenant's policy are refused naming ttl; each issue is audited
// with its identity and expiry.
func TestIssuedKubeconfig(t *testing.T) {
	t.Parallel()
	s, _ := startProvisioned(t)

	before := time.Now()
	req, _ := http.NewRequest(http.MethodGet, s.url+"/v1/clusters/prod/kubeconfig?ttl=15m", nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var kc bytes.Buffer
	_, _ = kc.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("kubeconfig?ttl=15m: %d %s", resp.StatusCode, kc.String())
	}
	wantUser := "system:serviceaccount:lok8s-access:" + s.tenant + ".e2e"
	expiresAt, err := time.Parse(time.RFC3339, resp.Header.Get("Lok8s-Kubeconfig-Expires-At"))
	if err != nil || resp.Header.Get("Lok8s-Kubeconfig-User") != wantUser {
		t.Fatalf("headers: user %q, expires %q (%v)", resp.Header.Get("Lok8s-Kubeconfig-User"), resp.Header.Get("Lok8s-Kubeconfig-Expires-At"), err)
	}
	if d := expiresAt.Sub(before); d < 14*time.Minute || d > 16*time.Minute {
		t.Fatalf("expires in %s, want 15m", d)
	}

	// CAPI's admin credentials are nowhere in it.
	admin, err := clientcmd.Load(s.workloadKubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range admin.AuthInfos {
		for _, secret := range [][]byte{u.ClientKeyData, u.ClientCertificateData, []byte(u.Token)} {
			if len(secret) > 0 && (bytes.Contains(kc.Bytes(), secret) || strings.Contains(kc.String(), base64.StdEncoding.EncodeToString(secret))) {
				t.Fatal("the download holds CAPI's admin credentials")
			}
		}
	}

	// The token's own expiry (the apiserver enforces it) is the one stated.
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if exp := jwtExpiry(t, cfg.BearerToken); !exp.Equal(expiresAt) {
		t.Fatalf("token expires %s, the response says %s", exp, expiresAt)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil || review.Status.UserInfo.Username != wantUser {
		t.Fatalf("who the workload cluster sees: %v %v, want %s", review, err, wantUser)
	}
	access, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "*", Group: "*", Resource: "*"}},
	}, metav1.CreateOptions{})
	if err != nil || !access.Status.Allowed {
		t.Fatalf("the issued identity is not cluster-admin: %v %v", access, err)
	}

	// Bounds: the TokenRequest minimum, the default policy, the tenant's.
	for _, ttl := range []string{"5m", "25h", "soon"} {
		p := s.mustDo(http.MethodGet, "/v1/clusters/prod/kubeconfig?ttl="+ttl, "", "", nil, http.StatusUnprocessableEntity)
		if errs, _ := json.Marshal(p["errors"]); !strings.Contains(string(errs), `"field":"ttl"`) {
			t.Fatalf("ttl=%s: %v", ttl, p)
		}
	}
	s.mustDo(http.MethodPut, "/v1/tenants/"+s.tenant+"/quota", s.admin, "application/json", []byte(`{"kubeconfigMaxTTLSeconds":1800}`), http.StatusOK)
	s.mustDo(http.MethodGet, "/v1/clusters/prod/kubeconfig?ttl=1h", "", "", nil, http.StatusUnprocessableEntity)
	status, body := s.do(http.MethodGet, "/v1/clusters/prod/kubeconfig", "", "", nil) // default 1h, capped at 30m
	if status != http.StatusOK {
		t.Fatalf("default ttl under a 30m policy: %d %s", status, body)
	}
	cfg, err = clientcmd.RESTConfigFromKubeConfig(body)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(jwtExpiry(t, cfg.BearerToken)); d > 30*time.Minute || d < 28*time.Minute {
		t.Fatalf("default under a 30m policy expires in %s", d)
	}

	var details string
	if err := s.db.QueryRow(ctx, `SELECT details::text FROM audit_log WHERE action = 'cluster.kubeconfig' AND details->>'ttlSeconds' = '900'`).Scan(&details); err != nil ||
		!strings.Contains(details, wantUser) || !strings.Contains(details, expiresAt.Format(time.RFC3339)) {
		t.Fatalf("the issue is not audited with its identity and expiry: %q %v", details, err)
	}
}

// jwtExpiry reads a JWT's exp claim (the signature is the apiserver's to
// check: the test asks the apiserver with the token as well).
func jwtExpiry(t *testing.T, token string) time.Time {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.20q", token)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == 0 {
		t.Fatalf("claims %s: %v", payload, err)
	}
	return time.Unix(claims.Exp, 0).UTC()
}
