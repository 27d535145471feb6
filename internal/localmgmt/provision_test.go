package localmgmt_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/app"
	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/testenv"
)

// TestProvisionThroughTheAPIWithCAPIControllers is the deepest test: the
// whole service, through its HTTP API, provisions examples/dev.yaml on a
// local management cluster where Cluster API's own controllers (built from
// the module proxy) do the work; no test code plays CAPI's part. The
// cluster goes Pending → Provisioning → Provisioned, its kubeconfig reaches
// the simulated workload API server, and DELETE removes it.
//
// Addons are not part of it: the simulated API server has no /version and
// no server-side apply, which Helm needs (internal/e2e tests addons
// against envtest instead).
func TestProvisionThroughTheAPIWithCAPIControllers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	mc, root := startLocal(ctx, t, t.TempDir())

	// The templates plus the development-only provider, as hack/dev.sh does.
	templates := t.TempDir()
	testenv.CopyTree(t, filepath.Join(root, "templates"), templates)
	testenv.CopyTree(t, filepath.Join(root, "hack", "dev", "providers"), filepath.Join(templates, "providers"))

	key, _ := seal.ParseKey(seal.NewKey())
	admin := "admin-token-for-the-local-management-test"
	serveCtx, stopService := context.WithCancel(ctx)
	ready := make(chan string, 1)
	served := make(chan error, 1)
	go func() {
		served <- app.Serve(serveCtx, app.Config{
			Addr: "127.0.0.1:0", DatabaseURL: dbtest.New(t), AdminToken: admin, EncryptionKey: key,
			MgmtKubeconfig: mc.Kubeconfig, TemplatesDir: templates, Workers: 4,
			CheckInterval: time.Second, ProvisionTimeout: 8 * time.Minute, ShutdownTimeout: 10 * time.Second,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}, ready)
	}()
	var url string
	select {
	case addr := <-ready:
		url = "http://" + addr
	case err := <-served:
		t.Fatalf("service: %v", err)
	}
	defer func() {
		stopService()
		if err := <-served; err != nil {
			t.Errorf("service stopped with: %v", err)
		}
	}()

	call := func(method, path, contentType string, body []byte) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, url+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+admin)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, data
	}
	status := func() map[string]any {
		t.Helper()
		code, body := call(http.MethodGet, "/v1/clusters/dev/status", "", nil)
		if code != http.StatusOK {
			t.Fatalf("status: %d %s", code, body)
		}
		var st map[string]any
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		return st
	}

	if code, body := call(http.MethodPut, "/v1/credentials/dev-credentials", "application/json", []byte(`{"provider":"inmemory"}`)); code != http.StatusCreated {
		t.Fatalf("credential: %d %s", code, body)
	}
	spec, err := os.ReadFile(filepath.Join(root, "examples", "dev.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if code, body := call(http.MethodPost, "/v1/clusters", "application/yaml", spec); code != http.StatusAccepted {
		t.Fatalf("submit: %d %s", code, body)
	}

	start := time.Now()
	phases := []string{}
	var st map[string]any
	for {
		st = status()
		if p := st["phase"].(string); len(phases) == 0 || phases[len(phases)-1] != p {
			phases = append(phases, p)
			t.Logf("%s after %s", p, time.Since(start).Round(time.Second))
		}
		if st["phase"] == "Provisioned" || st["phase"] == "Failed" || ctx.Err() != nil || time.Since(start) > 8*time.Minute {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if st["phase"] != "Provisioned" {
		raw, _ := json.MarshalIndent(st, "", "  ")
		t.Fatalf("not provisioned after %s (phases %v):\n%s", time.Since(start).Round(time.Second), phases, raw)
	}
	if strings.Join(phases, ",") != "Pending,Provisioning,Provisioned" && strings.Join(phases, ",") != "Provisioning,Provisioned" {
		t.Errorf("phases %v", phases)
	}
	if st["capiPhase"] != "Provisioned" {
		t.Errorf("CAPI phase %v", st["capiPhase"])
	}

	// The kubeconfig reaches the simulated workload API server.
	code, kc := call(http.MethodGet, "/v1/clusters/dev/kubeconfig", "", nil)
	if code != http.StatusOK {
		t.Fatalf("kubeconfig: %d %s", code, kc)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil || len(nss.Items) == 0 {
		t.Fatalf("workload API server: %v (%d namespaces)", err, len(nss.Items))
	}

	// DELETE: CAPI's controllers tear it down and the name is free.
	if code, body := call(http.MethodDelete, "/v1/clusters/dev", "", nil); code != http.StatusAccepted {
		t.Fatalf("delete: %d %s", code, body)
	}
	deadline := time.Now().Add(4 * time.Minute)
	for st = status(); st["phase"] != "Deleted" && st["phase"] != "Failed" && time.Now().Before(deadline); st = status() {
		time.Sleep(time.Second)
	}
	if st["phase"] != "Deleted" {
		raw, _ := json.MarshalIndent(st, "", "  ")
		t.Fatalf("not deleted:\n%s", raw)
	}
	kcfg, err := clientcmd.BuildConfigFromFlags("", mc.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(kcfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	probe := &unstructured.Unstructured{}
	probe.SetGroupVersionKind(mgmt.ClusterGVK)
	if err := c.Get(ctx, client.ObjectKey{Namespace: "lok8s-admin", Name: "dev"}, probe); err == nil {
		t.Fatal("the CAPI Cluster still exists after Deleted")
	}
	t.Logf("provisioned and deleted in %s", time.Since(start).Round(time.Second))
}
