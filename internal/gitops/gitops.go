// Package gitops connects a workload cluster to its GitOps repository: the
// objects Flux (GitRepository + Kustomization) or Argo CD (Application)
// reconcile, the repository Secret made from a stored git credential, and
// the source's readiness as those controllers report it.
package gitops

import (
	"errors"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The providers spec.gitops.provider names.
const (
	Flux = "flux"
	Argo = "argo"
)

// Name is the name of the objects the service creates on a workload cluster.
const Name = "lok8s"

// Namespaces where each provider's controllers read their objects.
const (
	FluxNamespace = "flux-system"
	ArgoNamespace = "argocd"
)

// CredentialFields are the fields of a git credential (provider "git"):
// a token (with an optional username) for https, or an SSH key (with
// known hosts) for ssh.
var CredentialFields = []string{"username", "token", "sshPrivateKey", "knownHosts"}

// ErrCredential is returned for a git credential that does not fit the repository.
var ErrCredential = errors.New("git credential")

// Source is what the cluster's spec.gitops asks for.
type Source struct {
	Provider, Repo, Branch, Path string
	// Credential holds a git credential's fields for a private repository (nil: public).
	Credential map[string]string
}

var (
	gitRepositoryGVK = schema.GroupVersionKind{Group: "source.toolkit.fluxcd.io", Version: "v1", Kind: "GitRepository"}
	kustomizationGVK = schema.GroupVersionKind{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Kind: "Kustomization"}
	applicationGVK   = schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Application"}
)

// SourceGVK is the kind whose status says whether the source is ready.
func SourceGVK(provider string) schema.GroupVersionKind {
	if provider == Argo {
		return applicationGVK
	}
	return gitRepositoryGVK
}

// Namespace is where provider's objects live.
func Namespace(provider string) string {
	if provider == Argo {
		return ArgoNamespace
	}
	return FluxNamespace
}

func object(gvk schema.GroupVersionKind, namespace, name string, spec map[string]any) *unstructured.Unstructured {
	o := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	o.SetGroupVersionKind(gvk)
	o.SetNamespace(namespace)
	o.SetName(name)
	o.SetLabels(map[string]string{"app.kubernetes.io/managed-by": "lok8s"})
	return o
}

// Objects returns what to apply on the workload cluster for src: the
// repository Secret (when a credential is given) first, then the
// provider's objects.
func Objects(src Source) ([]*unstructured.Unstructured, error) {
	ssh := strings.HasPrefix(src.Repo, "ssh://") || !strings.Contains(src.Repo, "://")
	secret, err := repoSecret(src, ssh)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	if secret != nil {
		objs = append(objs, secret)
	}
	switch src.Provider {
	case Flux:
		repo := map[string]any{"url": src.Repo, "interval": "1m", "ref": map[string]any{"branch": src.Branch}}
		if secret != nil {
			repo["secretRef"] = map[string]any{"name": secret.GetName()}
		}
		objs = append(objs,
			object(gitRepositoryGVK, FluxNamespace, Name, repo),
			object(kustomizationGVK, FluxNamespace, Name, map[string]any{
				"interval": "10m", "path": "./" + src.Path, "prune": true,
				"sourceRef": map[string]any{"kind": "GitRepository", "name": Name},
			}))
	case Argo:
		objs = append(objs, object(applicationGVK, ArgoNamespace, Name, map[string]any{
			"project":     "default",
			"source":      map[string]any{"repoURL": src.Repo, "targetRevision": src.Branch, "path": src.Path},
			"destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": "default"},
			"syncPolicy":  map[string]any{"automated": map[string]any{"prune": true, "selfHeal": true}},
		}))
	default:
		return nil, fmt.Errorf("gitops: unknown provider %q", src.Provider)
	}
	return objs, nil
}

// repoSecret is the Secret each provider reads a private repository's
// credential from (Flux: username/password or identity/known_hosts; Argo
// CD: a repository Secret labelled argocd.argoproj.io/secret-type).
func repoSecret(src Source, ssh bool) (*unstructured.Unstructured, error) {
	c := src.Credential
	if c == nil {
		return nil, nil
	}
	data := map[string]any{}
	switch {
	case ssh && c["sshPrivateKey"] == "":
		return nil, fmt.Errorf("%w: %s is an ssh repository: the credential needs sshPrivateKey", ErrCredential, src.Repo)
	case !ssh && c["token"] == "":
		return nil, fmt.Errorf("%w: %s is an https repository: the credential needs token", ErrCredential, src.Repo)
	}
	username := c["username"]
	if username == "" {
		username = "git"
	}
	namespace := Namespace(src.Provider)
	secret := &unstructured.Unstructured{}
	secret.SetAPIVersion("v1")
	secret.SetKind("Secret")
	secret.SetNamespace(namespace)
	secret.SetName(Name + "-git")
	labels := map[string]string{"app.kubernetes.io/managed-by": "lok8s"}
	switch src.Provider {
	case Flux:
		if ssh {
			data["identity"], data["known_hosts"] = c["sshPrivateKey"], c["knownHosts"]
		} else {
			data["username"], data["password"] = username, c["token"]
		}
	case Argo:
		labels["argocd.argoproj.io/secret-type"] = "repository"
		data["type"], data["url"] = "git", src.Repo
		if ssh {
			data["sshPrivateKey"] = c["sshPrivateKey"]
		} else {
			data["username"], data["password"] = username, c["token"]
		}
	}
	secret.SetLabels(labels)
	secret.Object["stringData"] = data
	return secret, nil
}

// Readiness is what the provider's controllers report of the source.
type Readiness struct {
	Ready   bool
	Reason  string
	Message string
}

// ReadinessOf reads the readiness from the provider's source object
// (GitRepository's Ready condition; an Application synced and healthy).
func ReadinessOf(provider string, obj *unstructured.Unstructured) Readiness {
	if provider == Argo {
		sync, _, _ := unstructured.NestedString(obj.Object, "status", "sync", "status")
		health, _, _ := unstructured.NestedString(obj.Object, "status", "health", "status")
		msg, _, _ := unstructured.NestedString(obj.Object, "status", "health", "message")
		if sync == "" && health == "" {
			return Readiness{Reason: "NotReported", Message: "Argo CD has not reported on the Application yet"}
		}
		return Readiness{Ready: sync == "Synced" && health == "Healthy", Reason: sync + "/" + health, Message: msg}
	}
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != "Ready" {
			continue
		}
		reason, _ := m["reason"].(string)
		msg, _ := m["message"].(string)
		return Readiness{Ready: m["status"] == string(metav1.ConditionTrue), Reason: reason, Message: msg}
	}
	return Readiness{Reason: "NotReported", Message: "Flux has not reported on the GitRepository yet"}
}
