package capi_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lok8s.dev/provisioner/internal/capi"
)

// listyProvider is a provider whose patch applies when a list of the spec
// contains a name, and whose variable is a built-in's value through a
// table: the two manifest forms the aws provider uses for Cilium's
// ingress rules (spec.bootstrap) and the CCM's image (K8S_VERSION_MINOR).
func listyProvider(t *testing.T, manifestEdit ...[2]string) string {
	t.Helper()
	dir := copyTemplates(t)
	p := filepath.Join(dir, "providers", "listy")
	manifest := `
name: listy
sections: [listy]
infrastructure:
  apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
  clusterKind: HetznerCluster
  machineTemplateKind: HCloudMachineTemplate
variables:
  TAG:
    variable: K8S_VERSION_MINOR
    map: {v1.34: v1.34.9, v1.35: v1.35.1}
templates: [providers/listy/cluster.yaml]
patches:
  - file: providers/listy/named.yaml
    when: {path: spec.listy.things, contains: wanted}
credentials: {keys: []}
`
	for _, e := range manifestEdit {
		if !strings.Contains(manifest, e[0]) {
			t.Fatalf("manifest: %q not found", e[0])
		}
		manifest = strings.Replace(manifest, e[0], e[1], 1)
	}
	writeFile(t, filepath.Join(p, "provider.yaml"), manifest)
	writeFile(t, filepath.Join(p, "cluster.yaml"), `
apiVersion: "${INFRA_API_VERSION}"
kind: "${INFRA_CLUSTER_KIND}"
metadata:
  name: "${CLUSTER_NAME}"
  labels: {tag: "${TAG:=none}"}
spec: {}
`)
	writeFile(t, filepath.Join(p, "named.yaml"), `
apiVersion: "${INFRA_API_VERSION}"
kind: "${INFRA_CLUSTER_KIND}"
metadata: {name: "${CLUSTER_NAME}", labels: {named: "yes"}}
`)
	return dir
}

func listySpec(version, things string) []byte {
	return []byte(`
apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata: {name: ls}
spec:
  kubernetes: {version: ` + version + `}
  cluster: {domain: ls.example.com}
  listy:
    things: ` + things + `
`)
}

// A condition's contains holds when the list at its path has the text as
// an item or as an item's name (spec.bootstrap: "cilium" or {name:
// cilium, values: ...}), and not for another name, a name inside an
// item's other fields, or a path that is no list. A variable from a
// built-in takes the table's value for it, and is unset (its template
// default applies) for a value the table lacks.
func TestRenderConditionContainsAndVariableFrom(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, os.DirFS(listyProvider(t)))
	for _, tc := range []struct {
		version, things string
		named           bool
		tag             string
	}{
		{"v1.34.2", "[wanted, other]", true, "v1.34.9"},
		{"v1.35.0", "[other, {name: wanted, values: {a: 1}}]", true, "v1.35.1"},
		{"v1.35.0", "[other, {name: other, values: {name: wanted}}]", false, "v1.35.1"},
		{"v1.33.1", "[wantedish]", false, "none"},
		{"v1.33.1", "wanted", false, "none"},
		{"v1.33.1", "[]", false, "none"},
	} {
		r, err := c.Render(capi.RenderInput{Spec: readSpec(t, loadSpec(t, c, listySpec(tc.version, tc.things)))})
		if err != nil {
			t.Fatalf("%s: %v", tc.things, err)
		}
		labels := r.Objects[0].GetLabels()
		if named := labels["named"] == "yes"; named != tc.named {
			t.Errorf("things %s: patched %v, want %v", tc.things, named, tc.named)
		}
		if labels["tag"] != tc.tag {
			t.Errorf("%s: TAG %q, want %q", tc.version, labels["tag"], tc.tag)
		}
		vars, err := c.Variables(readSpec(t, loadSpec(t, c, listySpec(tc.version, tc.things))), "")
		if err != nil {
			t.Fatal(err)
		}
		if got := vars["TAG"]; got != tc.tag {
			t.Errorf("%s: Variables TAG %q, want %q (the template's default when unset)", tc.version, got, tc.tag)
		}
	}
}

// The two forms are checked when the catalog loads.
func TestLoadCatalogChecksConditionsAndVariables(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		edit [2]string
		want string
	}{
		"equals and contains": {[2]string{"contains: wanted}", "contains: wanted, equals: x}"}, "patches[0].when: equals or contains, not both"},
		"path and variable":   {[2]string{"variable: K8S_VERSION_MINOR", "variable: K8S_VERSION_MINOR\n    path: spec.listy.x"}, "variables.TAG: a path or a variable, not both"},
		"not a built-in":      {[2]string{"variable: K8S_VERSION_MINOR", "variable: POOL_NAME"}, `variable "POOL_NAME" is not a cluster-level built-in`},
		"no map":              {[2]string{"    map: {v1.34: v1.34.9, v1.35: v1.35.1}\n", ""}, "a variable from K8S_VERSION_MINOR needs a map"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := capi.LoadCatalog(os.DirFS(listyProvider(t, tc.edit)))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "providers/listy/provider.yaml") {
				t.Fatalf("err = %v, want %q naming the manifest", err, tc.want)
			}
		})
	}
}
