package addons_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	rcommon "helm.sh/helm/v4/pkg/release/common"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/addons"
	"lok8s.dev/provisioner/internal/addons/addonstest"
	"lok8s.dev/provisioner/internal/testenv"
)

// setup is what an install test needs: the workload cluster (envtest), a
// namespace of its own, the chart repository and a catalogue installing
// into that namespace.
type setup struct {
	env        *testenv.Env
	ns         string
	repo       *addonstest.Repo
	catalog    *addons.Catalog
	kubeconfig []byte
	vars       map[string]string
	creds      map[string]string
}

func newSetup(t *testing.T) *setup {
	t.Helper()
	env := testenv.Shared(t)
	s := &setup{env: env, ns: env.Namespace(t), repo: testRepo(t), kubeconfig: env.Kubeconfig()}
	s.catalog = testCatalog(t, s.repo.URL, s.ns)
	host, port, err := addons.APIServer(s.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	s.vars = map[string]string{
		addons.VarClusterName: "c1", addons.VarAPIServerHost: host, addons.VarAPIServerPort: port,
		addons.VarHCloudNetwork: "net-1",
	}
	s.creds = map[string]string{"hcloudToken": "s3cret-token-value"}
	return s
}

// request builds the Request for one planned add-on with the given upper
// layers.
func (s *setup) request(t *testing.T, r addons.Resolved, operator, cluster map[string]any) addons.Request {
	t.Helper()
	vals, err := addons.Values(r.Layers(operator, cluster), s.vars)
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := r.Secrets(s.creds, s.vars)
	if err != nil {
		t.Fatal(err)
	}
	return addons.Request{Addon: r, Values: vals, Secrets: secrets}
}

func (s *setup) plan(t *testing.T, provider string, names ...string) []addons.Resolved {
	t.Helper()
	plan, err := s.catalog.Plan(names, provider)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// jsonEqual compares values as Helm stores them.
func jsonEqual(t *testing.T, got, want map[string]any) {
	t.Helper()
	norm := func(m map[string]any) string {
		if len(m) == 0 {
			return "{}"
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if norm(got) != norm(want) {
		t.Errorf("stored values\n got %s\nwant %s", norm(got), norm(want))
	}
}

func TestInstallInOrderWithSecrets(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	inst := newInstaller(t, 30*time.Second)

	plan := s.plan(t, "hetzner", "extra", "cloud", "net")
	var names []string
	for _, r := range plan {
		names = append(names, r.Name+":"+r.Chart.Name)
	}
	if got, want := strings.Join(names, " "), "net:probe cloud:probe-alt extra:probe"; got != want {
		t.Fatalf("plan = %s, want %s", got, want)
	}

	var updated []time.Time
	for _, r := range plan {
		req := s.request(t, r, nil, nil)
		res, err := inst.Install(ctx(t), s.kubeconfig, req)
		if err != nil {
			t.Fatalf("Install %s: %v", r.Name, err)
		}
		if res.Action != addons.Installed || res.Revision != 1 || res.Version != r.Chart.Version || res.Chart != r.Chart.Name {
			t.Errorf("Install %s = %+v", r.Name, res)
		}
		st, err := inst.Status(ctx(t), s.kubeconfig, s.ns, r.Release)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != "deployed" || st.Version != r.Chart.Version {
			t.Errorf("Status %s = %+v", r.Name, st)
		}
		updated = append(updated, st.Updated)
		stored, err := inst.ReleaseValues(ctx(t), s.kubeconfig, s.ns, r.Release)
		if err != nil {
			t.Fatal(err)
		}
		jsonEqual(t, stored, req.Values)

		// The chart's objects exist, rendered from those values.
		var cm corev1.ConfigMap
		if err := s.env.Client.Get(ctx(t), client.ObjectKey{Namespace: s.ns, Name: r.Release}, &cm); err != nil {
			t.Fatalf("%s ConfigMap: %v", r.Name, err)
		}
		if cm.Data["chart"] != r.Chart.Name+"-"+r.Chart.Version {
			t.Errorf("%s ConfigMap chart = %q", r.Name, cm.Data["chart"])
		}
	}
	for i := 1; i < len(updated); i++ {
		if updated[i].Before(updated[i-1]) {
			t.Errorf("release %d deployed at %s, before release %d at %s", i, updated[i], i-1, updated[i-1])
		}
	}

	// The cloud add-on's Secret, from the credential field and a variable.
	var sec corev1.Secret
	if err := s.env.Client.Get(ctx(t), client.ObjectKey{Namespace: s.ns, Name: "cloud-credentials"}, &sec); err != nil {
		t.Fatalf("Secret: %v", err)
	}
	if string(sec.Data["token"]) != "s3cret-token-value" || string(sec.Data["network"]) != "net-1" {
		t.Errorf("Secret data keys = %v", keys(sec.Data))
	}
	// The provider layer's variables reached the release, typed.
	stored, err := inst.ReleaseValues(ctx(t), s.kubeconfig, s.ns, "net")
	if err != nil {
		t.Fatal(err)
	}
	if stored["host"] != s.vars[addons.VarAPIServerHost] || stored["port"] == s.vars[addons.VarAPIServerPort] {
		t.Errorf("host, port = %#v, %#v: want the host string and the port as a number", stored["host"], stored["port"])
	}
}

// Each layer of the chain wins over the one below, checked in the values
// Helm stored with a real release.
func TestValuesChainThroughInstall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		provider string
		operator map[string]any
		cluster  map[string]any
		layer    string
		nested   map[string]any
		list     []any
	}{
		{
			name: "addon defaults", provider: "aws",
			layer: "addon", nested: map[string]any{"addon": 1, "provider": 1, "operator": 1, "cluster": 1}, list: []any{"addon"},
		},
		{
			name: "provider over addon", provider: "hetzner",
			layer: "provider", nested: map[string]any{"addon": 1, "provider": 2, "operator": 2, "cluster": 2}, list: []any{"provider"},
		},
		{
			name: "operator over provider", provider: "hetzner",
			operator: map[string]any{"layer": "operator", "nested": map[string]any{"operator": 3, "cluster": 3}, "list": []any{"operator"}},
			layer:    "operator", nested: map[string]any{"addon": 1, "provider": 2, "operator": 3, "cluster": 3}, list: []any{"operator"},
		},
		{
			name: "cluster over operator", provider: "hetzner",
			operator: map[string]any{"layer": "operator", "nested": map[string]any{"operator": 3, "cluster": 3}, "list": []any{"operator"}},
			cluster:  map[string]any{"layer": "cluster", "nested": map[string]any{"cluster": 4, "addon": nil}, "list": []any{"cluster", "x"}},
			layer:    "cluster", nested: map[string]any{"provider": 2, "operator": 3, "cluster": 4}, list: []any{"cluster", "x"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSetup(t)
			inst := newInstaller(t, 30*time.Second)
			r := s.plan(t, tc.provider, "net")[0]
			req := s.request(t, r, tc.operator, tc.cluster)
			if _, err := inst.Install(ctx(t), s.kubeconfig, req); err != nil {
				t.Fatal(err)
			}
			stored, err := inst.ReleaseValues(ctx(t), s.kubeconfig, s.ns, "net")
			if err != nil {
				t.Fatal(err)
			}
			jsonEqual(t, stored, req.Values)
			want := map[string]any{"layer": tc.layer, "nested": tc.nested, "list": tc.list, "message": "addon-default"}
			for k, w := range want {
				jsonEqual(t, map[string]any{k: stored[k]}, map[string]any{k: w})
			}
		})
	}
}

func TestReinstallIsIdempotent(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	inst := newInstaller(t, 30*time.Second)
	r := s.plan(t, "hetzner", "extra")[0]
	req := s.request(t, r, nil, map[string]any{"message": "v1"})

	first, err := inst.Install(ctx(t), s.kubeconfig, req)
	if err != nil {
		t.Fatal(err)
	}
	// Same chart, same values: nothing is done, the revision stays.
	again, err := inst.Install(ctx(t), s.kubeconfig, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.Action != addons.Unchanged || again.Revision != first.Revision {
		t.Errorf("re-install = %+v, want unchanged at revision %d", again, first.Revision)
	}
	// New values: an upgrade, with exactly the new values stored.
	req2 := s.request(t, r, nil, map[string]any{"message": "v2"})
	up, err := inst.Install(ctx(t), s.kubeconfig, req2)
	if err != nil {
		t.Fatal(err)
	}
	if up.Action != addons.Upgraded || up.Revision != first.Revision+1 {
		t.Errorf("upgrade = %+v", up)
	}
	stored, err := inst.ReleaseValues(ctx(t), s.kubeconfig, s.ns, r.Release)
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, stored, req2.Values)
	// spec.bootstrap[].version replaces the pin.
	req2.Version = "0.2.0"
	v2, err := inst.Install(ctx(t), s.kubeconfig, req2)
	if err != nil {
		t.Fatal(err)
	}
	if v2.Action != addons.Upgraded || v2.Version != "0.2.0" {
		t.Errorf("version upgrade = %+v", v2)
	}
	// And the same again: unchanged.
	again2, err := inst.Install(ctx(t), s.kubeconfig, req2)
	if err != nil || again2.Action != addons.Unchanged || again2.Revision != v2.Revision {
		t.Errorf("re-install after version upgrade = %+v, %v", again2, err)
	}
}

func TestFailingChartThenFixed(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	inst := newInstaller(t, 20*time.Second)
	r := s.plan(t, "hetzner", "extra")[0]

	// A template that fails: Helm's message comes back; nothing is stored.
	_, err := inst.Install(ctx(t), s.kubeconfig, s.request(t, r, nil, map[string]any{"fail": true}))
	if err == nil || !hasAll(err.Error(), "boom: the probe chart was told to fail", "extra") {
		t.Fatalf("Install with fail=true: %v", err)
	}
	t.Logf("render failure: %v", err)

	// An object the API server refuses: a failed revision with its message.
	_, err = inst.Install(ctx(t), s.kubeconfig, s.request(t, r, nil, map[string]any{"configMapName": "Not_A_Name"}))
	if err == nil || !hasAll(err.Error(), "Not_A_Name", "RFC 1123") {
		t.Fatalf("Install with an invalid name: %v", err)
	}
	t.Logf("apply failure: %v", err)
	st, err := inst.Status(ctx(t), s.kubeconfig, s.ns, r.Release)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "failed" || !strings.Contains(st.Description, "Not_A_Name") {
		t.Errorf("status after the failure = %+v", st)
	}

	// Fixed values: the failed release is upgraded and deployed.
	fixed := s.request(t, r, nil, map[string]any{"configMapName": "a-name"})
	res, err := inst.Install(ctx(t), s.kubeconfig, fixed)
	if err != nil {
		t.Fatalf("Install after fixing the values: %v", err)
	}
	if res.Action != addons.Upgraded || res.Revision != st.Revision+1 {
		t.Errorf("recovery = %+v (failed revision %d)", res, st.Revision)
	}
	st, err = inst.Status(ctx(t), s.kubeconfig, s.ns, r.Release)
	if err != nil || st.Status != "deployed" {
		t.Errorf("status after recovery = %+v, %v", st, err)
	}
	var cm corev1.ConfigMap
	if err := s.env.Client.Get(ctx(t), client.ObjectKey{Namespace: s.ns, Name: "a-name"}, &cm); err != nil {
		t.Errorf("ConfigMap after recovery: %v", err)
	}
}

// A revision left pending (the worker died mid-install) blocks Helm's
// upgrade; older than the timeout, it is marked failed and upgraded.
func TestPendingRevisionRecovered(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	inst := newInstaller(t, 20*time.Second)
	r := s.plan(t, "hetzner", "extra")[0]
	req := s.request(t, r, nil, nil)
	if _, err := inst.Install(ctx(t), s.kubeconfig, req); err != nil {
		t.Fatal(err)
	}
	markPending := func(age time.Duration) {
		cfg := helmConfig(t, s.kubeconfig, s.ns)
		last, err := cfg.Releases.Last(r.Release)
		if err != nil {
			t.Fatal(err)
		}
		rel := last.(*releasev1.Release)
		rel.Info.Status = rcommon.StatusPendingUpgrade
		rel.Info.LastDeployed = time.Now().Add(-age)
		if err := cfg.Releases.Update(rel); err != nil {
			t.Fatal(err)
		}
	}

	markPending(time.Second)
	if _, err := inst.Install(ctx(t), s.kubeconfig, req); !errors.Is(err, addons.ErrReleaseBusy) {
		t.Fatalf("Install over a young pending revision: %v, want ErrReleaseBusy", err)
	}
	markPending(time.Hour)
	res, err := inst.Install(ctx(t), s.kubeconfig, req)
	if err != nil {
		t.Fatalf("Install over an abandoned pending revision: %v", err)
	}
	if res.Action != addons.Upgraded || res.Revision != 2 {
		t.Errorf("recovery = %+v", res)
	}
}

// The wait is bounded: a PersistentVolumeClaim is never Bound on envtest
// (no storage controller), so the install times out naming it.
func TestWaitIsBounded(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	inst := newInstaller(t, 3*time.Second)
	r := s.plan(t, "hetzner", "extra")[0]
	began := time.Now()
	_, err := inst.Install(ctx(t), s.kubeconfig, s.request(t, r, nil, map[string]any{"pvc": true}))
	if err == nil || !hasAll(err.Error(), "PersistentVolumeClaim", r.Release+"-data") {
		t.Fatalf("Install with a PVC: %v", err)
	}
	if d := time.Since(began); d > 20*time.Second {
		t.Errorf("took %s with a 3s timeout", d)
	}
	t.Logf("timeout: %v", err)
}

func TestReleaseNotInstalled(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	inst := newInstaller(t, 0)
	if _, err := inst.Status(ctx(t), s.kubeconfig, s.ns, "nothing"); !errors.Is(err, addons.ErrNotInstalled) {
		t.Errorf("Status: %v", err)
	}
	if _, err := inst.ReleaseValues(ctx(t), s.kubeconfig, s.ns, "nothing"); !errors.Is(err, addons.ErrNotInstalled) {
		t.Errorf("ReleaseValues: %v", err)
	}
}

func TestChartNotInRepository(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	inst := newInstaller(t, 0)
	r := s.plan(t, "hetzner", "extra")[0]
	req := s.request(t, r, nil, nil)
	req.Version = "9.9.9"
	if _, err := inst.Install(ctx(t), s.kubeconfig, req); !errors.Is(err, addons.ErrChartNotFound) {
		t.Errorf("Install of a missing version: %v", err)
	}
}

// helmConfig is a Helm configuration reaching ns, for tests that edit
// stored releases.
func helmConfig(t *testing.T, kubeconfig []byte, ns string) *action.Configuration {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &path, &ns
	cfg := action.NewConfiguration()
	if err := cfg.Init(flags, ns, "secret"); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
