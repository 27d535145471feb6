package localmgmt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// webhookURL is where the apiserver reaches a manager's webhook server.
func webhookURL(port int, path string) string {
	return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/" + strings.TrimPrefix(path, "/")
}

// installCRDs installs (creates or updates) every CRD of every provider and
// waits until they are served. A CRD that serves more than one version gets
// its conversion webhook pointed at the owning manager's local webhook server
// (path /convert, what the release's kustomize patches configure), trusting
// caPEM; the others keep strategy None.
func installCRDs(cfg *rest.Config, modDirs map[string]string, ports map[string]int, caPEM []byte) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var all []*apiextensionsv1.CustomResourceDefinition
	for _, p := range Providers {
		opts := envtest.CRDInstallOptions{Paths: []string{p.CRDDir(modDirs[p.Module])}, ErrorIfPathMissing: true}
		if err := envtest.ReadCRDFiles(&opts); err != nil {
			return nil, fmt.Errorf("reading %s CRDs: %w", p.Name, err)
		}
		if len(opts.CRDs) == 0 {
			return nil, fmt.Errorf("no CRDs in %s", opts.Paths[0])
		}
		labels, err := kustomizeLabels(modDirs[p.Module], p)
		if err != nil {
			return nil, err
		}
		for _, crd := range opts.CRDs {
			if crd.Labels == nil {
				crd.Labels = map[string]string{}
			}
			for k, v := range labels {
				crd.Labels[k] = v
			}
			if len(crd.Spec.Versions) < 2 {
				crd.Spec.Conversion = &apiextensionsv1.CustomResourceConversion{Strategy: apiextensionsv1.NoneConverter}
				continue
			}
			url := webhookURL(ports[p.Name], "/convert")
			crd.Spec.Conversion = &apiextensionsv1.CustomResourceConversion{
				Strategy: apiextensionsv1.WebhookConverter,
				Webhook: &apiextensionsv1.WebhookConversion{
					ClientConfig:             &apiextensionsv1.WebhookClientConfig{URL: &url, CABundle: caPEM},
					ConversionReviewVersions: []string{"v1"},
				},
			}
		}
		all = append(all, opts.CRDs...)
	}
	installed, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{
		CRDs:    all,
		MaxTime: 2 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("installing CRDs: %w", err)
	}
	return installed, nil
}

// kustomizeLabels returns the labels the release's kustomizations put on a
// provider's CRDs: config/crd/kustomization.yaml adds the contract labels
// (cluster.x-k8s.io/v1beta2: v1beta2, ...), which core controllers read to
// pick a provider kind's API version, and config/default/kustomization.yaml
// adds cluster.x-k8s.io/provider. Both `labels[].pairs` and the older
// `commonLabels` are read.
func kustomizeLabels(moduleDir string, p Provider) (map[string]string, error) {
	labels := map[string]string{}
	for _, sub := range []string{"crd", "default"} {
		path := filepath.Join(moduleDir, filepath.FromSlash(p.Dir), "config", sub, "kustomization.yaml")
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var k struct {
			Labels []struct {
				Pairs map[string]string `json:"pairs"`
			} `json:"labels"`
			CommonLabels map[string]string `json:"commonLabels"`
		}
		if err := yaml.Unmarshal(data, &k); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for _, l := range k.Labels {
			for key, v := range l.Pairs {
				labels[key] = v
			}
		}
		for key, v := range k.CommonLabels {
			labels[key] = v
		}
	}
	return labels, nil
}

// webhookConfigs reads a provider's config/webhook/manifests.yaml (one
// MutatingWebhookConfiguration and one ValidatingWebhookConfiguration, as
// controller-gen writes them) and rewrites them for this machine: each
// webhook's service reference becomes a URL on the manager's local port, with
// caPEM as its caBundle, and the configurations are named after the provider
// (the manifests all use the same generic names; kustomize prefixes them at
// release).
func webhookConfigs(p Provider, moduleDir string, port int, caPEM []byte) ([]client.Object, error) {
	path := p.WebhookManifest(moduleDir)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var objs []client.Object
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var raw runtime.RawExtension
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		raw.Raw = bytes.TrimSpace(raw.Raw)
		if len(raw.Raw) == 0 || string(raw.Raw) == "null" {
			continue
		}
		var meta struct{ APIVersion, Kind string }
		if err := yaml.Unmarshal(raw.Raw, &meta); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if meta.APIVersion != "admissionregistration.k8s.io/v1" {
			return nil, fmt.Errorf("%s: unexpected %s %s", path, meta.APIVersion, meta.Kind)
		}
		switch meta.Kind {
		case "MutatingWebhookConfiguration":
			var c admissionv1.MutatingWebhookConfiguration
			if err := yaml.UnmarshalStrict(raw.Raw, &c); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			c.Name = "capi-" + p.Name + "-mutating"
			for i := range c.Webhooks {
				if err := localClientConfig(&c.Webhooks[i].ClientConfig, port, caPEM); err != nil {
					return nil, fmt.Errorf("%s: webhook %s: %w", path, c.Webhooks[i].Name, err)
				}
			}
			objs = append(objs, &c)
		case "ValidatingWebhookConfiguration":
			var c admissionv1.ValidatingWebhookConfiguration
			if err := yaml.UnmarshalStrict(raw.Raw, &c); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			c.Name = "capi-" + p.Name + "-validating"
			for i := range c.Webhooks {
				if err := localClientConfig(&c.Webhooks[i].ClientConfig, port, caPEM); err != nil {
					return nil, fmt.Errorf("%s: webhook %s: %w", path, c.Webhooks[i].Name, err)
				}
			}
			objs = append(objs, &c)
		default:
			return nil, fmt.Errorf("%s: unexpected kind %s", path, meta.Kind)
		}
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("%s: no webhook configurations", path)
	}
	return objs, nil
}

func localClientConfig(cc *admissionv1.WebhookClientConfig, port int, caPEM []byte) error {
	if cc.Service == nil || cc.Service.Path == nil {
		return errors.New("clientConfig has no service path")
	}
	url := webhookURL(port, *cc.Service.Path)
	cc.Service = nil
	cc.URL = &url
	cc.CABundle = caPEM
	return nil
}

// applyObjects creates each object, or replaces the existing one of that name.
func applyObjects(ctx context.Context, c client.Client, objs []client.Object) error {
	for _, obj := range objs {
		err := c.Create(ctx, obj)
		if apierrors.IsAlreadyExists(err) {
			existing := obj.DeepCopyObject().(client.Object)
			if err = c.Get(ctx, client.ObjectKeyFromObject(obj), existing); err == nil {
				obj.SetResourceVersion(existing.GetResourceVersion())
				err = c.Update(ctx, obj)
			}
		}
		if err != nil {
			return fmt.Errorf("applying %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return nil
}

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(admissionv1.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	return s
}
