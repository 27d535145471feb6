// Package mgmt drives management clusters: it knows where their kubeconfigs
// are (the SaaS default from LOK8S_MGMT_KUBECONFIG or in-cluster config, and
// named ones by domain as <dir>/<domain>.yaml), keeps one client per
// cluster, and does what the pipeline needs there: server-side apply with
// one field manager, reading a CAPI Cluster's status, fetching a workload
// cluster's kubeconfig, deleting.
package mgmt

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ErrUnknownCluster is returned for a management cluster that is not configured.
var ErrUnknownCluster = errors.New("management cluster is not configured")

// The default client-side limits per management cluster.
const (
	DefaultQPS   = 50
	DefaultBurst = 100
)

// Registry locates management clusters and keeps a client for each.
type Registry struct {
	// DefaultKubeconfig is the SaaS-mode management cluster's kubeconfig
	// ("" means in-cluster config).
	DefaultKubeconfig string
	// KubeconfigDir holds <domain>.yaml for named management clusters.
	KubeconfigDir string
	// WrapTransport, when set, wraps the transport of every management
	// cluster client (instrumentation; tests inject faults with it).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Instrument, when set, wraps the transport of each management
	// cluster's client, told the cluster's domain (the service's metrics).
	Instrument func(domain string, next http.RoundTripper) http.RoundTripper
	// QPS and Burst bound the requests per second to each management
	// cluster (0: DefaultQPS and DefaultBurst). client-go's own default of 5
	// per second made 200 clusters take two minutes to apply and left every
	// worker waiting on the limiter (see internal/e2e's benchmark).
	QPS   float32
	Burst int
	// TenantRole, when set, is a ClusterRole the service binds to itself in
	// each tenant namespace it makes on the SaaS default management cluster
	// (LOK8S_MGMT_TENANT_ROLE; the Helm chart's least-privilege RBAC).
	TenantRole string
	// InCluster says the service runs in a pod (cmd/server: KUBERNETES_SERVICE_HOST
	// is set), so that in-cluster config reaches the SaaS default
	// management cluster when DefaultKubeconfig is unset.
	InCluster bool

	mu       sync.Mutex
	clusters map[string]*Cluster
}

// KubeconfigPath is where the named management cluster's kubeconfig lives.
func (r *Registry) KubeconfigPath(domain string) string {
	return filepath.Join(r.KubeconfigDir, domain+".yaml")
}

// Known reports whether a named management cluster is configured.
func (r *Registry) Known(domain string) bool {
	if r.KubeconfigDir == "" || domain == "" || filepath.Base(domain) != domain {
		return false
	}
	info, err := os.Stat(r.KubeconfigPath(domain))
	return err == nil && info.Mode().IsRegular()
}

// DefaultConfigured reports whether the SaaS default management cluster is
// configured: a kubeconfig is set, or the service runs in a pod
// (InCluster).
func (r *Registry) DefaultConfigured() bool {
	return r.DefaultKubeconfig != "" || r.InCluster
}

// Domains lists the named management clusters configured in KubeconfigDir.
func (r *Registry) Domains() ([]string, error) {
	if r.KubeconfigDir == "" {
		return nil, nil
	}
	matches, err := filepath.Glob(filepath.Join(r.KubeconfigDir, "*.yaml"))
	if err != nil {
		return nil, fmt.Errorf("list management clusters: %w", err)
	}
	domains := make([]string, 0, len(matches))
	for _, m := range matches {
		domains = append(domains, filepath.Base(m[:len(m)-len(".yaml")]))
	}
	return domains, nil
}

// Cluster returns the management cluster for domain ("" is the SaaS
// default), building its client on first use.
func (r *Registry) Cluster(domain string) (*Cluster, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.clusters[domain]; ok {
		return c, nil
	}
	cfg, err := r.restConfig(domain)
	if err != nil {
		return nil, err
	}
	if r.WrapTransport != nil {
		cfg.Wrap(r.WrapTransport)
	}
	if r.Instrument != nil {
		cfg.Wrap(func(next http.RoundTripper) http.RoundTripper { return r.Instrument(domain, next) })
	}
	cfg.QPS, cfg.Burst = DefaultQPS, DefaultBurst
	if r.QPS > 0 {
		cfg.QPS = r.QPS
	}
	if r.Burst > 0 {
		cfg.Burst = r.Burst
	}
	c, err := NewCluster(domain, cfg)
	if err != nil {
		return nil, err
	}
	if domain == "" {
		c.tenantRole = r.TenantRole
	}
	if r.clusters == nil {
		r.clusters = map[string]*Cluster{}
	}
	r.clusters[domain] = c
	return c, nil
}

func (r *Registry) restConfig(domain string) (*rest.Config, error) {
	var path string
	switch {
	case domain != "":
		if !r.Known(domain) {
			return nil, fmt.Errorf("%q: %w", domain, ErrUnknownCluster)
		}
		path = r.KubeconfigPath(domain)
	case r.DefaultKubeconfig != "":
		path = r.DefaultKubeconfig
	default:
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("SaaS management cluster: LOK8S_MGMT_KUBECONFIG is not set and in-cluster config is unavailable: %w", ErrUnknownCluster)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("load management cluster kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

// NewCluster wraps a management cluster reached through cfg.
func NewCluster(domain string, cfg *rest.Config) (*Cluster, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "lok8s-provisioner"
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, fmt.Errorf("client for management cluster %q: %w", domain, err)
	}
	return &Cluster{Domain: domain, Config: cfg, client: c}, nil
}
