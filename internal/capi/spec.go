package capi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"lok8s.dev/provisioner/internal/spec"
)

// Spec is a valid cluster spec as the catalog reads it: the spec, and its
// document (the spec defaulted, as the generic JSON document, numbers as
// json.Number, that a manifest's paths and conditions point into). NewSpec
// decodes the document once; a request or a job run makes one Spec and
// hands it to everything that reads the spec against its provider (the
// requirements, the machine count, the waits, the kubeconfig policy,
// Render). Neither the spec nor the document may change afterwards.
type Spec struct {
	*spec.Capi
	doc map[string]any
}

// specsDecoded counts the documents NewSpec has decoded.
var specsDecoded atomic.Int64

// SpecsDecoded is how many spec documents this process has decoded
// (NewSpec): tests check with it that a request decodes its spec once.
func SpecsDecoded() int64 { return specsDecoded.Load() }

// NewSpec reads s for the catalog: it defaults a copy of s and decodes
// that into the document. s itself is not changed, and must not be once
// the Spec is made.
func NewSpec(s *spec.Capi) (*Spec, error) {
	if s == nil {
		return nil, errors.New("capi: no spec")
	}
	specsDecoded.Add(1)
	data, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("capi: encoding spec: %w", err)
	}
	var c spec.Capi
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("capi: decoding spec: %w", err)
	}
	c.Default()
	if data, err = json.Marshal(&c); err != nil {
		return nil, fmt.Errorf("capi: encoding spec: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("capi: decoding spec: %w", err)
	}
	return &Spec{Capi: s, doc: doc}, nil
}

// resolve is p's rendering with the flavor s selects applied.
func (p *Provider) resolve(s *Spec) resolved { return p.Manifest.resolve(s.doc) }
