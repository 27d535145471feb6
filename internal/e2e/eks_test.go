package e2e

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"lok8s.dev/provisioner/internal/testenv"
)

// eksSpec is an EKS cluster (CAPA's managed control plane and a managed
// node group) with cilium as its CNI; EKS runs its own
// cloud-controller-manager, so spec.bootstrap has no ccm.
const eksSpec = `apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata:
  name: eks
spec:
  kubernetes:
    version: v1.33.2
  cluster:
    domain: eks.example.com
  aws:
    region: eu-central-1
    flavor: eks
    workers:
      general:
        replicas: 2
        type: m6i.large
  bootstrap: [cilium]
`

// eksAPI stands in for an EKS cluster's API endpoint: an HTTPS front for
// the test's workload apiserver that accepts only the bearer token CAPA
// wrote last into the <cluster>-kubeconfig Secret, so that any use of a
// kept kubeconfig fails. (On EKS an older token stays valid until 15
// minutes after it was signed, aws-iam-authenticator pkg/token/token.go;
// the stand-in replaces tokens only at the moments the test picks, and
// refuses every older one at once.) Any other bearer token (a
// ServiceAccount's, as the kubeconfigs the service issues hold) goes to
// the workload apiserver as it came, without the test's client
// certificate, for the apiserver to authenticate, as EKS's does.
type eksAPI struct {
	server  *httptest.Server
	cluster string // the EKS cluster's name in the kubeconfig

	mu       sync.Mutex
	token    string
	issued   int
	rejected []string // requests that came with another token
}

func newEKSAPI(t *testing.T, workload *testenv.Env, cluster string) *eksAPI {
	t.Helper()
	rt, err := rest.TransportFor(workload.Config)
	if err != nil {
		t.Fatal(err)
	}
	host := workload.Config.Host
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	target, err := url.Parse(host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Del("Authorization") // the apiserver sees the test's admin
		},
		Transport:     rt,
		FlushInterval: -1, // watches stream
	}
	anonymous := rest.AnonymousClientConfig(workload.Config) // trusts the apiserver, presents no certificate
	art, err := rest.TransportFor(anonymous)
	if err != nil {
		t.Fatal(err)
	}
	passThrough := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport:     art,
		FlushInterval: -1,
	}
	a := &eksAPI{cluster: cluster}
	a.server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") && !strings.HasPrefix(auth, "Bearer k8s-aws-v1.") {
			passThrough.ServeHTTP(w, r)
			return
		}
		a.mu.Lock()
		ok := r.Header.Get("Authorization") == "Bearer "+a.token
		if !ok {
			a.rejected = append(a.rejected, r.Method+" "+r.URL.Path)
		}
		a.mu.Unlock()
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(a.server.Close)
	a.next()
	return a
}

// next replaces the current token, as CAPA's generateToken does on each
// sync (a presigned STS GetCallerIdentity URL, k8s-aws-v1.<base64url>).
func (a *eksAPI) next() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.issued++
	a.token = fmt.Sprintf("k8s-aws-v1.e2e-token-%d-%s", a.issued, randomName(""))
	return a.token
}

func (a *eksAPI) current() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.token
}

func (a *eksAPI) refused() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.rejected...)
}

// kubeconfig is the kubeconfig CAPA writes for token (createBaseKubeConfig:
// the endpoint and its CA, a user <cluster>-capi-admin, a context
// <user>@<cluster>).
func (a *eksAPI) kubeconfig(token string, tokenFile bool) []byte {
	user := a.cluster + "-capi-admin"
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.server.Certificate().Raw})
	auth := &clientcmdapi.AuthInfo{Token: token}
	if tokenFile {
		auth = &clientcmdapi.AuthInfo{TokenFile: "./token-file"}
	}
	cfg := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{a.cluster: {Server: a.server.URL, CertificateAuthorityData: ca}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{user: auth},
		Contexts:       map[string]*clientcmdapi.Context{user + "@" + a.cluster: {Cluster: a.cluster, AuthInfo: user}},
		CurrentContext: user + "@" + a.cluster,
	}
	out, err := clientcmd.Write(cfg)
	if err != nil {
		panic(err) // a fixed, valid config
	}
	return out
}

// userKubeconfig is <cluster>-user-kubeconfig as CAPA writes it once
// (createUserKubeconfigSecret): the endpoint and CA, a user <cluster>-user
// whose token `aws eks get-token` makes (token method aws-cli).
func (a *eksAPI) userKubeconfig() []byte {
	user := a.cluster + "-user"
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.server.Certificate().Raw})
	out, err := clientcmd.Write(clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{a.cluster: {Server: a.server.URL, CertificateAuthorityData: ca}},
		AuthInfos: map[string]*clientcmdapi.AuthInfo{user: {Exec: &clientcmdapi.ExecConfig{APIVersion: "client.authentication.k8s.io/v1beta1",
			Command: "aws", Args: []string{"eks", "get-token", "--cluster-name", a.cluster}}}},
		Contexts:       map[string]*clientcmdapi.Context{user + "@" + a.cluster: {Cluster: a.cluster, AuthInfo: user}},
		CurrentContext: user + "@" + a.cluster,
	})
	if err != nil {
		panic(err) // a fixed, valid config
	}
	return out
}

// secretData is the <cluster>-kubeconfig Secret's data as CAPA writes it
// (pkg/cloud/services/eks/config.go, v2.13): value, relative and
// token-file, all with the current token.
func (a *eksAPI) secretData() map[string][]byte {
	token := a.current()
	return map[string][]byte{"value": a.kubeconfig(token, false), "relative": a.kubeconfig(token, true), "token-file": []byte(token)}
}

// rotateKubeconfig is CAPA's sync: a new token, written to the Secret
// while the stand-in is not acting (it would write the Secret too).
func (c *cloud) rotateKubeconfig(t testingT, a *eksAPI) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a.next()
	if err := c.ensureKubeconfigSecret(context.Background()); err != nil {
		t.Logf("rotate the kubeconfig Secret: %v", err)
	}
}

// TestProvisionEKS provisions an EKS cluster whose kubeconfig Secret holds
// a short-lived token that the stand-in replaces between the pipeline's
// uses of it, and whose API accepts only the current token: cilium is
// installed, the download gives the current token, an update reinstalls
// the addons, and no request ever reaches the workload API with a token
// the service kept. Nothing of the kubeconfig is stored in Postgres.
func TestProvisionEKS(t *testing.T) {
	t.Parallel()
	world := newSharedAddonWorld(t)
	api := newEKSAPI(t, world.workload, "eks")
	var stand atomic.Pointer[cloud]
	var secretReads atomic.Int32
	var cutSecrets atomic.Bool
	opts := world.options()
	opts.wrapTransport = func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			isSecret := r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/secrets/eks-kubeconfig")
			if isSecret && cutSecrets.Load() {
				return nil, errors.New("dial tcp: connection refused")
			}
			resp, err := next.RoundTrip(r)
			// CAPA's sync period ends right after the kubeconfig step
			// first read the Secret: the next step must read it again.
			if isSecret && err == nil && resp.StatusCode == http.StatusOK && secretReads.Add(1) == 1 {
				stand.Load().rotateKubeconfig(t, api)
			}
			return resp, err
		})
	}
	s := startService(t, opts)
	s.putCredential("eks-credentials", `{"provider":"aws","accessKeyId":"AKIAE2E","secretAccessKey":"aws-e2e-secret"}`)
	s.submit(eksSpec)
	s.waitStatus("eks", 60*time.Second, func(st map[string]any) bool {
		return stepState(st, "control-plane-initialized") == "running" || st["phase"] == "Failed"
	})
	// No Secret yet: 409, not 404 (the cluster exists).
	if status, body := s.do(http.MethodGet, "/v1/clusters/eks/kubeconfig", "", "", nil); status != http.StatusConflict {
		t.Fatalf("kubeconfig before CAPA wrote it: %d %s", status, body)
	}
	// CAPA writes the users' exec-plugin kubeconfig once, with the control plane.
	if err := s.env.Client.Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "eks-user-kubeconfig", Namespace: s.namespace()},
		Type:       "cluster.x-k8s.io/secret", Data: map[string][]byte{"value": api.userKubeconfig()},
	}); err != nil {
		t.Fatal(err)
	}
	s.playCloud("eks", func(c *cloud) {
		c.managedControlPlane, c.secretData = true, api.secretData
		stand.Store(c)
	})

	deadline := time.Now().Add(90 * time.Second)
	var done map[string]any
	for done == nil || (done["phase"] != "Provisioned" && done["phase"] != "Failed") {
		if refused := api.refused(); len(refused) > 0 {
			t.Fatalf("the service used a kubeconfig whose token CAPA had replaced: %v", refused)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not provisioned in time: %v", done)
		}
		time.Sleep(100 * time.Millisecond)
		done = s.mustDo(http.MethodGet, "/v1/clusters/eks/status", "", "", nil, http.StatusOK)
	}
	if done["phase"] != "Provisioned" || stepState(done, "cni-and-ccm") != "succeeded" {
		t.Fatalf("phase %v (%v), cni-and-ccm %v", done["phase"], done["message"], stepOf(done, "cni-and-ccm"))
	}
	if msg, _ := stepOf(done, "kubeconfig")["message"].(string); !strings.Contains(msg, "not stored") {
		t.Fatalf("kubeconfig step: %v", stepOf(done, "kubeconfig"))
	}
	if addons, _ := done["addons"].([]any); len(addons) != 1 || addons[0].(map[string]any)["state"] != "installed" {
		t.Fatalf("addons: %v", done["addons"])
	}
	if secretReads.Load() < 2 {
		t.Fatalf("the Secret was read %d times: the addon install did not read it again", secretReads.Load())
	}
	var stored int
	if err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM cluster_kubeconfigs`).Scan(&stored); err != nil || stored != 0 {
		t.Fatalf("kubeconfigs stored in Postgres: %d (%v)", stored, err)
	}

	// CAPA syncs again: the download is issued with the token CAPA wrote
	// last (the front refuses any other), holds none of CAPA's, and works
	// as the caller's own identity; CAPA's token before is refused.
	old := api.current()
	stand.Load().rotateKubeconfig(t, api)
	status, kc := s.do(http.MethodGet, "/v1/clusters/eks/kubeconfig", "", "", nil)
	if status != http.StatusOK {
		t.Fatalf("kubeconfig: %d %s", status, kc)
	}
	if refused := api.refused(); len(refused) > 0 {
		t.Fatalf("the download was issued with a kubeconfig whose token CAPA had replaced: %v", refused)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BearerToken == "" || strings.Contains(string(kc), "k8s-aws-v1.") || cfg.CertData != nil {
		t.Fatalf("downloaded kubeconfig holds CAPA's token or a certificate:\n%s", kc)
	}
	review, err := kubernetes.NewForConfigOrDie(cfg).AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if want := "system:serviceaccount:lok8s-access:" + s.tenant + ".e2e"; err != nil || review.Status.UserInfo.Username != want {
		t.Fatalf("workload cluster via the downloaded kubeconfig: %v %v, want user %s", review, err, want)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.BearerToken = old
	if _, err := kubernetes.NewForConfigOrDie(cfg).Discovery().ServerVersion(); !apierrors.IsUnauthorized(err) {
		t.Fatalf("the replaced token: %v, want Unauthorized", err)
	}
	api.mu.Lock()
	api.rejected = nil // that one was the test's own
	api.mu.Unlock()

	// The exec-plugin form: CAPA's user kubeconfig, no token in it.
	status, kc = s.do(http.MethodGet, "/v1/clusters/eks/kubeconfig?form=exec", "", "", nil)
	if status != http.StatusOK {
		t.Fatalf("exec kubeconfig: %d %s", status, kc)
	}
	raw, err := clientcmd.Load(kc)
	if err != nil {
		t.Fatal(err)
	}
	user := raw.AuthInfos["eks-user"]
	if user == nil || user.Exec == nil || user.Exec.Command != "aws" || user.Token != "" || strings.Contains(string(kc), "k8s-aws-v1.") {
		t.Fatalf("exec kubeconfig:\n%s", kc)
	}

	// The management cluster cannot be read: 503 management-unavailable.
	cutSecrets.Store(true)
	resp := s.mustDo(http.MethodGet, "/v1/clusters/eks/kubeconfig", "", "", nil, http.StatusServiceUnavailable)
	if resp["type"] != "https://lok8s.dev/problems/management-unavailable" || strings.Contains(fmt.Sprint(resp["detail"]), "127.0.0.1") {
		t.Fatalf("kubeconfig with the management cluster cut off: %v", resp)
	}
	cutSecrets.Store(false)

	// An update after another sync reinstalls cilium with the token of now.
	stand.Load().rotateKubeconfig(t, api)
	s.mustDo(http.MethodPatch, "/v1/clusters/eks", "", "application/merge-patch+json",
		[]byte(`{"spec":{"aws":{"workers":{"general":{"replicas":3}}}}}`), http.StatusAccepted)
	updated := s.waitStatus("eks", 90*time.Second, func(st map[string]any) bool {
		op, _ := st["operation"].(map[string]any)
		return len(api.refused()) > 0 || st["phase"] == "Failed" || (st["phase"] == "Provisioned" && op["kind"] == "update")
	})
	if refused := api.refused(); len(refused) > 0 {
		t.Fatalf("the update used a kubeconfig whose token CAPA had replaced: %v", refused)
	}
	if updated["phase"] != "Provisioned" || stepState(updated, "addons") != "succeeded" {
		t.Fatalf("update: %v (%v), addons step %v", updated["phase"], updated["message"], stepOf(updated, "addons"))
	}
}
