// Package provisioner holds the files the service binary embeds: the API
// description and the default provider templates.
package provisioner

import "embed"

// OpenAPI is openapi.yaml, served at /openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

// Templates holds templates/: core/ and providers/<name>/, the default
// template catalog. Callers use fs.Sub(Templates, "templates") with
// capi.LoadCatalog; LOK8S_TEMPLATES_DIR may name a directory to use instead
// (os.DirFS), so that a provider is added without rebuilding.
//
//go:embed templates
var Templates embed.FS

// Addons holds addons/: one <name>.yaml per add-on, the catalogue
// addons.LoadCatalog reads (use fs.Sub(Addons, "addons")).
//
//go:embed addons
var Addons embed.FS
