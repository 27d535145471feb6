package capi

import (
	"time"

	"lok8s.dev/provisioner/internal/spec"
)

// Waits is what the provider (flavor) says of waiting for its machines.
type Waits struct {
	// Timeout is the manifest's waitTimeout; 0: none set.
	Timeout time.Duration
	// MachineFailures are the conditions that end the wait with a failure.
	MachineFailures []MachineFailure
}

// Waits returns the waitTimeout and machineFailures of the spec's
// provider, its flavor applied.
func (c *Catalog) Waits(s *spec.Capi) (Waits, error) {
	p, err := c.Detect(s)
	if err != nil {
		return Waits{}, err
	}
	return p.Waits(s)
}

// Waits returns the waitTimeout and machineFailures of p for spec s, the
// spec's flavor applied.
func (p *Provider) Waits(s *spec.Capi) (Waits, error) {
	doc, err := specDocument(s)
	if err != nil {
		return Waits{}, err
	}
	r := p.Manifest.resolve(doc)
	w := Waits{MachineFailures: r.MachineFailures}
	if r.WaitTimeout != "" {
		w.Timeout, _ = time.ParseDuration(r.WaitTimeout) // checked at load
	}
	return w, nil
}

// Duration is For as a duration (checked at load); 0 when empty.
func (mf MachineFailure) Duration() time.Duration {
	d, _ := time.ParseDuration(mf.For)
	return d
}
