package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lok8s.dev/provisioner/internal/testenv"
)

// process is the real server binary, started by startProcess.
type process struct {
	cmd *exec.Cmd
	url string
	// scanned is closed once the process's log has been read to its end.
	scanned chan struct{}

	mu   sync.Mutex
	logs bytes.Buffer
}

// startProcess runs `lok8s-server serve` with the environment given (on top
// of the test's; LOK8S_ADDR=127.0.0.1:0, JSON logs and the watcher lease
// of its DATABASE_URL, leaseEnv, are set) and waits until it listens. The
// process is killed when the test ends.
func startProcess(t testing.TB, env ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(serverBinary(t), "serve"), scanned: make(chan struct{})}
	// Later values win: env may override the lease's.
	p.cmd.Env = append(append(append(os.Environ(), "LOK8S_ADDR=127.0.0.1:0", "LOK8S_LOG_FORMAT=json"), leaseOf(env)...), env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		defer close(p.scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.Write(append(sc.Bytes(), '\n'))
			p.mu.Unlock()
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addr <- line.Addr
			}
		}
	}()
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-p.scanned:
		_ = p.cmd.Wait()
		t.Fatalf("the server exited at start:\n%s", p.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("the server did not start:\n%s", p.log())
	}
	return p
}

// leaseOf is leaseEnv of the DATABASE_URL in env, if any.
func leaseOf(env []string) []string {
	for _, kv := range env {
		if dbURL, ok := strings.CutPrefix(kv, "DATABASE_URL="); ok {
			return leaseEnv(dbURL)
		}
	}
	return nil
}

// log is what the process has logged so far.
func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// wait waits for the process to exit, its log read to the end.
func (p *process) wait() error {
	<-p.scanned
	return p.cmd.Wait()
}

// tenant makes a fresh tenant through the process's API (with its admin
// token) and returns a service talking to the process as that tenant.
func (p *process) tenant(t *testing.T, env *testenv.Env, adminToken string) *service {
	t.Helper()
	s := &service{t: t, url: p.url, env: env, admin: adminToken,
		client: &http.Client{Transport: validator.RoundTripper(t, nil), Timeout: 30 * time.Second}}
	s.tenant, s.token = s.newTenant("e2e-")
	return s
}

// kubeconfigFile writes env's admin kubeconfig to a file of the test's,
// for LOK8S_MGMT_KUBECONFIG.
func kubeconfigFile(tb testing.TB, env *testenv.Env) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "mgmt.yaml")
	if err := os.WriteFile(path, env.Kubeconfig(), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}
