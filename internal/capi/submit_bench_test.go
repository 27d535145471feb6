package capi_test

import (
	"strconv"
	"testing"
)

// BenchmarkSubmittedSpec is what a POST asks of the catalog for the seed
// spec (hcloud): detection, reading the spec (NewSpec), the provider's
// requirements and the machine count. Each iteration names the cluster
// anew, as each POST does.
//
//	go test ./internal/capi -run '^$' -bench BenchmarkSubmittedSpec -benchmem
func BenchmarkSubmittedSpec(b *testing.B) {
	c := loadCatalog(b, embedded(b))
	data, err := readSpecFile("hcloud")
	if err != nil {
		b.Fatal(err)
	}
	s := loadSpec(b, c, data)
	roles := map[string]string{"cilium": "cni", "ccm": "ccm"}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		s.Metadata.Name = "c" + strconv.Itoa(n)
		p, read := detected(b, c, s)
		if errs := p.CheckRequirements(read, roles); len(errs) > 0 {
			b.Fatal(errs)
		}
		if _, err := p.Machines(read); err != nil {
			b.Fatal(err)
		}
	}
}
