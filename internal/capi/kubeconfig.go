package capi

import "lok8s.dev/provisioner/internal/spec"

// KubeconfigRotates reports whether the workload kubeconfig of a valid
// spec's cluster rotates (its flavor's, else its provider's manifest says
// kubeconfig: {rotates: true}): then it is read from the management
// cluster for every use and never stored.
func (c *Catalog) KubeconfigRotates(s *spec.Capi) (bool, error) {
	p, err := c.Detect(s)
	if err != nil {
		return false, err
	}
	doc, err := specDocument(s)
	if err != nil {
		return false, err
	}
	r := p.Manifest.resolve(doc)
	return r.Kubeconfig != nil && r.Kubeconfig.Rotates, nil
}

// KubeconfigSimulated reports whether a valid spec's cluster has a
// simulated workload API server (its manifest says kubeconfig:
// {simulated: true}), where kubeconfigs cannot be issued per caller.
func (c *Catalog) KubeconfigSimulated(s *spec.Capi) (bool, error) {
	p, err := c.Detect(s)
	if err != nil {
		return false, err
	}
	doc, err := specDocument(s)
	if err != nil {
		return false, err
	}
	r := p.Manifest.resolve(doc)
	return r.Kubeconfig != nil && r.Kubeconfig.Simulated, nil
}
