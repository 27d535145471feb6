package e2e

import (
	"context"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/testenv"
)

// TestShutdownWithAnOpenStream: SIGTERM to the real server while an event
// stream is open (as every dashboard tab keeps one) ends the stream at
// once, stops HTTP and the queue, waits for the watchers and the change
// feed, and exits 0 within a few seconds, not after the 30 s budget.
func TestShutdownWithAnOpenStream(t *testing.T) {
	t.Parallel()
	env := testenv.Shared(t)
	kubeconfig := kubeconfigFile(t, env)
	adminToken := newAdminToken()
	server := startProcess(t, "DATABASE_URL="+dbtest.New(t), "LOK8S_ADMIN_TOKEN="+adminToken,
		"LOK8S_ENCRYPTION_KEY="+seal.NewKey(), "LOK8S_MGMT_KUBECONFIG="+kubeconfig, "LOK8S_WORKERS=2")
	url := server.url

	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req) //nolint:bodyclose // closed by the deferred Close below; a goroutine reads the stream until it ends
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("open stream: %s", resp.Status)
	}
	first := make([]byte, 64)
	if _, err := resp.Body.Read(first); err != nil {
		t.Fatal(err)
	}
	streamEnded := make(chan time.Time, 1)
	go func() {
		buf := make([]byte, 1024)
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				streamEnded <- time.Now()
				return
			}
		}
	}()

	start := time.Now()
	if err := server.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- server.wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, server.log())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not exit within 10s of SIGTERM with a stream open")
	}
	took := time.Since(start)
	select {
	case at := <-streamEnded:
		if at.Sub(start) > 5*time.Second {
			t.Errorf("the stream ended %s after SIGTERM", at.Sub(start))
		}
	case <-time.After(time.Second):
		t.Error("the stream did not end")
	}
	out := server.log()
	if took > 5*time.Second || !strings.Contains(out, `"msg":"stopped"`) || strings.Contains(out, "deadline exceeded") {
		t.Fatalf("shutdown took %s; logs:\n%s", took, out)
	}
	t.Logf("stopped in %s", took.Round(time.Millisecond))
}
