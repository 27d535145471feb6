package spec

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// ValidateUpdate returns what a change from old to updated may not do: change
// an immutable field (name, domain, namespace, management cluster,
// credentials, provider, region, AWS flavor, on Hetzner Cloud the image,
// the private network and placement groups, on AWS the AMI), change
// Kubernetes while spec.aws.ami.id pins the nodes' image, downgrade it, or
// upgrade it by more than one minor version. Both specs are valid and
// defaulted; oldProvider and newProvider are the providers they select.
func ValidateUpdate(old, updated *Capi, oldProvider, newProvider string) FieldErrors {
	var errs FieldErrors
	immutable := func(field, was, now string) {
		if was != now {
			errs = append(errs, FieldError{Field: field, Message: fmt.Sprintf("is immutable: %s, not %s", orNone(was), orNone(now))})
		}
	}
	immutable("metadata.name", old.Metadata.Name, updated.Metadata.Name)
	immutable("spec.cluster.domain", old.Spec.Cluster.Domain, updated.Spec.Cluster.Domain)
	immutable("spec.cluster.namespace", old.Spec.Cluster.Namespace, updated.Spec.Cluster.Namespace)
	immutable("spec.managementCluster.domain", managementDomain(old), managementDomain(updated))
	if old.Spec.Credentials.SecretName != updated.Spec.Credentials.SecretName {
		errs = append(errs, FieldError{Field: "spec.credentials.secretName", Message: fmt.Sprintf(
			"is immutable: %s; to rotate the credential, replace it with PUT /v1/credentials/%s", old.Spec.Credentials.SecretName, old.Spec.Credentials.SecretName)})
	}
	if oldProvider != newProvider {
		errs = append(errs, FieldError{Field: "spec", Message: fmt.Sprintf("the provider is immutable: %s, not %s", orNone(oldProvider), orNone(newProvider))})
	} else {
		oldSections, newSections := sectionMaps(old), sectionMaps(updated)
		for _, name := range sortedSectionNames(oldSections) {
			now, ok := newSections[name]
			if !ok {
				continue
			}
			for _, field := range []string{"region", "flavor"} {
				was, _ := oldSections[name][field].(string)
				is, _ := now[field].(string)
				immutable("spec."+name+"."+field, was, is)
			}
		}
	}
	if o, n := old.Spec.HCloud, updated.Spec.HCloud; o != nil && n != nil {
		hcloudImmutable := func(field, was, now, why string) {
			if was != now {
				errs = append(errs, FieldError{Field: field, Message: fmt.Sprintf("is immutable: %s, not %s (%s)", was, now, why)})
			}
		}
		const templates = "CAPH refuses changes to an HCloudMachineTemplate's spec"
		hcloudImmutable("spec.hcloud.image", deref(o.Image, DefaultHCloudImage), deref(n.Image, DefaultHCloudImage), templates)
		hcloudImmutable("spec.hcloud.network.enabled", strconv.FormatBool(old.Spec.HCloudNetworkEnabled()), strconv.FormatBool(updated.Spec.HCloudNetworkEnabled()),
			"CAPH refuses changes to a HetznerCluster's network")
		hcloudImmutable("spec.hcloud.placementGroups", strconv.FormatBool(o.PlacementGroupsEnabled()), strconv.FormatBool(n.PlacementGroupsEnabled()),
			templates+"; when it was defaulted from the control plane's size, set it explicitly to keep it")
	}
	if o, n := old.Spec.AWS, updated.Spec.AWS; o != nil && n != nil {
		if was, now := amiString(o.AMI), amiString(n.AMI); was != now {
			errs = append(errs, FieldError{Field: "spec.aws.ami", Message: fmt.Sprintf(
				"is immutable: %s, not %s (CAPA refuses changes to an AWSMachineTemplate's spec)", was, now)})
		}
		if o.AMI != nil && o.AMI.ID != nil && old.Spec.Kubernetes.Version != updated.Spec.Kubernetes.Version {
			errs = append(errs, FieldError{Field: "spec.kubernetes.version", Message: fmt.Sprintf(
				"cannot change while spec.aws.ami.id pins every machine to %s, whose kubelet and kubeadm are %s: "+
					"use an AMI lookup (spec.aws.ami.lookupFormat with {{.K8sVersion}}), which finds each version's image",
				*o.AMI.ID, old.Spec.Kubernetes.Version)})
		}
	}
	if msg := versionChange(old.Spec.Kubernetes.Version, updated.Spec.Kubernetes.Version); msg != "" {
		errs = append(errs, FieldError{Field: "spec.kubernetes.version", Message: msg})
	}
	errs.sortByField()
	return errs
}

// amiString is spec.aws.ami as JSON, "CAPA's default lookup" when unset.
func amiString(a *AWSAMI) string {
	if a == nil {
		return "(CAPA's default lookup)"
	}
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Sprint(*a)
	}
	return string(data)
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func managementDomain(c *Capi) string {
	if c.Spec.ManagementCluster == nil {
		return ""
	}
	return c.Spec.ManagementCluster.Domain
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// sectionMaps returns every provider section of c as a generic map.
func sectionMaps(c *Capi) map[string]map[string]any {
	raw, err := json.Marshal(c.Spec)
	if err != nil {
		return nil
	}
	var all map[string]any
	if err := json.Unmarshal(raw, &all); err != nil {
		return nil
	}
	out := map[string]map[string]any{}
	for _, name := range c.Spec.ProviderSections() {
		if m, ok := all[name].(map[string]any); ok {
			out[name] = m
		}
	}
	return out
}

func sortedSectionNames(m map[string]map[string]any) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// versionChange says what is wrong with moving Kubernetes from old to
// updated, or "" when the move is allowed (same, a patch, or the next minor).
func versionChange(old, updated string) string {
	o, okOld := parseVersion(old)
	n, okNew := parseVersion(updated)
	if !okOld || !okNew || o == n {
		return ""
	}
	if n[0] < o[0] || (n[0] == o[0] && (n[1] < o[1] || (n[1] == o[1] && n[2] < o[2]))) {
		return fmt.Sprintf("downgrades are not supported: the cluster runs %s", old)
	}
	if n[0] != o[0] || n[1] > o[1]+1 {
		return fmt.Sprintf("upgrade one minor version at a time: from %s the next is v%d.%d.x", old, o[0], o[1]+1)
	}
	return ""
}

func parseVersion(v string) ([3]int, bool) {
	var out [3]int
	parts := strings.Split(strings.TrimPrefix(v, "v"), ".")
	if len(parts) != 3 {
		return out, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return out, false
		}
		out[i] = n
	}
	return out, true
}
