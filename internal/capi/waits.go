package capi

import "time"

// Waits is what the provider (flavor) says of waiting for its machines.
type Waits struct {
	// Timeout is the manifest's waitTimeout; 0: none set.
	Timeout time.Duration
	// MachineFailures are the conditions that end the wait with a failure.
	MachineFailures []MachineFailure
}

// Waits returns the waitTimeout and machineFailures of p for spec s, the
// spec's flavor applied.
func (p *Provider) Waits(s *Spec) Waits {
	r := p.resolve(s)
	w := Waits{MachineFailures: r.MachineFailures}
	if r.WaitTimeout != "" {
		w.Timeout, _ = time.ParseDuration(r.WaitTimeout) // checked at load
	}
	return w
}

// Duration is For as a duration (checked at load); 0 when empty.
func (mf MachineFailure) Duration() time.Duration {
	d, _ := time.ParseDuration(mf.For)
	return d
}
