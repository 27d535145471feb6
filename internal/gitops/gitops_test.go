package gitops

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestObjects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		src     Source
		kinds   string
		secret  map[string]any
		wantErr string
	}{
		{name: "flux public", src: Source{Provider: Flux, Repo: "https://git.example.com/infra.git", Branch: "main", Path: "clusters/a"},
			kinds: "GitRepository Kustomization"},
		{name: "flux https token", src: Source{Provider: Flux, Repo: "https://git.example.com/infra.git", Branch: "main", Credential: map[string]string{"token": "t0k"}},
			kinds: "Secret GitRepository Kustomization", secret: map[string]any{"username": "git", "password": "t0k"}},
		{name: "flux ssh key", src: Source{Provider: Flux, Repo: "git@git.example.com:org/infra.git", Credential: map[string]string{"sshPrivateKey": "KEY", "knownHosts": "HOSTS"}},
			kinds: "Secret GitRepository Kustomization", secret: map[string]any{"identity": "KEY", "known_hosts": "HOSTS"}},
		{name: "argo https", src: Source{Provider: Argo, Repo: "https://git.example.com/infra.git", Credential: map[string]string{"token": "t0k", "username": "bot"}},
			kinds: "Secret Application", secret: map[string]any{"type": "git", "url": "https://git.example.com/infra.git", "username": "bot", "password": "t0k"}},
		{name: "ssh repo without key", src: Source{Provider: Flux, Repo: "ssh://git@git.example.com/infra.git", Credential: map[string]string{"token": "t0k"}},
			wantErr: "needs sshPrivateKey"},
		{name: "https repo without token", src: Source{Provider: Argo, Repo: "https://git.example.com/infra.git", Credential: map[string]string{"sshPrivateKey": "KEY"}},
			wantErr: "needs token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			objs, err := Objects(tc.src)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrCredential) || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "t0k") || strings.Contains(err.Error(), "KEY") {
					t.Fatalf("error %v, want %q without secret values", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, o := range objs {
				kinds = append(kinds, o.GetKind())
				if o.GetNamespace() != Namespace(tc.src.Provider) {
					t.Errorf("%s in namespace %s", o.GetKind(), o.GetNamespace())
				}
			}
			if strings.Join(kinds, " ") != tc.kinds {
				t.Fatalf("kinds %v, want %s", kinds, tc.kinds)
			}
			if tc.secret != nil {
				data, _, _ := unstructured.NestedMap(objs[0].Object, "stringData")
				for k, v := range tc.secret {
					if data[k] != v {
						t.Errorf("secret %s = %v, want %v", k, data[k], v)
					}
				}
				if tc.src.Provider == Flux {
					ref, _, _ := unstructured.NestedString(objs[1].Object, "spec", "secretRef", "name")
					if ref != objs[0].GetName() {
						t.Errorf("GitRepository secretRef %q", ref)
					}
				} else if objs[0].GetLabels()["argocd.argoproj.io/secret-type"] != "repository" {
					t.Errorf("argo repository secret label missing")
				}
			}
		})
	}
}

func TestReadinessOf(t *testing.T) {
	t.Parallel()
	withStatus := func(status map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"status": status}}
	}
	for _, tc := range []struct {
		name     string
		provider string
		obj      *unstructured.Unstructured
		want     Readiness
	}{
		{"flux not reported", Flux, withStatus(map[string]any{}), Readiness{Reason: "NotReported", Message: "Flux has not reported on the GitRepository yet"}},
		{"flux ready", Flux, withStatus(map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "ok"}}}),
			Readiness{Ready: true, Reason: "Succeeded", Message: "ok"}},
		{"flux auth failed", Flux, withStatus(map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": "False", "reason": "GitOperationFailed", "message": "authentication required"}}}),
			Readiness{Reason: "GitOperationFailed", Message: "authentication required"}},
		{"argo synced healthy", Argo, withStatus(map[string]any{"sync": map[string]any{"status": "Synced"}, "health": map[string]any{"status": "Healthy"}}),
			Readiness{Ready: true, Reason: "Synced/Healthy"}},
		{"argo degraded", Argo, withStatus(map[string]any{"sync": map[string]any{"status": "Synced"}, "health": map[string]any{"status": "Degraded", "message": "crash loop"}}),
			Readiness{Reason: "Synced/Degraded", Message: "crash loop"}},
	} {
		if got := ReadinessOf(tc.provider, tc.obj); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
