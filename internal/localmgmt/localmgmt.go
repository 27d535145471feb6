// Package localmgmt turns a local kube-apiserver (envtest's, from
// internal/testenv) into a Cluster API management cluster by running Cluster
// API's own controller managers as subprocesses: core, kubeadm bootstrap,
// kubeadm control plane and the Docker infrastructure provider (CAPD), whose
// DevCluster/DevMachine kinds have an in-memory backend that simulates
// machines and a workload API server, so that a Cluster goes Pending →
// Provisioning → Provisioned on one machine without a cloud or Docker.
//
// The binaries are built from the Go module proxy by hack/capi-controllers.sh
// (tools module hack/tools/capi). Start then:
//
//   - generates a self-signed CA and a serving certificate for 127.0.0.1,
//     used by every manager's webhook server (--webhook-cert-dir);
//   - installs every provider's CRDs (from the module cache), pointing the
//     conversion webhook of multi-version CRDs at the owning manager;
//   - installs every provider's webhook configurations (its
//     config/webhook/manifests.yaml), rewritten to URLs on the local ports
//     with the CA as caBundle, so defaulting and validation happen as in a
//     real management cluster;
//   - starts the managers with loopback health and diagnostics addresses,
//     leader election off, logs to files, and waits until each is ready.
//
// Limits of CAPD's in-memory backend that callers must know: it binds its
// debug server to port 19000 and the simulated workload API servers to ports
// 20000-30000 on all interfaces (not configurable by flag), so only one
// Controllers per machine at a time.
package localmgmt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Options configures Start.
type Options struct {
	// Config reaches the management cluster's apiserver with rights to
	// install CRDs and webhook configurations (cluster admin). Required.
	Config *rest.Config
	// ControllersDir holds the managers' binaries (see ControllersDir).
	// Required.
	ControllersDir string
	// WorkDir receives the kubeconfig the managers use, the webhook
	// certificates (certs/) and the managers' logs (logs/<name>.log). It is
	// created if missing. Required.
	WorkDir string
	// Verbosity is the managers' klog -v (their default is 2 for CAPD and 0
	// otherwise when zero).
	Verbosity int
	// ReadyTimeout bounds the wait for every manager to report ready
	// (default 2 minutes).
	ReadyTimeout time.Duration
}

// Controllers is a running set of managers.
type Controllers struct {
	// Kubeconfig is the file the managers were given with --kubeconfig.
	Kubeconfig string
	// CACert is the PEM CA that signed the webhook serving certificate
	// (the caBundle of the installed webhooks and conversion webhooks).
	CACert []byte
	// Managers are the started managers, in Providers order.
	Managers []*Manager
	// StartDuration is how long Start took, from the first install to every
	// manager being ready.
	StartDuration time.Duration

	client   client.Client
	webhooks []client.Object
	stopOnce sync.Once
	stopErr  error
}

// Manager is one running manager process.
type Manager struct {
	Provider Provider
	// WebhookPort is its webhook server's port (bound on all interfaces by
	// the manager; the apiserver calls it on 127.0.0.1).
	WebhookPort int
	// HealthAddr serves /healthz and /readyz.
	HealthAddr string
	// LogFile receives its stdout and stderr.
	LogFile string
	// Args are the arguments it was started with.
	Args []string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // the process's exit, valid once done is closed
}

// Start installs CRDs and webhook configurations and starts the managers; see
// the package documentation. On error, everything it started is stopped. The
// caller must call Stop.
func Start(ctx context.Context, opts Options) (_ *Controllers, err error) {
	if opts.Config == nil || opts.ControllersDir == "" || opts.WorkDir == "" {
		return nil, errors.New("localmgmt: Options.Config, ControllersDir and WorkDir are required")
	}
	if err := checkControllers(opts.ControllersDir); err != nil {
		return nil, fmt.Errorf("localmgmt: %w; %s", err, controllersHint)
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 2 * time.Minute
	}
	began := time.Now()

	modDirs, err := ModuleDirs(ctx)
	if err != nil {
		return nil, err
	}
	logDir := filepath.Join(opts.WorkDir, "logs")
	certDir := filepath.Join(opts.WorkDir, "certs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("localmgmt: %w", err)
	}
	caPEM, err := writeServingCert(certDir)
	if err != nil {
		return nil, fmt.Errorf("localmgmt: webhook certificate: %w", err)
	}
	kubeconfig := filepath.Join(opts.WorkDir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, opts.Config); err != nil {
		return nil, fmt.Errorf("localmgmt: %w", err)
	}
	c, err := client.New(opts.Config, client.Options{Scheme: newScheme()})
	if err != nil {
		return nil, fmt.Errorf("localmgmt: %w", err)
	}

	ports := map[string]int{}
	cs := &Controllers{Kubeconfig: kubeconfig, CACert: caPEM, client: c}
	for _, p := range Providers {
		webhookPort, err := freePort("")
		if err != nil {
			return nil, fmt.Errorf("localmgmt: %w", err)
		}
		healthPort, err := freePort("127.0.0.1")
		if err != nil {
			return nil, fmt.Errorf("localmgmt: %w", err)
		}
		ports[p.Name] = webhookPort
		m := &Manager{
			Provider:    p,
			WebhookPort: webhookPort,
			HealthAddr:  net.JoinHostPort("127.0.0.1", strconv.Itoa(healthPort)),
			LogFile:     filepath.Join(logDir, p.Name+".log"),
		}
		m.Args = []string{
			"--kubeconfig=" + kubeconfig,
			"--leader-elect=false",
			"--webhook-port=" + strconv.Itoa(webhookPort),
			"--webhook-cert-dir=" + certDir,
			"--health-addr=" + m.HealthAddr,
			"--diagnostics-address=127.0.0.1:0",
			"--insecure-diagnostics",
			"--feature-gates=" + p.FeatureGates,
		}
		if opts.Verbosity > 0 {
			m.Args = append(m.Args, "--v="+strconv.Itoa(opts.Verbosity))
		}
		cs.Managers = append(cs.Managers, m)

		objs, err := webhookConfigs(p, modDirs[p.Module], webhookPort, caPEM)
		if err != nil {
			return nil, fmt.Errorf("localmgmt: %w", err)
		}
		cs.webhooks = append(cs.webhooks, objs...)
	}

	if _, err := installCRDs(opts.Config, modDirs, ports, caPEM); err != nil {
		return nil, fmt.Errorf("localmgmt: %w", err)
	}
	// From here on a failure stops what was started and removes the webhook
	// configurations, which would otherwise make the apiserver call servers
	// that are not there.
	defer func() {
		if err != nil {
			_ = cs.Stop()
		}
	}()
	if err := applyObjects(ctx, c, cs.webhooks); err != nil {
		return nil, fmt.Errorf("localmgmt: webhook configurations: %w", err)
	}

	for _, m := range cs.Managers {
		if err := m.start(opts.ControllersDir); err != nil {
			return nil, fmt.Errorf("localmgmt: %w", err)
		}
	}
	readyCtx, cancel := context.WithTimeout(ctx, opts.ReadyTimeout)
	defer cancel()
	for _, m := range cs.Managers {
		if err := m.waitReady(readyCtx); err != nil {
			return nil, fmt.Errorf("localmgmt: %s manager not ready: %w\n%s", m.Provider.Name, err, tailFile(m.LogFile, 3000))
		}
	}
	cs.StartDuration = time.Since(began)
	return cs, nil
}

func (m *Manager) start(binDir string) error {
	f, err := os.OpenFile(m.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(binDir, m.Provider.Binary), m.Args...)
	cmd.Stdout, cmd.Stderr = f, f
	// CAPD's in-memory backend serves the simulated workload API servers on
	// POD_IP (used in their kubeconfigs and certificates).
	cmd.Env = append(os.Environ(), "POD_IP=127.0.0.1", "POD_NAMESPACE=default", "POD_NAME="+m.Provider.Name)
	// Its own process group, so that a Ctrl-C on the parent's terminal does
	// not reach it before Stop does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting %s: %w", m.Provider.Binary, err)
	}
	m.cmd = cmd
	m.done = make(chan struct{})
	go func() {
		m.err = cmd.Wait()
		f.Close()
		close(m.done)
	}()
	return nil
}

// Exited reports whether the process has ended, and how.
func (m *Manager) Exited() (bool, error) {
	select {
	case <-m.done:
		return true, m.err
	default:
		return false, nil
	}
}

func (m *Manager) waitReady(ctx context.Context) error {
	url := "http://" + m.HealthAddr + "/readyz"
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		if exited, err := m.Exited(); exited {
			return fmt.Errorf("exited: %w", err)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", url, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Stop ends the managers (SIGTERM, then SIGKILL after 30 s) in reverse start
// order and removes the webhook configurations Start installed, so that the
// apiserver does not call servers that are gone. CRDs stay. It reports a
// manager that had already exited by itself, or that did not stop.
func (cs *Controllers) Stop() error {
	cs.stopOnce.Do(func() {
		var errs []error
		for i := len(cs.Managers) - 1; i >= 0; i-- {
			m := cs.Managers[i]
			if m.cmd == nil {
				continue
			}
			if exited, err := m.Exited(); exited {
				errs = append(errs, fmt.Errorf("%s had exited by itself: %w (log %s)", m.Provider.Name, err, m.LogFile))
				continue
			}
			_ = m.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-m.done:
			case <-time.After(30 * time.Second):
				_ = m.cmd.Process.Kill()
				<-m.done
				errs = append(errs, fmt.Errorf("%s did not stop within 30s of SIGTERM; killed", m.Provider.Name))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, obj := range cs.webhooks {
			if err := cs.client.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
				errs = append(errs, fmt.Errorf("deleting %s: %w", obj.GetName(), err))
			}
		}
		if len(errs) > 0 {
			cs.stopErr = fmt.Errorf("localmgmt: stop: %w", errors.Join(errs...))
		}
	})
	return cs.stopErr
}

// Check returns an error naming every manager that has exited.
func (cs *Controllers) Check() error {
	var errs []error
	for _, m := range cs.Managers {
		if exited, err := m.Exited(); exited {
			errs = append(errs, fmt.Errorf("%s exited: %w; log %s:\n%s", m.Provider.Name, err, m.LogFile, tailFile(m.LogFile, 2000)))
		}
	}
	return errors.Join(errs...)
}

// freePort returns a TCP port free on host ("" for all interfaces) now.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeKubeconfig writes a kubeconfig for cfg (TLS client certificate or
// bearer token credentials, as envtest's admin user has).
func writeKubeconfig(path string, cfg *rest.Config) error {
	cluster := &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthorityData: cfg.CAData,
		CertificateAuthority:     cfg.CAFile,
		InsecureSkipTLSVerify:    cfg.Insecure,
	}
	user := &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
		ClientCertificate:     cfg.CertFile,
		ClientKey:             cfg.KeyFile,
		Token:                 cfg.BearerToken,
		Username:              cfg.Username,
		Password:              cfg.Password,
	}
	kc := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"local": cluster},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"admin": user},
		Contexts:       map[string]*clientcmdapi.Context{"local": {Cluster: "local", AuthInfo: "admin"}},
		CurrentContext: "local",
	}
	data, err := clientcmd.Write(kc)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return tail(string(data), n)
}
