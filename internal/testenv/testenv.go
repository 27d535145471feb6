// Package testenv starts a real management cluster for tests: envtest's
// kube-apiserver and etcd, built by hack/test-assets.sh, with the real CRDs of
// Cluster API (core, kubeadm bootstrap, kubeadm control plane), of the AWS
// provider (CAPA) and of the Hetzner provider (CAPH) installed, so that
// manifests are validated by the same OpenAPI schemas and CEL rules as in
// production.
//
// Only tests use it. One environment per test package, started on first use
// and stopped when the package's tests end:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		env := testenv.Shared(t)
//		ns := env.Namespace(t)
//		// env.Client, env.Config, env.Kubeconfig() ...
//	}
//
// The binaries come from $KUBEBUILDER_ASSETS when set, otherwise from
// hack/test-assets.sh (which builds them on first use: minutes). Tests fail,
// never skip, when they cannot be had.
//
// Limits: there is no kube-controller-manager, so nothing garbage-collects,
// namespaces are never finalized, and no CAPI/provider controller or webhook
// runs: only what the apiserver itself does (schema validation, defaulting,
// CEL validation rules, server-side apply) is exercised.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// FieldOwner is the server-side apply field manager used by Env.Apply, the
// same name the service uses.
const FieldOwner = "lok8s"

// Env is a running test management cluster.
type Env struct {
	// Config reaches the apiserver as the admin user (group system:masters).
	Config *rest.Config
	// Scheme knows the client-go built-in types and apiextensions/v1. CAPI and
	// provider kinds are used as unstructured objects.
	Scheme *runtime.Scheme
	// Client is a controller-runtime client (no cache) for Config and Scheme.
	Client client.Client
	// AssetsDir holds the kube-apiserver and etcd that were run.
	AssetsDir string
	// CRDs are the CustomResourceDefinitions installed at start.
	CRDs []*apiextensionsv1.CustomResourceDefinition
	// StartDuration is how long Start took (binaries already built), from
	// launching etcd to every CRD being served.
	StartDuration time.Duration

	env        *envtest.Environment
	kubeconfig []byte
}

// Start locates the binaries and CRDs, starts etcd and kube-apiserver and
// installs the CRDs. The caller must Stop it. Most tests want Shared instead.
func Start(ctx context.Context) (*Env, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	assets, err := AssetsDir(ctx, root)
	if err != nil {
		return nil, err
	}
	crds, err := LoadCRDs(ctx, root)
	if err != nil {
		return nil, err
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))

	te := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		Scheme:                scheme,
		CRDInstallOptions: envtest.CRDInstallOptions{
			CRDs: crds,
			// Every path was read (with ErrorIfPathMissing) by LoadCRDs.
			ErrorIfPathMissing: true,
			// ~50 CRDs on a 2-core machine: the default 10s can be short.
			MaxTime: 2 * time.Minute,
		},
		ControlPlaneStartTimeout: time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	// Explicit paths rather than PATH lookups, so the binaries run are the
	// ones AssetsDir checked.
	te.ControlPlane.GetAPIServer().Path = assets + "/kube-apiserver"
	te.ControlPlane.Etcd = &envtest.Etcd{Path: assets + "/etcd"}

	began := time.Now()
	cfg, err := te.Start()
	if err != nil {
		// Start may fail after launching the processes (e.g. a CRD is refused).
		_ = te.Stop()
		return nil, fmt.Errorf("testenv: starting envtest (assets %s): %w", assets, err)
	}
	e := &Env{
		Config:        cfg,
		Scheme:        scheme,
		AssetsDir:     assets,
		CRDs:          te.CRDs,
		StartDuration: time.Since(began),
		env:           te,
		kubeconfig:    te.KubeConfig,
	}
	e.Client, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = te.Stop()
		return nil, fmt.Errorf("testenv: client: %w", err)
	}
	if len(e.kubeconfig) == 0 {
		_ = te.Stop()
		return nil, fmt.Errorf("testenv: envtest produced no kubeconfig")
	}
	return e, nil
}

// Stop stops kube-apiserver and etcd and removes their data.
func (e *Env) Stop() error {
	if e == nil || e.env == nil {
		return nil
	}
	return e.env.Stop()
}

// Kubeconfig returns a kubeconfig file's bytes that reach the apiserver as the
// admin user (system:masters, client-certificate auth), the way the service
// reaches a production management cluster. Each call returns a fresh copy.
func (e *Env) Kubeconfig() []byte {
	return append([]byte(nil), e.kubeconfig...)
}

// KubeconfigFor provisions a further user with the given groups and returns a
// kubeconfig for it (for tests of what a less privileged identity may do).
func (e *Env) KubeconfigFor(name string, groups ...string) ([]byte, error) {
	u, err := e.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("testenv: adding user %q: %w", name, err)
	}
	return kubeconfigFromREST(u.Config())
}

// KubeconfigWithToken returns a kubeconfig that reaches the apiserver with
// a bearer token (a ServiceAccount's, from TokenRequest) and nothing else.
func (e *Env) KubeconfigWithToken(token string) ([]byte, error) {
	return kubeconfigFromREST(&rest.Config{Host: e.Config.Host, TLSClientConfig: rest.TLSClientConfig{CAData: e.Config.CAData}, BearerToken: token})
}

// kubeconfigFromREST writes cfg (server, CA, client certificate or token)
// as a kubeconfig file.
func kubeconfigFromREST(cfg *rest.Config) ([]byte, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthorityData: cfg.CAData,
	}
	kc.AuthInfos["user"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
		Username:              cfg.Username,
		Password:              cfg.Password,
	}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "user"}
	kc.CurrentContext = "envtest"
	return clientcmd.Write(*kc)
}

var nonDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// Namespace creates a namespace with a unique name derived from the test's
// name and returns that name. Tests isolate their objects this way; nothing
// deletes them (envtest runs no namespace controller) until the env stops.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	prefix := nonDNS.ReplaceAllString(strings.ToLower(t.Name()), "-")
	prefix = strings.Trim(prefix, "-")
	if len(prefix) > 40 {
		prefix = strings.TrimRight(prefix[:40], "-")
	}
	if prefix == "" {
		prefix = "test"
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Client.Create(ctx, ns); err != nil {
		t.Fatalf("testenv: creating namespace for %s: %v", t.Name(), err)
	}
	return ns.Name
}

// Apply server-side applies obj as field manager FieldOwner, forcing
// ownership, with strict field validation, as the service does. The server's
// answer (defaults filled in, resourceVersion, ...) is written back into obj.
func (e *Env) Apply(ctx context.Context, obj *unstructured.Unstructured) error {
	return e.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj),
		client.FieldOwner(FieldOwner), client.ForceOwnership)
}

// IsSchemaError reports whether err is the apiserver refusing an object for
// its schema. Beware: kube-apiserver v1.37.2 answers a server-side apply whose
// object does not fit the structural schema (a field of the wrong type, an
// unknown field) with a Status of code 500 and no reason, "failed to create
// typed patch object (...): .spec.x: ..."; violations found after that
// (required fields, patterns, enums, CEL rules) are 422 Invalid. Both count.
func IsSchemaError(err error) bool {
	if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
		return true
	}
	var se apierrors.APIStatus
	return errors.As(err, &se) && strings.HasPrefix(se.Status().Message, "failed to create typed patch object")
}

var (
	sharedOnce sync.Once
	sharedEnv  *Env
	sharedErr  error
	mainMu     sync.Mutex
	inMain     bool
)

// Main is a test package's TestMain body: it runs the tests, then stops the
// shared environment if a test started it, and exits with the tests' code.
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	mainMu.Lock()
	inMain = true
	mainMu.Unlock()
	code := m.Run()
	if sharedEnv != nil {
		if err := sharedEnv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: stopping: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Shared returns the test package's environment, starting it on first use
// (every test of the package shares it: give each its own Namespace). It
// fails t when the environment cannot start, and when the package's TestMain
// does not call Main (without it, kube-apiserver and etcd would outlive the
// test binary).
func Shared(t testing.TB) *Env {
	t.Helper()
	mainMu.Lock()
	ok := inMain
	mainMu.Unlock()
	if !ok {
		t.Fatal("testenv: Shared needs the package's TestMain to call testenv.Main(m), which stops the environment")
	}
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		sharedEnv, sharedErr = Start(ctx)
		if sharedErr == nil {
			t.Logf("testenv: started kube-apiserver+etcd with %d CRDs in %s", len(sharedEnv.CRDs), sharedEnv.StartDuration.Round(time.Millisecond))
		}
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedEnv
}
