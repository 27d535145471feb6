package testenv_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"lok8s.dev/provisioner/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func obj(t *testing.T, ns, manifest string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(manifest), &u.Object); err != nil {
		t.Fatalf("bad test manifest: %v", err)
	}
	u.SetNamespace(ns)
	return u
}

func TestServerVersion(t *testing.T) {
	env := testenv.Shared(t)
	dc, err := discovery.NewDiscoveryClientForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	v, err := dc.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != "v1.37.2" || v.Major != "1" || v.Minor != "37" {
		t.Fatalf("server version = %q (major %q minor %q), want v1.37.2", v.GitVersion, v.Major, v.Minor)
	}
}

// The service reaches the management cluster through a kubeconfig.
func TestKubeconfig(t *testing.T) {
	env := testenv.Shared(t)
	cfg, err := clientcmd.RESTConfigFromKubeConfig(env.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ns := env.Namespace(t)
	u := obj(t, ns, clusterYAML)
	if err := c.Apply(ctx(t), client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(testenv.FieldOwner)); err != nil {
		t.Fatalf("apply through kubeconfig: %v", err)
	}

	// A user outside system:masters is authenticated but not authorized.
	kc, err := env.KubeconfigFor("nobody")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err = clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	c, err = client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(u.GroupVersionKind())
	err = c.Get(ctx(t), client.ObjectKeyFromObject(u), got)
	if !apierrors.IsForbidden(err) {
		t.Fatalf("get as unprivileged user: err = %v, want Forbidden", err)
	}
}

const clusterYAML = `
apiVersion: cluster.x-k8s.io/v1beta2
kind: Cluster
metadata:
  name: demo
spec:
  clusterNetwork:
    pods:
      cidrBlocks: ["192.168.0.0/16"]
  controlPlaneRef:
    apiGroup: controlplane.cluster.x-k8s.io
    kind: KubeadmControlPlane
    name: demo-control-plane
  infrastructureRef:
    apiGroup: infrastructure.cluster.x-k8s.io
    kind: HetznerCluster
    name: demo
`

func TestClusterSchema(t *testing.T) {
	env := testenv.Shared(t)
	ns := env.Namespace(t)

	u := obj(t, ns, clusterYAML)
	if err := env.Apply(ctx(t), u); err != nil {
		t.Fatalf("applying a valid Cluster: %v", err)
	}
	if u.GetResourceVersion() == "" || u.GetUID() == "" {
		t.Fatalf("apply did not write the server's object back: %v", u.Object)
	}

	for name, tc := range map[string]struct {
		manifest string
		want     []string // substrings of the error
	}{
		"wrong type": {
			manifest: strings.Replace(clusterYAML, "spec:\n", "spec:\n  paused: \"yes\"\n", 1),
			want:     []string{"spec.paused", "boolean"},
		},
		"missing required field": {
			manifest: strings.Replace(clusterYAML, "    name: demo-control-plane\n", "", 1),
			want:     []string{"spec.controlPlaneRef.name", "Required value"},
		},
		"pattern": {
			manifest: strings.Replace(clusterYAML, "name: demo-control-plane", "name: Demo_CP", 1),
			want:     []string{"spec.controlPlaneRef.name", "should match"},
		},
		"unknown field": {
			manifest: strings.Replace(clusterYAML, "spec:\n", "spec:\n  notAField: 1\n", 1),
			want:     []string{"notAField"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			bad := obj(t, ns, tc.manifest)
			bad.SetName("bad-" + strings.ReplaceAll(name, " ", "-"))
			err := env.Apply(ctx(t), bad)
			if err == nil {
				t.Fatal("invalid Cluster was accepted")
			}
			if !testenv.IsSchemaError(err) {
				var se *apierrors.StatusError
				errors.As(err, &se)
				t.Errorf("IsSchemaError(%v) = false (status %+v)", err, se)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestProviderKinds(t *testing.T) {
	env := testenv.Shared(t)
	ns := env.Namespace(t)
	for _, m := range []string{`
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: HCloudMachineTemplate
metadata:
  name: demo-control-plane
spec:
  template:
    spec:
      type: cpx31
      imageName: ubuntu-24.04
`, `
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: AWSMachineTemplate
metadata:
  name: demo-control-plane
spec:
  template:
    spec:
      instanceType: t3.large
      iamInstanceProfile: control-plane.cluster-api-provider-aws.sigs.k8s.io
`} {
		u := obj(t, ns, m)
		if err := env.Apply(ctx(t), u); err != nil {
			t.Errorf("applying %s: %v", u.GetKind(), err)
		}
	}

	// And their schemas are enforced: both require a machine type.
	for _, m := range []string{`
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: HCloudMachineTemplate
metadata:
  name: no-type
spec:
  template:
    spec:
      imageName: ubuntu-24.04
`, `
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: AWSMachineTemplate
metadata:
  name: no-type
spec:
  template:
    spec:
      ami:
        id: ami-123
`} {
		u := obj(t, ns, m)
		if err := env.Apply(ctx(t), u); !apierrors.IsInvalid(err) {
			t.Errorf("%s without a machine type: err = %v, want Invalid", u.GetKind(), err)
		}
	}
}

func TestCRDsInstalled(t *testing.T) {
	env := testenv.Shared(t)
	groups := map[string]int{}
	for _, crd := range env.CRDs {
		groups[crd.Spec.Group]++
	}
	for _, g := range []string{
		"cluster.x-k8s.io", "bootstrap.cluster.x-k8s.io", "controlplane.cluster.x-k8s.io",
		"infrastructure.cluster.x-k8s.io",
	} {
		if groups[g] == 0 {
			t.Errorf("no CRD of group %s installed (have %v)", g, groups)
		}
	}
	var kinds []string
	for _, crd := range env.CRDs {
		kinds = append(kinds, crd.Spec.Names.Kind)
	}
	for _, k := range []string{"Cluster", "KubeadmConfigTemplate", "KubeadmControlPlane", "HCloudMachineTemplate", "HetznerCluster", "AWSMachineTemplate", "AWSCluster"} {
		if !strings.Contains(" "+strings.Join(kinds, " ")+" ", " "+k+" ") {
			t.Errorf("CRD of kind %s not installed", k)
		}
	}
	t.Logf("%d CRDs, started in %s", len(env.CRDs), env.StartDuration)
}

func TestNamespace(t *testing.T) {
	env := testenv.Shared(t)
	a, b := env.Namespace(t), env.Namespace(t)
	if a == b {
		t.Fatalf("Namespace returned %q twice", a)
	}
	if !strings.HasPrefix(a, "testnamespace-") {
		t.Errorf("namespace %q is not named after the test", a)
	}
	if !bytes.Contains(env.Kubeconfig(), []byte("certificate-authority-data")) {
		t.Errorf("kubeconfig has no CA")
	}
}
