package addons_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"lok8s.dev/provisioner/internal/addons"
	"lok8s.dev/provisioner/internal/addons/addonstest"
	"lok8s.dev/provisioner/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	repoOnce sync.Once
	theRepo  *addonstest.Repo
	repoErr  error
)

// testRepo packages the test charts once per test binary:
// probe 0.1.0 and 0.2.0, probe-alt 1.0.0.
func testRepo(t *testing.T) *addonstest.Repo {
	t.Helper()
	repoOnce.Do(func() {
		// Not t.TempDir: the repository outlives the test that made it.
		dir, err := os.MkdirTemp("", "addons-charts-")
		if err != nil {
			repoErr = err
			return
		}
		theRepo, repoErr = addonstest.Serve(dir,
			addonstest.Chart{Dir: filepath.Join("testdata", "charts", "probe"), Version: "0.1.0"},
			addonstest.Chart{Dir: filepath.Join("testdata", "charts", "probe"), Version: "0.2.0"},
			addonstest.Chart{Dir: filepath.Join("testdata", "charts", "probe-alt"), Version: "1.0.0"})
	})
	if repoErr != nil {
		t.Fatalf("test chart repository: %v", repoErr)
	}
	return theRepo
}

// testCatalog is a catalogue of three add-ons installed into ns:
//
//	net   (order 10) probe 0.1.0
//	cloud (order 20) hetzner: probe-alt 1.0.0 with a Secret; aws: probe 0.1.0
//	extra (order 30) probe 0.1.0
func testCatalog(t *testing.T, repoURL, ns string) *addons.Catalog {
	t.Helper()
	files := fstest.MapFS{
		"net.yaml": {Data: []byte(fmt.Sprintf(`
name: net
order: 10
namespace: %[2]s
chart: {repository: %[1]s, name: probe, version: 0.1.0}
values:
  message: addon-default
  layer: addon
  nested: {addon: 1, provider: 1, operator: 1, cluster: 1}
  list: [addon]
providers:
  hetzner:
    values:
      layer: provider
      nested: {provider: 2, operator: 2, cluster: 2}
      list: [provider]
      host: ${API_SERVER_HOST}
      port: ${API_SERVER_PORT}
`, repoURL, ns))},
		"cloud.yaml": {Data: []byte(fmt.Sprintf(`
name: cloud
order: 20
namespace: %[2]s
providers:
  hetzner:
    chart: {repository: %[1]s, name: probe-alt, version: 1.0.0}
    values: {network: "${HCLOUD_NETWORK}"}
    secrets:
      - name: cloud-credentials
        data:
          token: {credential: hcloudToken}
          network: {variable: HCLOUD_NETWORK}
  aws:
    chart: {repository: %[1]s, name: probe, version: 0.1.0}
`, repoURL, ns))},
		"extra.yaml": {Data: []byte(fmt.Sprintf(`
name: extra
order: 30
namespace: %[2]s
chart: {repository: %[1]s, name: probe, version: 0.1.0}
`, repoURL, ns))},
	}
	c, err := addons.LoadCatalog(files)
	if err != nil {
		t.Fatalf("LoadCatalog: %v", err)
	}
	return c
}

func newInstaller(t *testing.T, timeout time.Duration) *addons.Installer {
	t.Helper()
	inst, err := addons.NewInstaller(addons.Config{CacheDir: t.TempDir(), Timeout: timeout, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	t.Cleanup(cancel)
	return c
}

// hasAll reports whether s contains every one of subs.
func hasAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// testLogger logs through t.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
