package capi

import "testing"

// BenchmarkRender renders each golden spec's cluster with the embedded
// catalog, as the render step does: the manifests of one cluster per op.
// Beside each, text renders every template as text (renderText), as Render
// did before templates were compiled: the reference, in the same run.
//
//	go test ./internal/capi -run '^$' -bench BenchmarkRender -benchmem
func BenchmarkRender(b *testing.B) {
	c := embeddedCatalog(b)
	text := textCatalog(c)
	for _, name := range []string{"hcloud", "hcloud-hrobot", "aws-ec2", "aws-eks-cilium"} {
		in := RenderInput{Spec: goldenSpec(b, c, name)}
		for _, path := range []struct {
			name string
			c    *Catalog
		}{{"compiled", c}, {"text", text}} {
			b.Run(name+"/"+path.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := path.c.Render(in); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
