package addons_test

import (
	"errors"
	"reflect"
	"testing"
	"testing/fstest"

	"lok8s.dev/provisioner/internal/addons"
)

func TestValuesEachLayerWins(t *testing.T) {
	t.Parallel()
	full := addons.Layers{
		Addon:    map[string]any{"k": "addon", "m": map[string]any{"a": 1, "b": 1, "c": 1, "d": 1}, "l": []any{1, 2}},
		Provider: map[string]any{"k": "provider", "m": map[string]any{"b": 2, "c": 2, "d": 2}, "l": []any{3}},
		Operator: map[string]any{"k": "operator", "m": map[string]any{"c": 3, "d": 3}},
		Cluster:  map[string]any{"k": "cluster", "m": map[string]any{"d": 4}},
	}
	tests := []struct {
		name   string
		layers addons.Layers
		want   map[string]any
	}{
		{"addon", addons.Layers{Addon: full.Addon},
			map[string]any{"k": "addon", "m": map[string]any{"a": 1, "b": 1, "c": 1, "d": 1}, "l": []any{1, 2}}},
		{"provider over addon", addons.Layers{Addon: full.Addon, Provider: full.Provider},
			map[string]any{"k": "provider", "m": map[string]any{"a": 1, "b": 2, "c": 2, "d": 2}, "l": []any{3}}},
		{"operator over provider", addons.Layers{Addon: full.Addon, Provider: full.Provider, Operator: full.Operator},
			map[string]any{"k": "operator", "m": map[string]any{"a": 1, "b": 2, "c": 3, "d": 3}, "l": []any{3}}},
		{"cluster over operator", full,
			map[string]any{"k": "cluster", "m": map[string]any{"a": 1, "b": 2, "c": 3, "d": 4}, "l": []any{3}}},
		{"null removes", addons.Layers{Addon: full.Addon, Cluster: map[string]any{"m": map[string]any{"a": nil}, "l": nil}},
			map[string]any{"k": "addon", "m": map[string]any{"b": 1, "c": 1, "d": 1}}},
		{"scalar replaces map", addons.Layers{Addon: full.Addon, Operator: map[string]any{"m": "flat"}},
			map[string]any{"k": "addon", "m": "flat", "l": []any{1, 2}}},
		{"map replaces scalar", addons.Layers{Addon: full.Addon, Cluster: map[string]any{"k": map[string]any{"x": true}}},
			map[string]any{"k": map[string]any{"x": true}, "m": map[string]any{"a": 1, "b": 1, "c": 1, "d": 1}, "l": []any{1, 2}}},
		{"none", addons.Layers{}, map[string]any{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := addons.Values(tc.layers, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Values =\n %#v\nwant\n %#v", got, tc.want)
			}
		})
	}
	// No layer was modified.
	if full.Addon["m"].(map[string]any)["d"] != 1 || len(full.Addon["l"].([]any)) != 2 {
		t.Errorf("Values modified its input: %v", full.Addon)
	}
}

func TestValuesVariables(t *testing.T) {
	t.Parallel()
	l := addons.Layers{
		Addon: map[string]any{
			"host":    "${API_SERVER_HOST}",
			"port":    "${API_SERVER_PORT}",
			"url":     "https://${API_SERVER_HOST}:${API_SERVER_PORT}",
			"cidr":    "${POD_CIDR:=192.168.0.0/16}",
			"args":    []any{"--cluster-name=${CLUSTER_NAME}"},
			"literal": "no variables",
		},
		Provider: map[string]any{"net": map[string]any{"name": "${HCLOUD_NETWORK}"}},
		// Operator and cluster values are literal.
		Cluster: map[string]any{"raw": "${NOT_A_VARIABLE}"},
	}
	vars := map[string]string{"API_SERVER_HOST": "10.0.0.1", "API_SERVER_PORT": "6443", "CLUSTER_NAME": "c1", "HCLOUD_NETWORK": "net-1"}
	got, err := addons.Values(l, vars)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"host": "10.0.0.1", "port": float64(6443), "url": "https://10.0.0.1:6443", "cidr": "192.168.0.0/16",
		"args": []any{"--cluster-name=c1"}, "literal": "no variables",
		"net": map[string]any{"name": "net-1"}, "raw": "${NOT_A_VARIABLE}",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Values =\n %#v\nwant\n %#v", got, want)
	}

	// Every missing variable, from both catalogue layers, in one error.
	_, err = addons.Values(l, map[string]string{"API_SERVER_HOST": "h"})
	if !errors.Is(err, addons.ErrMissingVariables) || !hasAll(err.Error(), "API_SERVER_PORT, CLUSTER_NAME, HCLOUD_NETWORK") || hasAll(err.Error(), "POD_CIDR") {
		t.Errorf("missing variables: %v", err)
	}
}

func TestLoadOverrides(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"cilium.yaml": {Data: []byte("operator: {replicas: 2}\n")},
		"bad.yaml":    {Data: []byte("- a list\n")},
	}
	got, err := addons.LoadOverrides(fsys, "cilium")
	if err != nil || !reflect.DeepEqual(got, map[string]any{"operator": map[string]any{"replicas": float64(2)}}) {
		t.Errorf("LoadOverrides(cilium) = %v, %v", got, err)
	}
	if got, err := addons.LoadOverrides(fsys, "ccm"); got != nil || err != nil {
		t.Errorf("LoadOverrides(missing) = %v, %v", got, err)
	}
	if _, err := addons.LoadOverrides(fsys, "bad"); err == nil || !hasAll(err.Error(), "bad.yaml") {
		t.Errorf("LoadOverrides(bad) = %v", err)
	}
	if got, err := addons.LoadOverrides(nil, "cilium"); got != nil || err != nil {
		t.Errorf("LoadOverrides(no dir) = %v, %v", got, err)
	}
}

func TestSecretsNeverCarryValuesInErrors(t *testing.T) {
	t.Parallel()
	r := addons.Resolved{Name: "ccm", Provider: "hetzner", SecretSpecs: []addons.SecretSpec{{
		Name: "hcloud", Namespace: "kube-system",
		Data: map[string]addons.SecretData{
			"token":   {Credential: "hcloudToken"},
			"robot":   {Credential: "robotPassword"},
			"network": {Variable: "HCLOUD_NETWORK"},
		},
	}}}
	_, err := r.Secrets(map[string]string{"hcloudToken": "very-secret"}, nil)
	if !errors.Is(err, addons.ErrCredentials) || !errors.Is(err, addons.ErrMissingVariables) ||
		!hasAll(err.Error(), "robotPassword", "HCLOUD_NETWORK") || hasAll(err.Error(), "very-secret") {
		t.Errorf("Secrets: %v", err)
	}
	secrets, err := r.Secrets(map[string]string{"hcloudToken": "t", "robotPassword": "p"}, map[string]string{"HCLOUD_NETWORK": "n"})
	if err != nil || len(secrets) != 1 || len(secrets[0].Data) != 3 || secrets[0].Labels[addons.ManagedByLabel] != "lok8s" {
		t.Errorf("Secrets = %v, %v", secrets, err)
	}
}

func TestAPIServer(t *testing.T) {
	t.Parallel()
	kc := func(server string) []byte {
		return []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"" + server + "\"}}]\n" +
			"contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {token: x}}]\n")
	}
	for server, want := range map[string][2]string{
		"https://api.example.com:6443": {"api.example.com", "6443"},
		"https://203.0.113.10":         {"203.0.113.10", "443"},
		"https://[2001:db8::1]:6443":   {"2001:db8::1", "6443"},
	} {
		host, port, err := addons.APIServer(kc(server))
		if err != nil || host != want[0] || port != want[1] {
			t.Errorf("APIServer(%s) = %s, %s, %v; want %v", server, host, port, err, want)
		}
	}
	if _, _, err := addons.APIServer([]byte("not: [a kubeconfig")); err == nil {
		t.Error("APIServer(garbage): no error")
	}
}
