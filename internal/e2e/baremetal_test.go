package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/mgmt"
)

var (
	bareMetalHostGVK     = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "HetznerBareMetalHost"}
	bareMetalMachineGVK  = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "HetznerBareMetalMachine"}
	bareMetalTemplateGVK = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "HetznerBareMetalMachineTemplate"}
)

// bareMetalMachines plays CAPI and CAPH v1.1.8 for a pool of bare-metal
// machines (a MachineDeployment of HetznerBareMetalMachineTemplate): CAPI
// creates a HetznerBareMetalMachine per replica from the template, labelled
// with the cluster's name and the Machine template's labels; CAPH gives
// each a free host of the namespace its hostSelector matches (not in
// maintenance mode, no consumerRef: pkg/services/baremetal/baremetal/
// baremetal.go ChooseHost), sets the host's consumerRef and the condition
// HostAssociateSucceeded True; with no such host, the condition is False
// with reason NoAvailableHost and the machine waits (requeued every 7
// minutes). It returns how many of the pool's machines have a host: only
// those boot and become Nodes.
func (c *cloud) bareMetalMachines(ctx context.Context, md *unstructured.Unstructured, replicas int64) (int64, error) {
	tmpl := &unstructured.Unstructured{}
	tmpl.SetGroupVersionKind(bareMetalTemplateGVK)
	name, _, _ := unstructured.NestedString(md.Object, "spec", "template", "spec", "infrastructureRef", "name")
	if err := c.mgmt.Client.Get(ctx, client.ObjectKey{Namespace: c.namespace, Name: name}, tmpl); err != nil {
		return 0, err
	}
	machineSpec, _, _ := unstructured.NestedMap(tmpl.Object, "spec", "template", "spec")
	selector, _, _ := unstructured.NestedStringMap(machineSpec, "hostSelector", "matchLabels")
	hosts := &unstructured.UnstructuredList{}
	hosts.SetGroupVersionKind(bareMetalHostGVK.GroupVersion().WithKind("HetznerBareMetalHostList"))
	if err := c.mgmt.Client.List(ctx, hosts, client.InNamespace(c.namespace)); err != nil {
		return 0, err
	}
	machineLabels, _, _ := unstructured.NestedStringMap(md.Object, "spec", "template", "metadata", "labels")
	var associated int64
	for j := int64(0); j < replicas; j++ {
		m := &unstructured.Unstructured{}
		m.SetGroupVersionKind(bareMetalMachineGVK)
		key := client.ObjectKey{Namespace: c.namespace, Name: fmt.Sprintf("%s-%d", md.GetName(), j)}
		if err := c.mgmt.Client.Get(ctx, key, m); apierrors.IsNotFound(err) {
			m.SetName(key.Name)
			m.SetNamespace(key.Namespace)
			labels := map[string]string{mgmt.ClusterNameLabel: c.name}
			for k, v := range machineLabels {
				labels[k] = v
			}
			m.SetLabels(labels)
			_ = unstructured.SetNestedMap(m.Object, machineSpec, "spec")
			if err := c.mgmt.Client.Create(ctx, m); err != nil {
				return 0, err
			}
		} else if err != nil {
			return 0, err
		}
		host, reason := chooseHost(hosts.Items, selector, m.GetName())
		if host != nil {
			if ref, _, _ := unstructured.NestedString(host.Object, "spec", "consumerRef", "name"); ref == "" {
				_ = unstructured.SetNestedMap(host.Object, map[string]any{
					"apiVersion": bareMetalMachineGVK.GroupVersion().String(), "kind": bareMetalMachineGVK.Kind,
					"name": m.GetName(), "namespace": c.namespace}, "spec", "consumerRef")
				if err := c.mgmt.Client.Update(ctx, host); err != nil {
					return 0, err
				}
			}
			associated++
		}
		cond := map[string]any{"type": "HostAssociateSucceeded", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
		if host == nil {
			cond = map[string]any{"type": "HostAssociateSucceeded", "status": "False", "severity": "Warning",
				"reason": "NoAvailableHost", "message": "no available host (" + reason + ")", "lastTransitionTime": "2026-01-01T00:00:00Z"}
		}
		if err := c.setStatus(ctx, m, map[string]any{"conditions": []any{cond}}); err != nil {
			return 0, err
		}
	}
	return associated, nil
}

// chooseHost is the host machine holds, else a free one selector matches,
// else nil and CAPH's reason.
func chooseHost(hosts []unstructured.Unstructured, selector map[string]string, machine string) (*unstructured.Unstructured, string) {
	unused := 0
	var free *unstructured.Unstructured
	for i := range hosts {
		h := &hosts[i]
		ref, _, _ := unstructured.NestedString(h.Object, "spec", "consumerRef", "name")
		if ref == machine {
			return h, ""
		}
		if ref != "" {
			continue
		}
		unused++
		matches := true
		for k, v := range selector {
			matches = matches && h.GetLabels()[k] == v
		}
		maintenance, _, _ := unstructured.NestedBool(h.Object, "spec", "maintenanceMode")
		if matches && !maintenance && free == nil {
			free = h
		}
	}
	if free != nil {
		return free, ""
	}
	if unused == 0 {
		return nil, fmt.Sprintf("all hosts are in use - found %d hosts", len(hosts))
	}
	return nil, fmt.Sprintf("label-selector-does-not-match: %d", unused)
}

// The hosts of spec.hrobot.hosts are applied with the cluster, and the
// bare-metal pool's machines take them (TestProvisionHetznerBareMetal
// provisions hrobotSpec to the end).
func checkBareMetalHosts(t *testing.T, s *service) {
	t.Helper()
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(bareMetalHostGVK.GroupVersion().WithKind("HetznerBareMetalHostList"))
	if err := s.env.Client.List(context.Background(), list, client.InNamespace(s.namespace())); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, h := range list.Items {
		id, _, _ := unstructured.NestedInt64(h.Object, "spec", "serverID")
		consumer, _, _ := unstructured.NestedString(h.Object, "spec", "consumerRef", "name")
		got[fmt.Sprintf("%s %d %s", h.GetName(), id, h.GetLabels()[mgmt.LabelHostType])] = consumer
	}
	for _, want := range []string{"metal-ax41-a 2317525 ax41", "metal-ax41-b 2105469 ax41"} {
		if consumer, ok := got[want]; !ok || !strings.HasPrefix(consumer, "metal-bm-storage-") {
			t.Errorf("host %s: applied %v, taken by %q (hosts %v)", want, ok, consumer, got)
		}
	}
}

// A bare-metal pool whose type no free host has: CAPH marks its machine
// HostAssociateSucceeded False (NoAvailableHost) and requeues for ever; the
// nodes-ready step fails with NoHostAvailable, naming the pool and
// saying what to do, instead of waiting out its 90 minutes.
func TestBareMetalPoolWithoutHostFails(t *testing.T) {
	t.Parallel()
	s := startService(t, options{})
	s.putCredential("metal-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`","robotUser":"robot","robotPassword":"robot-e2e-pass"}`)
	specYAML := strings.Replace(hrobotSpec, "    workers:\n      storage:", "    workers:\n      archive:\n        replicas: 1\n        type: sx65\n      storage:", 1)
	s.submit(specYAML)
	s.waitStatus("metal", 60*time.Second, func(st map[string]any) bool { return stepState(st, "control-plane-initialized") == "running" })
	s.playCloud("metal")
	failed := s.waitStatus("metal", 90*time.Second, func(st map[string]any) bool { return st["phase"] == "Failed" })
	e, _ := failed["error"].(map[string]any)
	if e["code"] != "NoHostAvailable" || e["step"] != "nodes-ready" || e["retryable"] != false ||
		!strings.Contains(e["remediation"].(string), "spec.hrobot.hosts") ||
		!strings.Contains(e["reason"].(string), "pool archive") || !strings.Contains(e["reason"].(string), "NoAvailableHost") {
		t.Fatalf("failure: %v", e)
	}
	status, body := s.do(http.MethodGet, "/v1/clusters/metal/status", "", "", nil)
	if status != http.StatusOK || !strings.Contains(string(body), "NoHostAvailable") {
		t.Fatalf("status: %d %s", status, body)
	}
}
