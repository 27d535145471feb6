package capi

import "lok8s.dev/provisioner/internal/spec"

// KubeconfigRotates reports whether the workload kubeconfig of a valid
// spec's cluster rotates (its flavor's, else its provider's manifest says
// kubeconfig: {rotates: true}): then it is read from the management
// cluster for every use and never stored.
func (c *Catalog) KubeconfigRotates(s *spec.Capi) (bool, error) {
	p, err := c.kubeconfigPolicy(s)
	return p.Rotates, err
}

// KubeconfigSimulated reports whether a valid spec's cluster has a
// simulated workload API server (its manifest says kubeconfig:
// {simulated: true}), where kubeconfigs cannot be issued per caller.
func (c *Catalog) KubeconfigSimulated(s *spec.Capi) (bool, error) {
	p, err := c.kubeconfigPolicy(s)
	return p.Simulated, err
}

// kubeconfigPolicy is the kubeconfig policy of a valid spec's flavor, else
// its provider (the zero policy when neither states one).
func (c *Catalog) kubeconfigPolicy(s *spec.Capi) (KubeconfigPolicy, error) {
	p, err := c.Detect(s)
	if err != nil {
		return KubeconfigPolicy{}, err
	}
	read, err := NewSpec(s)
	if err != nil {
		return KubeconfigPolicy{}, err
	}
	return p.KubeconfigPolicy(read), nil
}

// KubeconfigPolicy is the kubeconfig policy of spec s's flavor of p, else
// p's own (the zero policy when neither states one).
func (p *Provider) KubeconfigPolicy(s *Spec) KubeconfigPolicy {
	if r := p.resolve(s); r.Kubeconfig != nil {
		return *r.Kubeconfig
	}
	return KubeconfigPolicy{}
}
