package capi_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"lok8s.dev/provisioner/internal/capi"
)

// patchProvider is a provider, "patchy", whose manifest uses patches (per
// cluster and per pool, with and without conditions) and a value file.
func patchProvider(t *testing.T) string {
	t.Helper()
	dir := copyTemplates(t)
	p := filepath.Join(dir, "providers", "patchy")
	writeFile(t, filepath.Join(p, "provider.yaml"), `
name: patchy
sections: [patchy]
infrastructure:
  apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
  clusterKind: HetznerCluster
  machineTemplateKind: HCloudMachineTemplate
variables:
  ZONE: spec.patchy.zone
valueFiles:
  SCRIPT: providers/patchy/script.sh
controlPlane: spec.patchy.controlPlane
templates: [providers/patchy/cluster.yaml]
patches:
  - file: providers/patchy/always.yaml
  - file: providers/patchy/spread.yaml
    when: {path: spec.patchy.spread, equals: "true"}
  - file: providers/patchy/never.yaml
    when: {path: spec.patchy.notThere}
pools:
  - workers: spec.patchy.workers
    namePrefix: p-
    templates: [providers/patchy/pool.yaml]
    patches:
      - file: providers/patchy/pool-group.yaml
        when: {path: spec.patchy.spread, equals: "true"}
credentials: {keys: []}
`)
	writeFile(t, filepath.Join(p, "script.sh"), "#!/bin/sh\necho \"${HOME}\" $1\n")
	writeFile(t, filepath.Join(p, "cluster.yaml"), `
apiVersion: "${INFRA_API_VERSION}"
kind: "${INFRA_CLUSTER_KIND}"
metadata:
  name: "${CLUSTER_NAME}"
  labels: {a: "1"}
spec:
  controlPlaneRegions: ["${ZONE}"]
  hcloudNetwork: {enabled: false, networkZone: eu-central}
  sshKeys: {hcloud: [{name: k}]}
  hetznerSecretRef: {name: s, key: {hcloudToken: t}}
  hcloudPlacementGroups: [{name: base, type: spread}]
`)
	writeFile(t, filepath.Join(p, "always.yaml"), `
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: HetznerCluster
metadata:
  name: "${CLUSTER_NAME}"
  labels: {b: "2"}
spec:
  controlPlaneEndpoint: {port: 443}
  hcloudNetwork: {enabled: null}
`)
	writeFile(t, filepath.Join(p, "spread.yaml"), `
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: HetznerCluster
metadata: {name: "${CLUSTER_NAME}"}
spec:
  hcloudPlacementGroups: [{name: control-plane, type: spread}]
`)
	writeFile(t, filepath.Join(p, "never.yaml"), `
apiVersion: v1
kind: ConfigMap
metadata: {name: not-rendered}
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
      imageName: "${SCRIPT}"
`)
	writeFile(t, filepath.Join(p, "pool-group.yaml"), `
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: HetznerCluster
metadata: {name: "${CLUSTER_NAME}"}
spec:
  hcloudPlacementGroups: [{name: "${POOL_ID}", type: spread}]
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: HCloudMachineTemplate
metadata: {name: "${CLUSTER_NAME}-${POOL_ID}"}
spec:
  template:
    spec:
      placementGroupName: "${POOL_ID}"
`)
	return dir
}

func patchySpec(spread bool) string {
	s := "false"
	if spread {
		s = "true"
	}
	return `
apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata: {name: pt}
spec:
  kubernetes: {version: v1.35.4}
  cluster: {domain: pt.example.com}
  patchy:
    zone: fsn1
    spread: ` + s + `
    controlPlane: {type: cx22}
    workers:
      b: {type: cx32}
      a: {type: cx22}
`
}

// Patches: the cluster's, then each pool's with the pool's variables, each
// only when its condition holds, merged into the object they name; value
// files arrive as they are, ${...} included.
func TestRenderPatches(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, os.DirFS(patchProvider(t)))
	for _, spread := range []bool{true, false} {
		r, err := c.Render(capi.RenderInput{Spec: readSpec(t, loadSpec(t, c, []byte(patchySpec(spread))))})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Objects) != 3 {
			t.Fatalf("%d objects, want 3 (a patch adds none)", len(r.Objects))
		}
		hc := r.Objects[0]
		groups, _, _ := unstructured.NestedSlice(hc.Object, "spec", "hcloudPlacementGroups")
		var names []string
		for _, g := range groups {
			names = append(names, g.(map[string]any)["name"].(string))
		}
		want := "base"
		if spread {
			want = "base,control-plane,p-a,p-b"
		}
		if strings.Join(names, ",") != want {
			t.Errorf("spread %v: placement groups %v, want %s", spread, names, want)
		}
		if port, _, _ := unstructured.NestedInt64(hc.Object, "spec", "controlPlaneEndpoint", "port"); port != 443 {
			t.Errorf("the unconditional patch was not applied: port %d", port)
		}
		if _, found, _ := unstructured.NestedFieldNoCopy(hc.Object, "spec", "hcloudNetwork", "enabled"); found {
			t.Error("null did not remove hcloudNetwork.enabled")
		}
		if zone, _, _ := unstructured.NestedString(hc.Object, "spec", "hcloudNetwork", "networkZone"); zone != "eu-central" {
			t.Errorf("merging lost a sibling: networkZone %q", zone)
		}
		if !reflect.DeepEqual(hc.GetLabels(), map[string]string{"a": "1", "b": "2"}) {
			t.Errorf("labels %v, want the template's and the patch's", hc.GetLabels())
		}
		for _, o := range r.Objects[1:] {
			pg, _, _ := unstructured.NestedString(o.Object, "spec", "template", "spec", "placementGroupName")
			if wantPG := strings.TrimPrefix(o.GetName(), "pt-"); spread && pg != wantPG || !spread && pg != "" {
				t.Errorf("spread %v: %s placementGroupName %q", spread, o.GetName(), pg)
			}
			if img, _, _ := unstructured.NestedString(o.Object, "spec", "template", "spec", "imageName"); img != "#!/bin/sh\necho \"${HOME}\" $1\n" {
				t.Errorf("value file arrived as %q", img)
			}
		}
	}
}

func TestRenderPatchWithoutTarget(t *testing.T) {
	t.Parallel()
	dir := patchProvider(t)
	writeFile(t, filepath.Join(dir, "providers", "patchy", "spread.yaml"), `
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: HCloudMachineTemplate
metadata: {name: "${CLUSTER_NAME}-nope"}
spec: {}
`)
	c := loadCatalog(t, os.DirFS(dir))
	_, err := c.Render(capi.RenderInput{Spec: readSpec(t, loadSpec(t, c, []byte(patchySpec(true))))})
	if err == nil || !strings.Contains(err.Error(), "providers/patchy/spread.yaml") || !strings.Contains(err.Error(), `HCloudMachineTemplate.infrastructure.cluster.x-k8s.io "pt-nope" is not rendered`) {
		t.Fatalf("err = %v, want the patch file and its missing target", err)
	}
}

// Patches and value files are checked when the catalog loads, as templates
// are.
func TestLoadCatalogChecksPatches(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		file, content string
		want          []string
	}{
		"undefined variable in a patch": {"providers/patchy/spread.yaml",
			"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \"${UNDEFINED_HERE}\"}\n", []string{"providers/patchy/spread.yaml", "UNDEFINED_HERE"}},
		"a patch without a name": {"providers/patchy/spread.yaml",
			"apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", []string{"providers/patchy/spread.yaml", "metadata.name"}},
		"a missing patch file": {"providers/patchy/provider.yaml", "", []string{"nope.yaml"}},
		"a bad condition":      {"providers/patchy/provider.yaml", "", []string{"patches[0].when.path"}},
		"a missing value file": {"providers/patchy/provider.yaml", "", []string{"value file", "missing.sh"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := patchProvider(t)
			path := filepath.Join(dir, filepath.FromSlash(tc.file))
			content := tc.content
			if content == "" {
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				content = string(data)
				switch name {
				case "a missing patch file":
					content = strings.Replace(content, "providers/patchy/never.yaml", "providers/patchy/nope.yaml", 1)
				case "a bad condition":
					content = strings.Replace(content, "  - file: providers/patchy/always.yaml\n", "  - file: providers/patchy/always.yaml\n    when: {path: \"not a path\"}\n", 1)
				case "a missing value file":
					content = strings.Replace(content, "providers/patchy/script.sh", "providers/patchy/missing.sh", 1)
				}
			}
			writeFile(t, path, content)
			_, err := capi.LoadCatalog(os.DirFS(dir))
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}
