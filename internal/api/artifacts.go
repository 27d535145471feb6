package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"lok8s.dev/provisioner/internal/access"
	"lok8s.dev/provisioner/internal/kubeconfigs"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/service"
)

// clusterKubeconfig issues a kubeconfig for the caller: a token of the
// caller's own identity on the workload cluster (access.Issue), valid for
// ?ttl= (default 1 h, at most the tenant's policy). CAPI's admin
// kubeconfig, which the service keeps (or, on EKS, reads fresh each time)
// to reach the cluster itself, never leaves the service. 404 when there
// is no such cluster (or it was deleted), 409 until the kubeconfig step
// found it, 503 when the management or the workload cluster does not
// answer. ?form=exec gives an EKS cluster's exec-plugin kubeconfig
// instead (no credentials: the user's own AWS identity), and a simulated
// workload API server's (the in-memory dev provider's) is handed out as
// it is. Every issue is audit-logged with its identity and expiry.
func (s *Server) clusterKubeconfig(w http.ResponseWriter, r *http.Request) {
	c, _, err := s.clusterWithOperation(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if c.DeletedAt != nil {
		s.writeProblem(w, r, service.NotFound(fmt.Sprintf("cluster %q was deleted", c.Name)))
		return
	}
	q := r.URL.Query()
	read := s.Kubeconfigs.Kubeconfig
	switch form := q.Get("form"); form {
	case "", "token":
	case "exec":
		read = s.Kubeconfigs.Exec
	default:
		s.writeProblem(w, r, service.BadRequest(fmt.Sprintf("form %q: use token or exec", form)))
		return
	}
	p := principal(r.Context())
	quota, err := s.store.QuotaLimits(r.Context(), p.TenantID)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	ttl, err := kubeconfigTTL(q.Get("ttl"), quota.KubeconfigMaxTTL)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	kubeconfig, err := read(r.Context(), c)
	switch {
	case errors.Is(err, kubeconfigs.ErrNoExecForm):
		s.writeProblem(w, r, service.BadRequest(fmt.Sprintf("cluster %q has no exec-plugin kubeconfig: only EKS clusters (spec.aws.flavor: eks) do", c.Name)))
		return
	case errors.Is(err, kubeconfigs.ErrNotAvailable):
		s.writeProblem(w, r, service.Conflict(fmt.Sprintf("cluster %q has no kubeconfig yet: it is %s", c.Name, c.Phase)))
		return
	case errors.Is(err, kubeconfigs.ErrManagementUnavailable):
		s.writeProblem(w, r, service.ManagementUnavailable(err))
		return
	case err != nil:
		s.writeProblem(w, r, fmt.Errorf("kubeconfig of %s: %w", c.Name, err))
		return
	}
	simulated, err := s.Kubeconfigs.Simulated(c)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if form := q.Get("form"); form == "exec" || simulated {
		if simulated {
			form = "simulated"
		}
		if err := s.store.Audit(r.Context(), s.actor(r), "cluster.kubeconfig", "clusters/"+c.Name, map[string]any{"form": form}); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		kubeconfigHeaders(w, c.Name)
		_, _ = w.Write(kubeconfig)
		return
	}
	issue := s.IssueKubeconfig
	if issue == nil {
		issue = access.Issue
	}
	issued, err := issue(r.Context(), kubeconfig, c.Name, access.Principal{Tenant: p.TenantName, Token: p.TokenName}, ttl)
	if errors.Is(err, access.ErrUnreachable) {
		s.logger.WarnContext(r.Context(), "issue kubeconfig: workload cluster unreachable", "cluster", c.Name, "error", err)
		w.Header().Set("Retry-After", "30")
		s.writeProblem(w, r, &service.Error{Status: http.StatusServiceUnavailable, Slug: "workload-unavailable", Title: "Workload cluster unavailable",
			Detail: fmt.Sprintf("the API server of cluster %q does not answer, so no kubeconfig could be issued; retry later", c.Name)})
		return
	}
	if err != nil {
		s.writeProblem(w, r, fmt.Errorf("issue kubeconfig of %s: %w", c.Name, err))
		return
	}
	if err := s.store.Audit(r.Context(), s.actor(r), "cluster.kubeconfig", "clusters/"+c.Name, map[string]any{
		"user": issued.User, "ttlSeconds": int64(ttl / time.Second), "expiresAt": issued.ExpiresAt.Format(time.RFC3339)}); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	kubeconfigHeaders(w, c.Name)
	w.Header().Set("Lok8s-Kubeconfig-User", issued.User)
	w.Header().Set("Lok8s-Kubeconfig-Expires-At", issued.ExpiresAt.Format(time.RFC3339))
	_, _ = fmt.Fprintf(w, "# lok8s: cluster %s as %s, valid until %s\n", c.Name, issued.User, issued.ExpiresAt.Format(time.RFC3339))
	_, _ = w.Write(issued.Kubeconfig)
}

// kubeconfigHeaders are a kubeconfig download's (set only once it is
// certain: a problem is not an attachment).
func kubeconfigHeaders(w http.ResponseWriter, cluster string) {
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.kubeconfig"`, cluster))
	w.Header().Set("Cache-Control", "no-store")
}

// kubeconfigTTL reads ?ttl= (a Go duration such as 30m or 8h): default 1 h
// (or the policy's maximum when lower), at least access.MinTTL, at most
// maxSeconds (nil: access.DefaultMaxTTL).
func kubeconfigTTL(param string, maxSeconds *int32) (time.Duration, error) {
	limit := access.DefaultMaxTTL
	if maxSeconds != nil {
		limit = time.Duration(*maxSeconds) * time.Second
	}
	if param == "" {
		return min(access.DefaultTTL, limit), nil
	}
	ttl, err := time.ParseDuration(param)
	switch {
	case err != nil:
		return 0, service.Invalid(FieldError{Field: "ttl", Message: "must be a duration such as 30m or 8h"})
	case ttl < access.MinTTL:
		return 0, service.Invalid(FieldError{Field: "ttl", Message: fmt.Sprintf("must be at least %s", access.MinTTL)})
	case ttl > limit:
		return 0, service.Invalid(FieldError{Field: "ttl", Message: fmt.Sprintf("must be at most %s (the tenant's kubeconfig policy)", limit)})
	}
	return ttl.Truncate(time.Second), nil
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
		s.writeProblem(w, r, service.NotFound(fmt.Sprintf("cluster %q has no rendered manifests yet", c.Name)))
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
