package e2e

import (
	"context"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/testenv"
)

// TestAPIOnlyReplica: the README's API-only replica (LOK8S_WORKERS=0)
// starts, takes a spec and enqueues its job without working it; a replica
// with workers on the same database provisions it; the API-only one stops
// cleanly on SIGTERM.
func TestAPIOnlyReplica(t *testing.T) {
	t.Parallel()
	env := testenv.Shared(t)
	dbURL := dbtest.New(t)
	adminToken := newAdminToken()
	key := seal.NewKey()
	kubeconfig := kubeconfigFile(t, env)
	api := startProcess(t, "DATABASE_URL="+dbURL, "LOK8S_ADMIN_TOKEN="+adminToken,
		"LOK8S_ENCRYPTION_KEY="+key, "LOK8S_MGMT_KUBECONFIG="+kubeconfig, "LOK8S_WORKERS=0")
	viaAPI := api.tenant(t, env, adminToken)
	viaAPI.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	viaAPI.submit(seedSpecWithoutAddons(t))

	// Nobody works the job: it stays available and no step starts.
	db, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		var state string
		if err := db.QueryRow(context.Background(), `SELECT state FROM river_job WHERE kind = 'provision'`).Scan(&state); err != nil {
			t.Fatal(err)
		}
		st := viaAPI.mustDo(http.MethodGet, "/v1/clusters/prod/status", "", "", nil, http.StatusOK)
		if state != "available" || stepState(st, "detect") != "pending" {
			t.Fatalf("an API-only replica worked the job: job %s, detect %s", state, stepState(st, "detect"))
		}
	}

	// A replica with workers picks it up.
	workers := startService(t, options{dbURL: dbURL, adminToken: adminToken, encryptionKey: key,
		tenant: viaAPI.tenant, token: viaAPI.token})
	workers.waitStatus("prod", 60*time.Second, func(st map[string]any) bool {
		return stepState(st, "control-plane-initialized") == "running"
	})

	if err := api.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- api.wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, api.log())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the API-only replica did not exit within 10s of SIGTERM:\n%s", api.log())
	}
}
