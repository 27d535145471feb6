// Package provisioner holds the files the service binary embeds: the API
// description and the default provider templates.
package provisioner

import _ "embed"

// OpenAPI is openapi.yaml, served at /openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
