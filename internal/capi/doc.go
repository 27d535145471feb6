// Package capi owns the Cluster API side of provisioning that is plain data:
// the catalog of providers (templates/core and templates/providers/<name>,
// each provider described by a provider.yaml manifest), detecting a spec's
// provider, rendering its CAPI objects with clusterctl's variable syntax
// (${VAR}, ${VAR:=default}; templates checked with CAPI's own yamlprocessor
// and decoded once at load, a render filling a copy of their objects:
// compiledTemplate) and merging the manifest's patches into them, the cluster-level variables of a spec (for
// the addon values), and building the credentials Secret a provider
// expects.
//
// Adding a provider is adding a folder with a manifest and templates: no Go
// change. The manifest schema is documented in templates/README.md.
package capi
