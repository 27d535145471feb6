package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/testenv"
)

// TestShutdownWithAnOpenStream: SIGTERM to the real server while an event
// stream is open (as every dashboard tab keeps one) ends the stream at
// once, stops HTTP and the queue, waits for the watchers and the LISTEN
// hub, and exits 0 within a few seconds, not after the 30 s budget.
func TestShutdownWithAnOpenStream(t *testing.T) {
	t.Parallel()
	env := testenv.Shared(t)
	kubeconfig := filepath.Join(t.TempDir(), "mgmt.yaml")
	if err := os.WriteFile(kubeconfig, env.Kubeconfig(), 0o600); err != nil {
		t.Fatal(err)
	}
	adminToken := "admin-token-" + randomName("") + "-padding-padding"
	cmd := exec.Command(serverBinary(t), "serve")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbtest.New(t), "LOK8S_ADDR=127.0.0.1:0", "LOK8S_ADMIN_TOKEN="+adminToken,
		"LOK8S_ENCRYPTION_KEY="+seal.NewKey(), "LOK8S_MGMT_KUBECONFIG="+kubeconfig, "LOK8S_LOG_FORMAT=json", "LOK8S_WORKERS=2")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var mu sync.Mutex
	var logs bytes.Buffer
	addr := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			logs.Write(append(sc.Bytes(), '\n'))
			mu.Unlock()
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addr <- line.Addr
			}
		}
	}()
	var url string
	select {
	case a := <-addr:
		url = "http://" + a
	case <-time.After(60 * time.Second):
		t.Fatal("the server did not start")
	}

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
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { <-scanned; exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			mu.Lock()
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
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
	mu.Lock()
	defer mu.Unlock()
	out := logs.String()
	if took > 5*time.Second || !strings.Contains(out, `"msg":"stopped"`) || strings.Contains(out, "deadline exceeded") {
		t.Fatalf("shutdown took %s; logs:\n%s", took, out)
	}
	t.Logf("stopped in %s", took.Round(time.Millisecond))
}
