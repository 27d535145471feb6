package capi_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	provisioner "lok8s.dev/provisioner"
	"lok8s.dev/provisioner/internal/capi"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func TestMain(m *testing.M) { testenv.Main(m) }

// embedded returns the templates the binary embeds.
func embedded(t testing.TB) fs.FS {
	t.Helper()
	sub, err := fs.Sub(provisioner.Templates, "templates")
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

func loadCatalog(t testing.TB, fsys fs.FS) *capi.Catalog {
	t.Helper()
	c, err := capi.LoadCatalog(fsys)
	if err != nil {
		t.Fatalf("LoadCatalog: %v", err)
	}
	return c
}

func loadSpec(t testing.TB, c *capi.Catalog, data []byte) *spec.Capi {
	t.Helper()
	s, err := spec.Load(data, c.ValidateOptions(spec.ValidateOptions{}))
	if err != nil {
		t.Fatalf("spec.Load: %v", err)
	}
	return s
}

// readSpec is s as the catalog reads it (capi.NewSpec).
func readSpec(t testing.TB, s *spec.Capi) *capi.Spec {
	t.Helper()
	read, err := capi.NewSpec(s)
	if err != nil {
		t.Fatalf("NewSpec: %v", err)
	}
	return read
}

// detected is the provider s selects, with s as the catalog reads it.
func detected(t testing.TB, c *capi.Catalog, s *spec.Capi) (*capi.Provider, *capi.Spec) {
	t.Helper()
	p, err := c.Detect(s)
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	return p, readSpec(t, s)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// copyTemplates copies the embedded catalog into a temporary directory.
func copyTemplates(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, embedded(t)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// replaceInFile replaces the first old in the file at path with new; a
// file without old fails the test (the template it edits has changed).
func replaceInFile(t *testing.T, path, old, new string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(data), old, new, 1)
	if edited == string(data) {
		t.Fatalf("%s: %q not found", path, old)
	}
	writeFile(t, path, edited)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// flavors are the golden cases: a spec in testdata/specs, its provider and
// flavor, and credentials for its Secret.
var flavors = []struct {
	name, provider, flavor string
	creds                  map[string]string
	kinds                  []string // kinds the rendering must contain
}{
	{"hcloud", "hetzner", "", map[string]string{"hcloudToken": "tok"},
		[]string{"Cluster", "KubeadmControlPlane", "HetznerCluster", "HCloudMachineTemplate", "MachineDeployment", "KubeadmConfigTemplate",
			"MachineHealthCheck", "HCloudRemediationTemplate"}},
	{"hcloud-public", "hetzner", "", map[string]string{"hcloudToken": "tok"},
		[]string{"Cluster", "KubeadmControlPlane", "HetznerCluster", "HCloudMachineTemplate", "MachineDeployment", "KubeadmConfigTemplate",
			"MachineHealthCheck", "HCloudRemediationTemplate"}},
	{"hcloud-hrobot", "hetzner", "hrobot", map[string]string{
		"hcloudToken": "tok", "robotUser": "u", "robotPassword": "p",
		"robotSshKeyName": "k", "robotSshPublicKey": "ssh-ed25519 AAAA", "robotSshPrivateKey": "-----BEGIN-----",
	}, []string{"HetznerBareMetalMachineTemplate", "HCloudMachineTemplate", "MachineDeployment",
		"MachineHealthCheck", "HCloudRemediationTemplate", "HetznerBareMetalRemediationTemplate"}},
	{"aws-ec2", "aws", "", map[string]string{"accessKeyId": "AKIA", "secretAccessKey": "s3cr3t"},
		[]string{"Cluster", "AWSClusterStaticIdentity", "AWSCluster", "KubeadmControlPlane", "AWSMachineTemplate", "MachineDeployment",
			"KubeadmConfigTemplate", "MachineHealthCheck"}},
	{"aws-ec2-ami", "aws", "", map[string]string{"accessKeyId": "AKIA", "secretAccessKey": "s3cr3t", "sessionToken": "tok"},
		[]string{"Cluster", "AWSClusterStaticIdentity", "AWSCluster", "KubeadmControlPlane", "AWSMachineTemplate", "MachineDeployment",
			"KubeadmConfigTemplate", "MachineHealthCheck"}},
	{"aws-eks", "aws", "eks", map[string]string{"accessKeyId": "AKIA", "secretAccessKey": "s3cr3t"},
		[]string{"Cluster", "AWSClusterStaticIdentity", "AWSManagedCluster", "AWSManagedControlPlane", "MachinePool", "AWSManagedMachinePool", "NodeadmConfig"}},
	{"aws-eks-cilium", "aws", "eks", map[string]string{"accessKeyId": "AKIA", "secretAccessKey": "s3cr3t"},
		[]string{"Cluster", "AWSClusterStaticIdentity", "AWSManagedCluster", "AWSManagedControlPlane", "MachinePool", "AWSManagedMachinePool", "NodeadmConfig"}},
}

func renderFlavor(t *testing.T, c *capi.Catalog, name, namespace string) *capi.Rendered {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "specs", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := loadSpec(t, c, data)
	r, err := c.Render(capi.RenderInput{
		Spec:      readSpec(t, s),
		Namespace: namespace,
		Labels:    map[string]string{mgmt.LabelTenant: "acme", mgmt.LabelCluster: s.Metadata.Name},
	})
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return r
}

func TestRenderGolden(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	for _, tc := range flavors {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := renderFlavor(t, c, tc.name, "")
			if r.Provider.Name != tc.provider || r.Flavor != tc.flavor {
				t.Errorf("provider %s flavor %q, want %s %q", r.Provider.Name, r.Flavor, tc.provider, tc.flavor)
			}
			kinds := map[string]bool{}
			for _, o := range r.Objects {
				kinds[o.GetKind()] = true
				if o.GetLabels()[mgmt.LabelTenant] != "acme" || o.GetLabels()[mgmt.LabelCluster] == "" {
					t.Errorf("%s %s lacks the owner labels: %v", o.GetKind(), o.GetName(), o.GetLabels())
				}
				if o.GetKind() == "AWSClusterStaticIdentity" {
					if o.GetNamespace() != "" {
						t.Errorf("cluster-scoped %s has namespace %q", o.GetKind(), o.GetNamespace())
					}
				} else if o.GetNamespace() == "" {
					t.Errorf("%s %s has no namespace", o.GetKind(), o.GetName())
				}
			}
			for _, k := range tc.kinds {
				if !kinds[k] {
					t.Errorf("no %s rendered (have %v)", k, kinds)
				}
			}
			got, err := r.YAML()
			if err != nil {
				t.Fatal(err)
			}
			again, _ := renderFlavor(t, c, tc.name, "").YAML()
			if !bytes.Equal(got, again) {
				t.Error("two renderings differ")
			}
			golden := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/capi -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("rendering differs from %s (run with -update if intended):\n%s", golden, got)
			}
		})
	}
}

// applyAll server-side applies objects and returns their resourceVersions.
func applyAll(t *testing.T, env *testenv.Env, objs []*unstructured.Unstructured) map[string]string {
	t.Helper()
	rvs := map[string]string{}
	for _, o := range objs {
		o = o.DeepCopy()
		if err := env.Apply(ctx(t), o); err != nil {
			t.Fatalf("apply %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
		rvs[o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName()] = o.GetResourceVersion()
	}
	return rvs
}

func ensureNamespace(t *testing.T, env *testenv.Env, name string) {
	t.Helper()
	err := env.Client.Create(ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// Every flavor's objects and credentials Secret pass server-side apply
// against the real CRDs, and applying again changes nothing.
func TestApplyFlavors(t *testing.T) {
	env := testenv.Shared(t)
	c := loadCatalog(t, embedded(t))
	for _, tc := range flavors {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			r := renderFlavor(t, c, tc.name, ns)
			secret, err := r.Provider.CredentialSecret("creds", ns, tc.creds)
			if err != nil {
				t.Fatal(err)
			}
			ensureNamespace(t, env, secret.GetNamespace())
			objs := append([]*unstructured.Unstructured{secret}, r.Objects...)
			began := time.Now()
			first := applyAll(t, env, objs)
			second := applyAll(t, env, objs)
			t.Logf("%d objects applied twice in %s", len(objs), time.Since(began).Round(time.Millisecond))
			for k, rv := range first {
				if second[k] != rv {
					t.Errorf("second apply changed %s: resourceVersion %s -> %s", k, rv, second[k])
				}
			}
			// The objects are there, with the fields the templates set.
			for _, o := range r.Objects {
				got := &unstructured.Unstructured{}
				got.SetGroupVersionKind(o.GroupVersionKind())
				if err := env.Client.Get(ctx(t), client.ObjectKeyFromObject(o), got); err != nil {
					t.Fatalf("get %s %s: %v", o.GetKind(), o.GetName(), err)
				}
				if got.GetLabels()[mgmt.LabelTenant] != "acme" {
					t.Errorf("%s %s stored without owner labels", o.GetKind(), o.GetName())
				}
			}
		})
	}
}

// The apply check has teeth: a template the CRD schema forbids (replicas
// as a string) renders but is refused by the apiserver.
func TestApplyRejectsBrokenTemplate(t *testing.T) {
	env := testenv.Shared(t)
	dir := copyTemplates(t)
	replaceInFile(t, filepath.Join(dir, "core", "kubeadm-control-plane.yaml"), "replicas: ${CP_REPLICAS}", `replicas: "${CP_REPLICAS}"`)
	c := loadCatalog(t, os.DirFS(dir))
	ns := env.Namespace(t)
	r := renderFlavor(t, c, "hcloud", ns)
	var applied bool
	for _, o := range r.Objects {
		if o.GetKind() != "KubeadmControlPlane" {
			continue
		}
		applied = true
		err := env.Apply(ctx(t), o.DeepCopy())
		if err == nil || !testenv.IsSchemaError(err) {
			t.Fatalf("apply of KubeadmControlPlane with string replicas: err = %v, want a schema error", err)
		}
		if !strings.Contains(err.Error(), "replicas") {
			t.Errorf("error does not name replicas: %v", err)
		}
		t.Logf("apiserver: %v", err)
	}
	if !applied {
		t.Fatal("no KubeadmControlPlane rendered")
	}
}

func TestLoadCatalogRejectsUndefinedVariables(t *testing.T) {
	t.Parallel()
	dir := copyTemplates(t)
	writeFile(t, filepath.Join(dir, "providers", "hetzner", "hcloud-machine-template.yaml"), `
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: HCloudMachineTemplate
metadata:
  name: "${CLUSTER_NAME}-${POOL_ID}"
spec:
  template:
    spec:
      type: "${NOT_DEFINED_ONE}"
      imageName: "${NOT_DEFINED_TWO}"
      placementGroupName: "${HAS_DEFAULT:=x}"
`)
	_, err := capi.LoadCatalog(os.DirFS(dir))
	if err == nil {
		t.Fatal("catalog with undefined variables loaded")
	}
	for _, want := range []string{"providers/hetzner/hcloud-machine-template.yaml", "NOT_DEFINED_ONE", "NOT_DEFINED_TWO"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "HAS_DEFAULT") {
		t.Errorf("error names a variable with a default: %v", err)
	}
}

func TestLoadCatalogErrorsNameTheFile(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		file, content, want string
	}{
		"unknown manifest field": {"providers/aws/provider.yaml", "name: aws\nsections: [aws]\nsurprise: 1\n", "unknown field"},
		"missing template":       {"providers/aws/provider.yaml", "name: aws\nsections: [aws]\ninfrastructure: {apiVersion: a/v1, clusterKind: A, machineTemplateKind: B}\ntemplates: [providers/aws/nope.yaml]\ncredentials: {keys: []}\n", "nope.yaml"},
		"section claimed twice":  {"providers/aws/provider.yaml", "name: aws2\nsections: [hcloud]\ninfrastructure: {apiVersion: a/v1, clusterKind: A, machineTemplateKind: B}\ntemplates: [core/cluster.yaml]\ncredentials: {keys: []}\n", "also claimed"},
		"not yaml":               {"core/cluster.yaml", "kind: [\n", "core/cluster.yaml"},
		"no kind":                {"core/cluster.yaml", "apiVersion: v1\nmetadata: {name: x}\n", "kind"},
		"spaced variable":        {"core/cluster.yaml", "apiVersion: v1\nkind: X\nmetadata: {name: \"${ CLUSTER_NAME }\"}\n", "without spaces"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := copyTemplates(t)
			writeFile(t, filepath.Join(dir, filepath.FromSlash(tc.file)), tc.content)
			_, err := capi.LoadCatalog(os.DirFS(dir))
			if err == nil {
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), tc.file) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s and %q", err, tc.file, tc.want)
			}
		})
	}
}

// Variables mapped to spec fields that are absent are all reported at once.
func TestRenderReportsAllMissingVariables(t *testing.T) {
	t.Parallel()
	dir := copyTemplates(t)
	replaceInFile(t, filepath.Join(dir, "providers", "hetzner", "provider.yaml"), "variables:\n",
		"variables:\n  EXTRA_ONE: spec.hcloud.notThere\n  EXTRA_TWO: spec.hcloud.alsoNotThere\n")
	writeFile(t, filepath.Join(dir, "providers", "hetzner", "hcloud-control-plane.yaml"), `
apiVersion: "${INFRA_API_VERSION}"
kind: HCloudMachineTemplate
metadata:
  name: "${CLUSTER_NAME}-control-plane"
spec:
  template:
    spec:
      type: "${EXTRA_ONE}"
      imageName: "${EXTRA_TWO}"
`)
	c := loadCatalog(t, os.DirFS(dir))
	data, err := os.ReadFile("testdata/specs/hcloud.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Render(capi.RenderInput{Spec: readSpec(t, loadSpec(t, c, data))})
	var mv *capi.MissingVariablesError
	if !errors.As(err, &mv) {
		t.Fatalf("err = %v, want *MissingVariablesError", err)
	}
	if len(mv.Variables) != 2 || mv.Variables["EXTRA_ONE"] == nil || mv.Variables["EXTRA_TWO"] == nil {
		t.Errorf("missing = %v, want EXTRA_ONE and EXTRA_TWO", mv.Variables)
	}
	if !strings.Contains(err.Error(), "[EXTRA_ONE, EXTRA_TWO]") || !strings.Contains(err.Error(), "hcloud-control-plane.yaml") {
		t.Errorf("error %q does not list both variables and the template", err)
	}
}

// A provider is added by dropping a folder into a template directory: no Go
// change. "fakecloud" reuses CAPH's kinds under another name and section.
func TestAddProviderWithoutGoChanges(t *testing.T) {
	env := testenv.Shared(t)
	dir := copyTemplates(t)
	p := filepath.Join(dir, "providers", "fakecloud")
	writeFile(t, filepath.Join(p, "provider.yaml"), `
name: fakecloud
sections: [fakecloud]
infrastructure:
  apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
  clusterKind: HetznerCluster
  machineTemplateKind: HCloudMachineTemplate
variables:
  FAKE_ZONE: spec.fakecloud.zone
  FAKE_KEY: spec.fakecloud.key
controlPlane: spec.fakecloud.controlPlane
templates:
  - core/cluster.yaml
  - core/kubeadm-control-plane.yaml
  - providers/fakecloud/cluster.yaml
  - providers/fakecloud/machines.yaml
pools:
  - workers: spec.fakecloud.workers
    templates: [core/machine-deployment.yaml, providers/fakecloud/pool.yaml]
credentials:
  keys:
    - {field: token, key: token, required: true}
`)
	writeFile(t, filepath.Join(p, "cluster.yaml"), `
apiVersion: "${INFRA_API_VERSION}"
kind: "${INFRA_CLUSTER_KIND}"
metadata:
  name: "${CLUSTER_NAME}"
spec:
  controlPlaneRegions: ["${FAKE_ZONE}"]
  hcloudNetwork: {enabled: false}
  sshKeys: {hcloud: [{name: "${FAKE_KEY}"}]}
  hetznerSecretRef: {name: "${CREDENTIAL_SECRET_NAME}", key: {hcloudToken: token}}
`)
	writeFile(t, filepath.Join(p, "machines.yaml"), `
apiVersion: "${INFRA_API_VERSION}"
kind: "${INFRA_MACHINE_TEMPLATE_KIND}"
metadata:
  name: "${CLUSTER_NAME}-control-plane"
spec:
  template:
    spec:
      type: "${CP_TYPE}"
`)
	writeFile(t, filepath.Join(p, "pool.yaml"), `
apiVersion: "${INFRA_API_VERSION}"
kind: "${INFRA_MACHINE_TEMPLATE_KIND}"
metadata:
  name: "${CLUSTER_NAME}-${POOL_ID}"
spec:
  template:
    spec:
      type: "${POOL_TYPE}"
`)
	c := loadCatalog(t, os.DirFS(dir))
	if got := strings.Join(c.ProviderSections(), ","); got != "aws,fakecloud,hcloud,hrobot" {
		t.Errorf("ProviderSections = %s", got)
	}
	doc := []byte(`
apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata: {name: fake}
spec:
  kubernetes: {version: v1.32.0}
  cluster: {domain: fake.example.com}
  fakecloud:
    zone: nbg1
    key: ops
    controlPlane: {type: cx22}
    workers:
      small: {type: cx22, replicas: 2}
`)
	// Without the catalog's sections the spec is refused...
	if _, err := spec.Load(doc, spec.ValidateOptions{}); err == nil || !strings.Contains(err.Error(), "spec.fakecloud: unknown field") {
		t.Fatalf("spec.Load without the catalog's sections: err = %v", err)
	}
	// ...with them it loads, is detected and renders.
	s := loadSpec(t, c, doc)
	if s.Spec.Extra["fakecloud"] == nil {
		t.Fatalf("spec.fakecloud not kept: %+v", s.Spec)
	}
	prov, err := c.Detect(s)
	if err != nil || prov.Name != "fakecloud" {
		t.Fatalf("Detect = %v, %v", prov, err)
	}
	ns := env.Namespace(t)
	r, err := c.Render(capi.RenderInput{Spec: readSpec(t, s), Namespace: ns, Labels: map[string]string{mgmt.LabelTenant: "acme"}})
	if err != nil {
		t.Fatal(err)
	}
	var kcpReplicas int64
	for _, o := range r.Objects {
		if o.GetKind() == "KubeadmControlPlane" {
			kcpReplicas, _, _ = unstructured.NestedInt64(o.Object, "spec", "replicas")
		}
	}
	if kcpReplicas != 3 {
		t.Errorf("control plane replicas = %d, want the default 3", kcpReplicas)
	}
	if len(r.Objects) != 7 {
		t.Errorf("%d objects, want 7 (Cluster, KCP, HetznerCluster, CP template, MD, KubeadmConfigTemplate, pool template)", len(r.Objects))
	}
	secret, err := prov.CredentialSecret("fake-credentials", ns, map[string]string{"token": "t"})
	if err != nil {
		t.Fatal(err)
	}
	first := applyAll(t, env, append(r.Objects, secret))
	second := applyAll(t, env, append(r.Objects, secret))
	for k, rv := range first {
		if second[k] != rv {
			t.Errorf("second apply changed %s", k)
		}
	}
}

func TestDetect(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	hc := &spec.HCloud{Region: "fsn1"}
	for name, tc := range map[string]struct {
		spec    spec.ClusterSpec
		want    string
		wantErr error
		fields  []string
	}{
		"hcloud":          {spec: spec.ClusterSpec{HCloud: hc}, want: "hetzner"},
		"hcloud+hrobot":   {spec: spec.ClusterSpec{HCloud: hc, HRobot: &spec.HRobot{}}, want: "hetzner"},
		"aws":             {spec: spec.ClusterSpec{AWS: &spec.AWS{}}, want: "aws"},
		"none":            {wantErr: capi.ErrNoProvider, fields: []string{"spec.aws", "spec.hcloud", "spec.hrobot"}},
		"ambiguous":       {spec: spec.ClusterSpec{HRobot: &spec.HRobot{}, AWS: &spec.AWS{}}, wantErr: capi.ErrAmbiguousProvider, fields: []string{"spec.hrobot", "spec.aws", "hetzner", "aws"}},
		"unknown section": {spec: spec.ClusterSpec{Extra: map[string]map[string]any{"gcp": {}}}, wantErr: capi.ErrNoProvider, fields: []string{"spec.gcp"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p, err := c.Detect(&spec.Capi{Spec: tc.spec})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				for _, f := range tc.fields {
					if !strings.Contains(err.Error(), f) {
						t.Errorf("error %q does not name %s", err, f)
					}
				}
				return
			}
			if err != nil || p.Name != tc.want {
				t.Fatalf("Detect = %v, %v; want %s", p, err, tc.want)
			}
		})
	}
}

func TestCredentialSecret(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	aws, hetzner := c.Provider("aws"), c.Provider("hetzner")

	s, err := aws.CredentialSecret("prod-credentials", "tenant-a", map[string]string{"accessKeyId": "AKIA", "secretAccessKey": "very-secret"})
	if err != nil {
		t.Fatal(err)
	}
	if s.GetNamespace() != "capa-system" || s.GetName() != "tenant-a-prod-credentials" {
		t.Errorf("aws Secret at %s/%s, want capa-system/tenant-a-prod-credentials", s.GetNamespace(), s.GetName())
	}
	data, _, _ := unstructured.NestedStringMap(s.Object, "data")
	if data["AccessKeyID"] != "QUtJQQ==" || data["SecretAccessKey"] == "" || len(data) != 2 {
		t.Errorf("aws Secret data = %v", data)
	}

	s, err = hetzner.CredentialSecret("prod-credentials", "tenant-a", map[string]string{"hcloudToken": "t"})
	if err != nil {
		t.Fatal(err)
	}
	if s.GetNamespace() != "tenant-a" || s.GetName() != "prod-credentials" {
		t.Errorf("hetzner Secret at %s/%s", s.GetNamespace(), s.GetName())
	}
	data, _, _ = unstructured.NestedStringMap(s.Object, "data")
	if _, ok := data["hcloud"]; !ok || len(data) != 1 {
		t.Errorf("hetzner Secret data keys = %v, want hcloud only", data)
	}

	_, err = aws.CredentialSecret("c", "ns", map[string]string{"secretAccessKey": "very-secret", "hcloudToken": "other-secret"})
	if !errors.Is(err, capi.ErrCredentials) {
		t.Fatalf("err = %v, want ErrCredentials", err)
	}
	for _, want := range []string{"accessKeyId", "hcloudToken"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "very-secret") || strings.Contains(err.Error(), "other-secret") {
		t.Errorf("error leaks a secret value: %v", err)
	}
}

// A spec value cannot change the rendered structure: it is escaped, so a
// type with a newline and a document separator stays one string.
func TestRenderEscapesValues(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	data, err := os.ReadFile("testdata/specs/hcloud.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := loadSpec(t, c, data)
	evil := "cax21\"\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: x}\n#"
	s.Spec.HCloud.Workers["general"] = spec.Pool{Replicas: s.Spec.HCloud.Workers["general"].Replicas, Type: evil}
	r, err := c.Render(capi.RenderInput{Spec: readSpec(t, s)})
	if err != nil {
		t.Fatal(err)
	}
	clean := renderFlavor(t, c, "hcloud", "")
	if len(r.Objects) != len(clean.Objects) {
		t.Fatalf("%d objects, want %d", len(r.Objects), len(clean.Objects))
	}
	found := false
	for _, o := range r.Objects {
		if o.GetKind() == "Secret" {
			t.Fatal("a spec value injected a Secret")
		}
		if typ, _, _ := unstructured.NestedString(o.Object, "spec", "template", "spec", "type"); typ == evil {
			found = true
		}
	}
	if !found {
		t.Error("the pool type did not arrive unchanged in its HCloudMachineTemplate")
	}
}
