package api

import (
	"errors"
	"fmt"
	"net/http"

	"lok8s.dev/provisioner/internal/kubeconfigs"
	"lok8s.dev/provisioner/internal/mgmt"
)

// clusterKubeconfig returns the workload cluster's kubeconfig: 404 when
// there is no such cluster (or it was deleted), 409 until the kubeconfig
// step found it. A rotating one (EKS) is read from the management cluster
// for each download (503 management-unavailable when it cannot be), so
// the user gets the token CAPA wrote last; ?form=exec gives an EKS
// cluster's exec-plugin kubeconfig instead. Every download is audit-logged.
func (s *Server) clusterKubeconfig(w http.ResponseWriter, r *http.Request) {
	c, _, err := s.clusterWithOperation(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if c.DeletedAt != nil {
		s.writeProblem(w, r, errNotFound(fmt.Sprintf("cluster %q was deleted", c.Name)))
		return
	}
	read := s.Kubeconfigs.Kubeconfig
	switch form := r.URL.Query().Get("form"); form {
	case "", "token":
	case "exec":
		read = s.Kubeconfigs.Exec
	default:
		s.writeProblem(w, r, errBadRequest(fmt.Sprintf("form %q: use token or exec", form)))
		return
	}
	kubeconfig, err := read(r.Context(), c)
	switch {
	case errors.Is(err, kubeconfigs.ErrNoExecForm):
		s.writeProblem(w, r, errBadRequest(fmt.Sprintf("cluster %q has no exec-plugin kubeconfig: only EKS clusters (spec.aws.flavor: eks) do", c.Name)))
		return
	case errors.Is(err, kubeconfigs.ErrNotAvailable):
		s.writeProblem(w, r, errConflict(fmt.Sprintf("cluster %q has no kubeconfig yet: it is %s", c.Name, c.Phase)))
		return
	case errors.Is(err, kubeconfigs.ErrManagementUnavailable):
		s.writeProblem(w, r, errManagementUnavailable(err))
		return
	case err != nil:
		s.writeProblem(w, r, fmt.Errorf("kubeconfig of %s: %w", c.Name, err))
		return
	}
	if err := s.store.Audit(r.Context(), s.actor(r), "cluster.kubeconfig", "clusters/"+c.Name, nil); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.kubeconfig"`, c.Name))
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(kubeconfig)
}

// clusterManifests returns the rendered manifests, with the data of any
// Secret redacted; 404 until the render step ran.
func (s *Server) clusterManifests(w http.ResponseWriter, r *http.Request) {
	c, _, err := s.clusterWithOperation(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	manifests, err := s.store.Manifests(r.Context(), c.ID)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if manifests == "" {
		s.writeProblem(w, r, errNotFound(fmt.Sprintf("cluster %q has no rendered manifests yet", c.Name)))
		return
	}
	redacted, err := mgmt.RedactSecrets([]byte(manifests))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(redacted)
}
