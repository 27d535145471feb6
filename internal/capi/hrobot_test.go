package capi_test

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"lok8s.dev/provisioner/internal/capi"
	"lok8s.dev/provisioner/internal/mgmt"
)

// The bare-metal flavor (spec.hrobot) against CAPH v1.1.8's own
// (templates/cluster-templates/v1beta1/hetzner-hcloud-control-planes and
// its bases) and the hcloud CCM's Robot mode (v1.35.0
// docs/explanation/robot-support.md, docs/guides/robot/quickstart.md).

// 1. installimage: the rescue system's images are .tar.zst now (CAPH PR
// #2086: the .tar.gz ones are gone, installimage fails on them); the
// partitions of CAPH's bases/hetznerbaremetal-mt-md-1-ubuntu.yaml, the EFI
// system partition first; no swraid (CAPH's default 0, as its flavor); and
// a postInstallScript that installs cloud-init, which CAPH then seeds
// (NoCloud) and waits for (pkg/services/baremetal/host/host.go,
// client/ssh/ssh_client.go "cloud-init status").
func TestHetznerBareMetalInstallImage(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	r := renderFlavor(t, c, "hcloud-hrobot", "")
	mts := objectsOf(r, "HetznerBareMetalMachineTemplate")
	if len(mts) != 2 {
		t.Fatalf("bare-metal templates: %d, want one per spec.hrobot.workers pool", len(mts))
	}
	for _, mt := range mts {
		ii := field(mt, "spec", "template", "spec", "installImage").(map[string]any)
		if got := ii["image"].(map[string]any)["path"]; got != "/root/.oldroot/nfs/images/Ubuntu-2404-noble-amd64-base.tar.zst" {
			t.Errorf("%s: image %v, want the rescue system's Ubuntu 24.04 .tar.zst", mt.GetName(), got)
		}
		want := []any{
			map[string]any{"mount": "/boot/efi", "fileSystem": "esp", "size": "512M"},
			map[string]any{"mount": "/boot", "fileSystem": "ext4", "size": "1024M"},
			map[string]any{"mount": "/", "fileSystem": "ext4", "size": "all"},
		}
		if !reflect.DeepEqual(ii["partitions"], want) {
			t.Errorf("%s: partitions %v, want CAPH's %v", mt.GetName(), ii["partitions"], want)
		}
		if _, set := ii["swraid"]; set {
			t.Errorf("%s: swraid %v: CAPH's flavor leaves it at the default 0", mt.GetName(), ii["swraid"])
		}
		script, _ := ii["postInstallScript"].(string)
		for _, part := range []string{"#!/bin/bash", "set -Eeuo pipefail", "apt-get install -y cloud-init", "network: {config: disabled}", "cloud-init clean --logs"} {
			if !strings.Contains(script, part) {
				t.Errorf("%s: postInstallScript lacks %q:\n%s", mt.GetName(), part, script)
			}
		}
		ssh := field(mt, "spec", "template", "spec", "sshSpec").(map[string]any)
		if _, set := ssh["portAfterCloudInit"]; set {
			t.Errorf("%s: portAfterCloudInit is deprecated and not used by CAPH v1.1", mt.GetName())
		}
	}
}

// 2. ProviderIDs: CAPH gives bare-metal machines hrobot://<server> only
// with the HetznerCluster's annotation (api/v1beta1/hetznercluster_types.go
// UseHrobotProviderIDForBaremetalAnnotation; otherwise hcloud://bm-<server>),
// and the upstream CCM sets hrobot://<server>: CAPI matches Machines to
// Nodes by it. CAPH's hcloud flavor sets the annotation as well, so every
// Hetzner cluster has it. The CCM runs in Robot mode with spec.hrobot only,
// with the robot credentials in its Secret (addons/ccm.yaml).
func TestHetznerProviderIDs(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	for _, flavor := range hetznerFlavors {
		r := renderFlavor(t, c, flavor, "")
		hc := objectsOf(r, "HetznerCluster")[0]
		if got := hc.GetAnnotations()["capi.syself.com/use-hrobot-provider-id-for-baremetal"]; got != "true" {
			t.Errorf("%s: use-hrobot-provider-id-for-baremetal %q, want \"true\"", flavor, got)
		}
		vars, err := c.Variables(readSpec(t, specOf(t, c, flavor)), "")
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{true: "true", false: "false"}[flavor == "hcloud-hrobot"]; vars["HCLOUD_ROBOT_ENABLED"] != want {
			t.Errorf("%s: HCLOUD_ROBOT_ENABLED %q, want %s", flavor, vars["HCLOUD_ROBOT_ENABLED"], want)
		}
	}
}

// 3. The host inventory: each spec.hrobot.hosts item is a
// HetznerBareMetalHost (CAPH api/v1beta1/hetznerbaremetalhost_types.go:
// serverID, rootDeviceHints.wwn, maintenanceMode) labelled with its type;
// each pool selects this cluster's hosts of its type (CAPH chooses among
// every host of the namespace: pkg/services/baremetal/baremetal/baremetal.go).
func TestHetznerBareMetalHosts(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	r := renderFlavor(t, c, "hcloud-hrobot", "tenant-a")
	hosts := objectsOf(r, "HetznerBareMetalHost")
	type host struct {
		name, hostType, wwn string
		serverID            int64
		maintenance         bool
	}
	var got []host
	for _, h := range hosts {
		id, _ := field(h, "spec", "serverID").(int64)
		wwn, _ := field(h, "spec", "rootDeviceHints", "wwn").(string)
		mm, _ := field(h, "spec", "maintenanceMode").(bool)
		got = append(got, host{h.GetName(), h.GetLabels()[mgmt.LabelHostType], wwn, id, mm})
		if h.GetNamespace() != "tenant-a" || h.GetLabels()[mgmt.ClusterNameLabel] != "metal" {
			t.Errorf("%s: namespace %q, labels %v", h.GetName(), h.GetNamespace(), h.GetLabels())
		}
	}
	want := []host{
		{"metal-ax41-a", "ax41", "eui.0025388801b4f8a1", 2317525, false},
		{"metal-ax41-b", "ax41", "0x5000c500a1b2c3d4", 2105469, false},
		{"metal-sx65-a", "sx65", "eui.0025388801b4f8ff", 2400001, true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("hosts:\n got %v\nwant %v", got, want)
	}
	for _, pool := range []struct{ name, hostType string }{{"general", "ax41"}, {"storage", "sx65"}} {
		mt := objectOf(t, r, "HetznerBareMetalMachineTemplate", "metal-bm-"+pool.name)
		sel := field(mt, "spec", "template", "spec", "hostSelector", "matchLabels").(map[string]any)
		wantSel := map[string]any{mgmt.LabelHostType: pool.hostType, mgmt.ClusterNameLabel: "metal"}
		if !reflect.DeepEqual(sel, wantSel) {
			t.Errorf("pool %s selects %v, want %v", pool.name, sel, wantSel)
		}
		for _, h := range hosts {
			matches := true
			for k, v := range sel {
				matches = matches && h.GetLabels()[k] == v
			}
			if matches != (h.GetLabels()[mgmt.LabelHostType] == pool.hostType) {
				t.Errorf("pool %s: selects host %s %v", pool.name, h.GetName(), matches)
			}
		}
	}
	// Without hosts, no HetznerBareMetalHost (and the pools wait: see
	// TestBareMetalPoolWithoutHostFails in internal/e2e).
	r = renderFlavor(t, c, "hcloud", "")
	if n := len(objectsOf(r, "HetznerBareMetalHost")); n != 0 {
		t.Errorf("hcloud: %d hosts", n)
	}
}

// The manifest's items: a template rendered once per item of a spec list,
// with variables read from the item; an absent list renders nothing, and a
// path that is not a list of objects fails naming it.
func TestRenderItems(t *testing.T) {
	t.Parallel()
	dir := listyProvider(t, [2]string{"credentials: {keys: []}", `items:
  - list: spec.listy.things
    variables: {THING_NAME: name, THING_SIZE: size.gb}
    templates: [providers/listy/thing.yaml]
credentials: {keys: []}`})
	writeFile(t, dir+"/providers/listy/thing.yaml", `
apiVersion: v1
kind: ConfigMap
metadata: {name: "${CLUSTER_NAME}-${THING_NAME}"}
data: {size: "${THING_SIZE:=none}"}
`)
	c := loadCatalog(t, os.DirFS(dir))
	for _, tc := range []struct {
		things string
		want   map[string]string // ConfigMap name -> size
		err    string
	}{
		{"[{name: a, size: {gb: 10}}, {name: b}]", map[string]string{"ls-a": "10", "ls-b": "none"}, ""},
		{"[]", map[string]string{}, ""},
		{"{a: 1}", nil, "spec.listy.things: must be a list"},
		{"[a]", nil, "spec.listy.things[0]: must be an object"},
	} {
		r, err := c.Render(capi.RenderInput{Spec: readSpec(t, loadSpec(t, c, listySpec("v1.35.1", tc.things)))})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.things, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.things, err)
		}
		got := map[string]string{}
		for _, o := range objectsOf(r, "ConfigMap") {
			got[o.GetName()] = field(o, "data", "size").(string)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.things, got, tc.want)
		}
	}
}

// 4 and 5. Waiting for bare-metal nodes: CAPH's health checks give a
// machine an hour to start (bases/hetznerbaremetal-mhc-md-1.yaml
// nodeStartupTimeout 3600s, as our bare-metal-health-check.yaml), so the
// wait for the nodes allows more than that; and a machine CAPH finds no
// host for (pkg/services/baremetal/baremetal/baremetal.go: v1beta1
// condition HostAssociateSucceeded False, reason NoAvailableHost, from
// api/v1beta1/conditions_const.go) fails the wait with NoHostAvailable.
// Cloud servers keep the service's timeout and have no such failure.
func TestHetznerBareMetalWaits(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	w := c.Provider("hetzner").Waits(readSpec(t, specOf(t, c, "hcloud-hrobot")))
	r := renderFlavor(t, c, "hcloud-hrobot", "")
	startup := field(objectOf(t, r, "MachineHealthCheck", "metal-bm-general"), "spec", "checks", "nodeStartupTimeoutSeconds").(int64)
	if w.Timeout <= time.Duration(startup)*time.Second {
		t.Errorf("wait timeout %s, not above the health check's node start-up %ds", w.Timeout, startup)
	}
	if len(w.MachineFailures) != 1 {
		t.Fatalf("machine failures: %+v", w.MachineFailures)
	}
	mf := w.MachineFailures[0]
	if mf.APIVersion != "infrastructure.cluster.x-k8s.io/v1beta1" || mf.Kind != "HetznerBareMetalMachine" ||
		mf.Condition.Type != "HostAssociateSucceeded" || mf.Condition.Status != "False" || mf.Condition.Reason != "NoAvailableHost" ||
		mf.Code != "NoHostAvailable" || !strings.Contains(mf.Remediation, "spec.hrobot.hosts") {
		t.Errorf("machine failure %+v", mf)
	}
	// Longer than CAPH's requeue of a machine without host (7 minutes),
	// so that a host being deprovisioned is not taken for a missing one.
	if d := mf.Duration(); d < 7*time.Minute {
		t.Errorf("for %s: shorter than CAPH's requeue", d)
	}
	w = c.Provider("hetzner").Waits(readSpec(t, specOf(t, c, "hcloud")))
	if w.Timeout != 0 || len(w.MachineFailures) != 0 {
		t.Errorf("hcloud: %+v", w)
	}
}

// A manifest's waitTimeout and machineFailures are checked at load.
func TestLoadCatalogChecksMachineFailures(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ add, want string }{
		"timeout":     {"waitTimeout: soon\n", `waitTimeout: "soon" is not a positive duration`},
		"code":        {"machineFailures: [{apiVersion: a/v1, kind: M, condition: {type: T}, code: no host, remediation: r}]\n", `machineFailures[0].code: "no host" is not a failure code`},
		"status":      {"machineFailures: [{apiVersion: a/v1, kind: M, condition: {type: T, status: Maybe}, code: NoHost, remediation: r}]\n", `machineFailures[0].condition.status: "Maybe"`},
		"remediation": {"machineFailures: [{apiVersion: a/v1, kind: M, condition: {type: T}, code: NoHost}]\n", "machineFailures[0].remediation: required"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := capi.LoadCatalog(os.DirFS(listyProvider(t, [2]string{"credentials: {keys: []}", tc.add + "credentials: {keys: []}"})))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
