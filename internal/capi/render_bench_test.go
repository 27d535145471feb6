package capi_test

import (
	"testing"

	"lok8s.dev/provisioner/internal/capi"
)

// BenchmarkRender renders each golden spec's cluster with the embedded
// catalog, as the render step does: the manifests of one cluster per op.
//
//	go test ./internal/capi -run '^$' -bench BenchmarkRender -benchmem
func BenchmarkRender(b *testing.B) {
	c := loadCatalog(b, embedded(b))
	for _, name := range []string{"hcloud", "hcloud-hrobot", "aws-ec2", "aws-eks-cilium"} {
		data, err := readSpecFile(name)
		if err != nil {
			b.Fatal(err)
		}
		s := loadSpec(b, c, data)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Render(capi.RenderInput{Spec: s}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
