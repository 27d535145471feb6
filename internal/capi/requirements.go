package capi

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"lok8s.dev/provisioner/internal/spec"
)

// Requirements are what a provider's release needs of a cluster and of the
// management cluster, stated in its manifest (or a flavor's) as data:
//
//	requirements:
//	  kubernetes: {min: v1.32, max: v1.36}   # the minors the provider release supports
//	  addons: [cni, ccm]                     # addon roles the nodes need to become Ready
//	  refusedAddons: [ccm]                   # addon roles the provider runs itself (EKS: its CCM)
//	  clusterctl: {name: infrastructure-hetzner, release: v1.1}
type Requirements struct {
	// Kubernetes is the range of Kubernetes minors the provider release
	// supports; unset bounds are not checked.
	Kubernetes VersionRange `json:"kubernetes"`
	// Addons are the addon roles (an addon's `role` in the addon
	// catalogue, such as cni or ccm) spec.bootstrap must include: without
	// them the nodes never become Ready (with cloud-provider: external, a
	// Node gets its providerID only from the cloud-controller-manager).
	Addons []string `json:"addons,omitempty"`
	// RefusedAddons are the addon roles spec.bootstrap must not include:
	// the provider runs its own (EKS runs the cloud-controller-manager of
	// its control plane; a second one would fight it over the nodes).
	RefusedAddons []string `json:"refusedAddons,omitempty"`
	// Clusterctl names the provider in clusterctl's inventory
	// (providers.clusterctl.cluster.x-k8s.io) and the release series the
	// templates are written for; preflight checks an inventory entry
	// against it when there is one.
	Clusterctl *ClusterctlProvider `json:"clusterctl,omitempty"`
}

// VersionRange is an inclusive range of Kubernetes minors, vMAJOR.MINOR.
type VersionRange struct {
	Min string `json:"min,omitempty"`
	Max string `json:"max,omitempty"`
}

// ClusterctlProvider is a provider as clusterctl's inventory names it.
type ClusterctlProvider struct {
	// Name is the inventory's providerName with its type, e.g.
	// infrastructure-hetzner (the inventory object's name).
	Name string `json:"name"`
	// Release is the supported release series, vMAJOR.MINOR (e.g. v1.1).
	Release string `json:"release"`
}

var addonRole = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

var minorVersion = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)

func (r *Requirements) check(at string, fail func(string, ...any)) {
	for _, b := range []struct{ name, v string }{{"min", r.Kubernetes.Min}, {"max", r.Kubernetes.Max}} {
		if b.v != "" && !minorVersion.MatchString(b.v) {
			fail("%srequirements.kubernetes.%s: %q is not a minor version such as v1.32", at, b.name, b.v)
		}
	}
	if r.Kubernetes.Min != "" && r.Kubernetes.Max != "" && compareMinor(r.Kubernetes.Min, r.Kubernetes.Max) > 0 {
		fail("%srequirements.kubernetes: min %s is above max %s", at, r.Kubernetes.Min, r.Kubernetes.Max)
	}
	for i, role := range r.Addons {
		if !addonRole.MatchString(role) {
			fail("%srequirements.addons[%d]: %q is not an addon role such as cni", at, i, role)
		}
	}
	for i, role := range r.RefusedAddons {
		switch {
		case !addonRole.MatchString(role):
			fail("%srequirements.refusedAddons[%d]: %q is not an addon role such as ccm", at, i, role)
		case slices.Contains(r.Addons, role):
			fail("%srequirements.refusedAddons[%d]: %q is also required (requirements.addons)", at, i, role)
		}
	}
	if c := r.Clusterctl; c != nil {
		if c.Name == "" {
			fail("%srequirements.clusterctl.name: required", at)
		}
		if !minorVersion.MatchString(c.Release) {
			fail("%srequirements.clusterctl.release: %q is not a release series such as v1.1", at, c.Release)
		}
	}
}

// String says the range in words: "v1.32 to v1.36".
func (v VersionRange) String() string {
	switch {
	case v.Min != "" && v.Max != "":
		return v.Min + " to " + v.Max
	case v.Min != "":
		return v.Min + " or later"
	case v.Max != "":
		return v.Max + " or earlier"
	}
	return "any version"
}

// Contains reports whether version (vX.Y or vX.Y.Z) lies in the range.
func (v VersionRange) Contains(version string) bool {
	minor := MinorOf(version)
	if minor == "" {
		return false
	}
	return (v.Min == "" || compareMinor(minor, v.Min) >= 0) && (v.Max == "" || compareMinor(minor, v.Max) <= 0)
}

// MinorOf returns vX.Y of vX.Y[.Z], or "" when version is not one.
func MinorOf(version string) string {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) < 2 {
		return ""
	}
	for _, p := range parts[:2] {
		if _, err := strconv.Atoi(p); err != nil {
			return ""
		}
	}
	return "v" + parts[0] + "." + parts[1]
}

// compareMinor compares two vX.Y versions numerically.
func compareMinor(a, b string) int {
	pa := strings.SplitN(strings.TrimPrefix(a, "v"), ".", 3)
	pb := strings.SplitN(strings.TrimPrefix(b, "v"), ".", 3)
	for i := 0; i < 2; i++ {
		x, _ := strconv.Atoi(pa[i])
		y, _ := strconv.Atoi(pb[i])
		if x != y {
			return x - y
		}
	}
	return 0
}

// RequirementsFor returns the requirements that apply to s and the flavor
// s selects: the flavor's requirements, where it states its own, else the
// provider's.
func (p *Provider) RequirementsFor(s *Spec) (Requirements, string) {
	r := p.resolve(s)
	if r.Requirements == nil {
		return Requirements{}, r.flavor
	}
	return *r.Requirements, r.flavor
}

// CheckRequirements checks a valid spec against the requirements of p, the
// provider it selects: a Kubernetes version the provider release supports
// and, in spec.bootstrap, an addon of every role the provider needs and
// none of a role it refuses (roles maps addon names to their catalogue
// role). Errors name the spec field.
func (p *Provider) CheckRequirements(s *Spec, roles map[string]string) spec.FieldErrors {
	req, flavor := p.RequirementsFor(s)
	what := "provider " + p.Name
	if flavor != "" {
		what += " (flavor " + flavor + ")"
	}
	var errs spec.FieldErrors
	if v := s.Spec.Kubernetes.Version; !req.Kubernetes.Contains(v) && (req.Kubernetes.Min != "" || req.Kubernetes.Max != "") {
		errs = append(errs, spec.FieldError{Field: "spec.kubernetes.version",
			Message: fmt.Sprintf("%s supports Kubernetes %s; %s is outside that range", what, req.Kubernetes, v)})
	}
	have := map[string]bool{}
	var refused []string
	for _, a := range s.Spec.Bootstrap {
		role := roles[a.Name]
		if role == "" {
			continue
		}
		have[role] = true
		if slices.Contains(req.RefusedAddons, role) && !slices.Contains(refused, a.Name) {
			refused = append(refused, a.Name)
			errs = append(errs, spec.FieldError{Field: "spec.bootstrap",
				Message: fmt.Sprintf("%s runs its own %s: remove %s from spec.bootstrap", what, roleName(role), a.Name)})
		}
	}
	var missing []string
	for _, role := range req.Addons {
		if have[role] {
			continue
		}
		var offer []string
		for name, r := range roles {
			if r == role {
				offer = append(offer, name)
			}
		}
		slices.Sort(offer)
		missing = append(missing, fmt.Sprintf("a %s (%s)", roleName(role), strings.Join(offer, " or ")))
	}
	if len(missing) > 0 {
		errs = append(errs, spec.FieldError{Field: "spec.bootstrap",
			Message: fmt.Sprintf("%s needs %s in spec.bootstrap: without them the nodes never become Ready", what, strings.Join(missing, " and "))})
	}
	return errs
}

func roleName(role string) string {
	switch role {
	case "cni":
		return "CNI"
	case "ccm":
		return "cloud-controller-manager"
	}
	return role + " addon"
}
