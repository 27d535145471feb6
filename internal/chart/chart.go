// Package chart renders the service's own Helm chart (deploy/helm/lok8s)
// the way `helm template` does, with the Helm SDK, so tests can lint it,
// apply what it renders to a real apiserver and run the service with the
// RBAC it grants.
package chart

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// KubeVersion is the Kubernetes version the chart is rendered for: the
// version of the tests' kube-apiserver.
const KubeVersion = "v1.37.2"

// Dir is the chart's directory in the repository rooted at root.
func Dir(root string) string { return filepath.Join(root, "deploy", "helm", "lok8s") }

// Render renders the chart at dir as release in namespace with values and
// returns its objects in the order Helm lists them.
func Render(dir, release, namespace string, values map[string]any) ([]*unstructured.Unstructured, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("chart: load %s: %w", dir, err)
	}
	kv, err := common.ParseKubeVersion(KubeVersion)
	if err != nil {
		return nil, fmt.Errorf("chart: %w", err)
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName, install.Namespace, install.KubeVersion = release, namespace, kv
	install.Replace = true
	out, err := install.Run(ch, values)
	if err != nil {
		return nil, fmt.Errorf("chart: render %s: %w", release, err)
	}
	rel, ok := out.(*releasev1.Release)
	if !ok {
		return nil, fmt.Errorf("chart: render %s: unexpected release type %T", release, out)
	}
	return Decode([]byte(rel.Manifest))
}

// Lint runs `helm lint --strict` on the chart at dir with values.
func Lint(dir, namespace string, values map[string]any) error {
	kv, err := common.ParseKubeVersion(KubeVersion)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	lint := action.NewLint()
	lint.Strict, lint.Namespace, lint.KubeVersion = true, namespace, kv
	result := lint.Run([]string{dir}, values)
	if len(result.Errors) > 0 {
		return fmt.Errorf("chart: lint: %w", errors.Join(result.Errors...))
	}
	return nil
}

// Decode splits a multi-document manifest into objects, skipping empty documents.
func Decode(manifest []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	var objs []*unstructured.Unstructured
	for {
		obj := &unstructured.Unstructured{}
		err := dec.Decode(&obj.Object)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("chart: decode manifest: %w", err)
		}
		if len(obj.Object) > 0 {
			objs = append(objs, obj)
		}
	}
}
