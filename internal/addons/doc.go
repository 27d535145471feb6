// Package addons owns the cluster add-ons installed on a new workload
// cluster by the pipeline's bootstrap step: the catalogue (one YAML file per
// add-on under the repository's addons/ folder, embedded as
// provisioner.Addons), the order they go in (Plan), the values precedence
// chain (Values), the Secrets an add-on needs in the workload cluster
// (Resolved.Secrets), and installing them with the Helm v4 SDK (Installer).
//
// Values, lowest precedence first:
//
//	addon defaults  <  provider defaults  <  operator overrides  <  cluster spec values
//
// The two catalogue layers may use clusterctl variables (${CLUSTER_NAME},
// ${API_SERVER_HOST}, ${POD_CIDR:=192.168.0.0/16}); the operator's and the
// cluster's values are taken literally. Maps merge key by key, recursively;
// lists and scalars replace; a null removes the key below it.
package addons
