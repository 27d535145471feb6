package addons

import (
	"fmt"
	"net/url"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubeconfigGetter is Helm's RESTClientGetter for a kubeconfig held in
// memory (the sealed one the pipeline stores), with the release's namespace
// as the default: no file is written.
type kubeconfigGetter struct {
	clientConfig clientcmd.ClientConfig
	restConfig   *rest.Config
	discovery    discovery.CachedDiscoveryInterface
	mapper       meta.RESTMapper
}

var _ genericclioptions.RESTClientGetter = (*kubeconfigGetter)(nil)

func newKubeconfigGetter(kubeconfig []byte, namespace string) (*kubeconfigGetter, error) {
	raw, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cc := clientcmd.NewDefaultClientConfig(*raw, &clientcmd.ConfigOverrides{Context: clientcmdapi.Context{Namespace: namespace}})
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	// Helm and kstatus issue many small requests; client-go's defaults (5
	// QPS) would throttle them.
	rc.QPS, rc.Burst = 50, 100
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: discovery: %w", err)
	}
	cached := memory.NewMemCacheClient(dc)
	mapper := restmapper.NewShortcutExpander(restmapper.NewDeferredDiscoveryRESTMapper(cached), cached, nil)
	return &kubeconfigGetter{clientConfig: cc, restConfig: rc, discovery: cached, mapper: mapper}, nil
}

func (g *kubeconfigGetter) ToRESTConfig() (*rest.Config, error) {
	return rest.CopyConfig(g.restConfig), nil
}

func (g *kubeconfigGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	return g.discovery, nil
}

func (g *kubeconfigGetter) ToRESTMapper() (meta.RESTMapper, error) { return g.mapper, nil }

func (g *kubeconfigGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig { return g.clientConfig }

// APIServer returns the host and port of the kubeconfig's current cluster
// (the default port of its scheme when none is written): the
// API_SERVER_HOST and API_SERVER_PORT variables of a workload cluster.
func APIServer(kubeconfig []byte) (host, port string, err error) {
	raw, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return "", "", fmt.Errorf("addons: kubeconfig: %w", err)
	}
	rc, err := clientcmd.NewDefaultClientConfig(*raw, nil).ClientConfig()
	if err != nil {
		return "", "", fmt.Errorf("addons: kubeconfig: %w", err)
	}
	u, err := url.Parse(rc.Host)
	if err != nil || u.Host == "" {
		return "", "", fmt.Errorf("addons: kubeconfig: server %q is not a URL", rc.Host)
	}
	host, port = u.Hostname(), u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	if host == "" {
		return "", "", fmt.Errorf("addons: kubeconfig: server %q has no host", rc.Host)
	}
	return host, port, nil
}
