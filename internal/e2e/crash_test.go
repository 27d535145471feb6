package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"k8s.io/client-go/tools/clientcmd"

	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/testenv"
)

var (
	buildOnce   sync.Once
	serverPath  string
	buildOutput []byte
	buildErr    error
)

// serverBinary builds cmd/server once per test binary.
func serverBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lok8s-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		serverPath = filepath.Join(dir, "lok8s-server")
		cmd := exec.Command("go", "build", "-o", serverPath, "lok8s.dev/provisioner/cmd/server")
		buildOutput, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build cmd/server: %v\n%s", buildErr, buildOutput)
	}
	return serverPath
}

// blackholeProxy forwards TCP to target until blackholed; from then on it
// swallows what it receives, so requests through it hang the way they do
// when a network path dies.
type blackholeProxy struct {
	ln     net.Listener
	target string
	dead   atomic.Bool
	// refusing: connections are closed, new ones at once (a server that is down).
	refusing atomic.Bool
	mu       sync.Mutex
	conns    map[net.Conn]bool
}

// refuse makes the proxy act as a server that went down (true: every
// connection is closed, new ones at once) or came back (false).
func (p *blackholeProxy) refuse(down bool) {
	p.refusing.Store(down)
	if !down {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

func newBlackholeProxy(t *testing.T, target string) *blackholeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackholeProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *blackholeProxy) serve(c net.Conn) {
	defer c.Close()
	if p.refusing.Load() {
		return
	}
	p.mu.Lock()
	p.conns[c] = true
	p.mu.Unlock()
	defer func() { p.mu.Lock(); delete(p.conns, c); p.mu.Unlock() }()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst io.Writer, src io.Reader) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if !p.dead.Load() {
					if _, werr := dst.Write(buf[:n]); werr != nil {
						break
					}
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
}

// TestWorkerKilledResumesOnAnother runs provisioning on a real server
// process, kills it with SIGKILL while its job is in the middle of the wait
// step (its request to the management cluster hanging), and starts another
// instance on the same database: River rescues the stuck job, the new
// worker resumes at the saved step (nothing before it runs again, nothing is
// applied twice), and the cluster reaches Provisioned.
func TestWorkerKilledResumesOnAnother(t *testing.T) {
	t.Parallel()
	env := testenv.Shared(t)
	dbURL := dbtest.New(t)
	adminToken := newAdminToken()
	key := seal.NewKey()

	// Instance A reaches the management cluster through a proxy we can cut.
	host, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newBlackholeProxy(t, host.Host)
	kc, err := clientcmd.Load(env.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range kc.Clusters {
		c.Server = "https://" + proxy.ln.Addr().String()
	}
	proxied := filepath.Join(t.TempDir(), "mgmt-via-proxy.yaml")
	if err := clientcmd.WriteToFile(*kc, proxied); err != nil {
		t.Fatal(err)
	}
	a := startProcess(t, "DATABASE_URL="+dbURL, "LOK8S_ADMIN_TOKEN="+adminToken,
		"LOK8S_ENCRYPTION_KEY="+key, "LOK8S_MGMT_KUBECONFIG="+proxied,
		"LOK8S_CHECK_INTERVAL=1s", "LOK8S_WATCHED_CHECK_INTERVAL=1s", "LOK8S_WORKERS=2")

	viaA := a.tenant(t, env, adminToken)
	viaA.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	viaA.submit(seedSpecWithoutAddons(t))
	viaA.waitStatus("prod", 60*time.Second, func(st map[string]any) bool {
		w := stepOf(st, "control-plane-initialized")
		return w != nil && w["state"] == "running" && w["attempts"].(float64) >= 1
	})
	before := resourceVersions(t, viaA, "prod")

	// A's checks read its watcher's cache, which needs no request: take the
	// CAPI Cluster out of the cache (the watcher watches objects labelled
	// lok8s.dev/cluster), so A's next check asks the apiserver.
	setClusterLabel(t, viaA, "prod", false)
	time.Sleep(2 * time.Second) // A's informer hears of it

	// Cut A off from the management cluster: its next check hangs. Kill A
	// once its job has been running for seconds (a check takes
	// milliseconds), i.e. while it is stuck in the middle of the wait step.
	proxy.dead.Store(true)
	db, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var hung bool
		err := db.QueryRow(context.Background(), `
			SELECT EXISTS (SELECT 1 FROM river_job WHERE kind = 'provision' AND state = 'running'
			               AND attempted_at < now() - interval '2 seconds')`).Scan(&hung)
		if err != nil {
			t.Fatal(err)
		}
		if hung {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("instance A's job never hung in the wait step: the test would not show a kill mid-step")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.wait()

	// A's attempt is left running: nobody will finish it but a rescue.
	b := startService(t, options{dbURL: dbURL, adminToken: adminToken, encryptionKey: key,
		tenant: viaA.tenant, token: viaA.token, rescueAfter: 3 * time.Second, jobTimeout: 2 * time.Second})
	b.waitStatus("prod", 90*time.Second, func(st map[string]any) bool {
		return stepOf(st, "control-plane-initialized")["attempts"].(float64) > 1 // B checked
	})
	setClusterLabel(t, b, "prod", true)
	b.playCloud("prod")
	done := b.waitStatus("prod", 60*time.Second, func(st map[string]any) bool {
		return st["phase"] == "Provisioned" || st["phase"] == "Failed"
	})
	if done["phase"] != "Provisioned" {
		t.Fatalf("after the rescue: %v %v", done["phase"], done["message"])
	}
	for _, step := range []string{"detect", "credentials", "render", "apply"} {
		if n := stepOf(done, step)["attempts"].(float64); n != 1 {
			t.Errorf("step %s ran %v times: a resumed job must start at the saved step", step, n)
		}
	}
	var jobErrors string
	if err := b.db.QueryRow(context.Background(), `SELECT coalesce(errors::text, '') FROM river_job WHERE kind = 'provision'`).Scan(&jobErrors); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.ToLower(jobErrors), "stuck") {
		t.Errorf("the job was not rescued as stuck (River errors: %s)", jobErrors)
	}
	after := resourceVersions(t, b, "prod")
	for k, v := range before {
		if after[k] != v && !strings.HasPrefix(k, "Cluster/") {
			t.Errorf("%s changed (%s → %s): applied again", k, v, after[k])
		}
	}
	if len(after) != len(before) {
		t.Errorf("objects before %d, after %d", len(before), len(after))
	}
}

// resourceVersions maps each rendered object to what the service writes
// of it: its generation and a digest of its labels, annotations and spec.
// The status is left out: the cloud stand-in (like CAPI) writes it as the
// cluster comes up, which changes resourceVersion but is no write of ours.
func resourceVersions(t *testing.T, s *service, name string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, o := range s.renderedObjects(name) {
		got := s.get(o.GroupVersionKind(), o.GetNamespace(), o.GetName())
		content := map[string]any{"labels": got.GetLabels(), "annotations": got.GetAnnotations()}
		for k, v := range got.Object {
			if k != "metadata" && k != "status" {
				content[k] = v
			}
		}
		raw, err := json.Marshal(content)
		if err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprintf("%s/%s", got.GetKind(), got.GetName())] = fmt.Sprintf("generation %d, %x", got.GetGeneration(), sha256.Sum256(raw))
	}
	return out
}

// setClusterLabel puts back (or takes off) the lok8s.dev/cluster label of
// the CAPI Cluster name, as the service applies it.
func setClusterLabel(t *testing.T, s *service, name string, on bool) {
	t.Helper()
	cluster := s.get(mgmt.ClusterGVK, s.namespace(), name)
	labels := cluster.GetLabels()
	if on {
		labels[mgmt.LabelCluster] = name
	} else {
		delete(labels, mgmt.LabelCluster)
	}
	cluster.SetLabels(labels)
	if err := s.env.Client.Update(context.Background(), cluster); err != nil {
		t.Fatal(err)
	}
}
