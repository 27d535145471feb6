package kubeconfigs_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"lok8s.dev/provisioner/internal/app"
	"lok8s.dev/provisioner/internal/kubeconfigs"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/store"
	"lok8s.dev/provisioner/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func tokenKubeconfig(t *testing.T, token string) []byte {
	t.Helper()
	out, err := clientcmd.Write(clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"eks": {Server: "https://eks.example.com"}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"eks-capi-admin": {Token: token}},
		Contexts:       map[string]*clientcmdapi.Context{"eks-capi-admin@eks": {Cluster: "eks", AuthInfo: "eks-capi-admin"}},
		CurrentContext: "eks-capi-admin@eks",
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRotatingKubeconfigIsReadEveryTime: an EKS cluster's kubeconfig comes
// from CAPI's Secret on each call, so a token CAPA rewrote is the one
// returned; the Source has no store, so nothing is kept in Postgres.
// Before the Secret exists it is ErrNotAvailable; an unknown management
// cluster is ErrManagementUnavailable.
func TestRotatingKubeconfigIsReadEveryTime(t *testing.T) {
	t.Parallel()
	env := testenv.Shared(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mgmt.yaml")
	if err := os.WriteFile(path, env.Kubeconfig(), 0o600); err != nil {
		t.Fatal(err)
	}
	catalog, err := app.LoadCatalog("") // the embedded templates
	if err != nil {
		t.Fatal(err)
	}
	eksSpec, err := os.ReadFile("../capi/testdata/specs/aws-eks.yaml") // an EKS cluster named eks
	if err != nil {
		t.Fatal(err)
	}
	specJSON, err := yaml.YAMLToJSON(eksSpec)
	if err != nil {
		t.Fatal(err)
	}
	src := &kubeconfigs.Source{Clusters: &mgmt.Registry{DefaultKubeconfig: path}, Catalog: catalog}
	c := store.Cluster{ID: uuid.New(), TenantID: uuid.New(), Name: "eks", Namespace: env.Namespace(t), Spec: specJSON}

	if _, err := src.Kubeconfig(ctx, c); !errors.Is(err, kubeconfigs.ErrNotAvailable) {
		t.Fatalf("before CAPA wrote the Secret: %v, want ErrNotAvailable", err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "eks-kubeconfig", Namespace: c.Namespace},
		Data: map[string][]byte{"value": tokenKubeconfig(t, "k8s-aws-v1.first")}}
	if err := env.Client.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	for _, token := range []string{"k8s-aws-v1.first", "k8s-aws-v1.second", "k8s-aws-v1.third"} {
		if token != "k8s-aws-v1.first" {
			secret.Data["value"] = tokenKubeconfig(t, token) // CAPA's next sync
			if err := env.Client.Update(ctx, secret); err != nil {
				t.Fatal(err)
			}
		}
		kc, err := src.Kubeconfig(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.BearerToken != token {
			t.Fatalf("token %q, want CAPA's latest %q", cfg.BearerToken, token)
		}
	}

	c.ManagementDomain = "unknown.example.com"
	_, err = src.Kubeconfig(ctx, c)
	if !errors.Is(err, kubeconfigs.ErrManagementUnavailable) || !errors.Is(err, mgmt.ErrUnknownCluster) {
		t.Fatalf("unknown management cluster: %v", err)
	}
}
