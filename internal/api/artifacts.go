package api

import (
	"errors"
	"fmt"
	"net/http"

	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/store"
)

// clusterKubeconfig returns the workload cluster's kubeconfig: 404 until the
// kubeconfig step stored it. Every download is audit-logged.
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
	sealed, err := s.store.SealedKubeconfig(r.Context(), c.TenantID, c.ID)
	if errors.Is(err, store.ErrNotFound) {
		s.writeProblem(w, r, errNotFound(fmt.Sprintf("cluster %q has no kubeconfig yet: it is %s", c.Name, c.Phase)))
		return
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	kubeconfig, err := s.Keyring.Open(sealed, store.KubeconfigAAD(c.TenantID, c.ID))
	if err != nil {
		s.writeProblem(w, r, fmt.Errorf("open kubeconfig of %s: %w", c.Name, err))
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
