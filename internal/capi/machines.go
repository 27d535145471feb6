package capi

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Machines counts the machines a valid spec asks its provider p for, as
// Render would create them: the replicas of the object at the flavor's
// controlPlane path (none where the provider runs the control plane, as
// EKS does) plus every pool's replicas. Tenant quotas are held against it.
func (p *Provider) Machines(s *Spec) (int64, error) {
	doc := s.doc
	r := p.resolve(s)
	var total int64
	if r.ControlPlane != nil && *r.ControlPlane != "" {
		if cp, ok := lookupPath(doc, *r.ControlPlane); ok {
			m, _ := cp.(map[string]any)
			n, err := replicas(m, *r.ControlPlane)
			if err != nil {
				return 0, err
			}
			total += n
		}
	}
	for _, src := range r.Pools {
		pools, err := poolsAt(doc, src.Workers)
		if err != nil {
			return 0, fmt.Errorf("capi: provider %s: %w", p.Name, err)
		}
		for name, pool := range pools {
			n, err := replicas(pool, src.Workers+"."+name)
			if err != nil {
				return 0, err
			}
			total += n
		}
	}
	return total, nil
}

// replicas reads the replicas of the (defaulted) object at path; absent is 0.
func replicas(obj map[string]any, path string) (int64, error) {
	v, ok := obj["replicas"]
	if !ok || v == nil {
		return 0, nil
	}
	var n int64
	var err error
	switch x := v.(type) {
	case json.Number:
		n, err = x.Int64()
	case string:
		n, err = strconv.ParseInt(x, 10, 64)
	default:
		err = fmt.Errorf("not a number")
	}
	if err != nil || n < 0 {
		return 0, fmt.Errorf("capi: %s.replicas: must be a whole number not below 0", path)
	}
	return n, nil
}
