// Package dbtest gives each test its own migrated Postgres database, cloned
// from a template database that is migrated once per migration set (its
// name carries a hash of the migrations), so tests run in parallel against
// a real server without sharing state.
//
// The server is LOK8S_TEST_DATABASE_URL, by default the local one at
// 127.0.0.1:5432 with trust auth (hack/postgres.sh starts one if none answers).
package dbtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"lok8s.dev/provisioner/internal/store"
	"lok8s.dev/provisioner/migrations"
)

// DefaultURL is the server tests use when LOK8S_TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// ServerURL is the Postgres server (any database on it) tests create databases on.
func ServerURL() string {
	if u := os.Getenv("LOK8S_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// New creates a fresh migrated database for t, dropped when t ends, and
// returns its URL.
func New(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		t.Fatalf("dbtest: connect to %s: %v (is Postgres running? hack/postgres.sh starts one)", ServerURL(), err)
	}
	defer admin.Close(ctx)

	tmpl, err := ensureTemplate(ctx, admin)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	name := "lok8s_test_" + randomSuffix()
	if err := createFromTemplate(ctx, admin, name, tmpl); err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, ServerURL())
		if err != nil {
			t.Logf("dbtest: drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("dbtest: drop %s: %v", name, err)
		}
	})
	return withDatabase(ServerURL(), name)
}

// NewPool creates a fresh database for t and returns a pool on it, closed
// when t ends.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.NewWithConfig(context.Background(), PoolConfig(t, New(t)))
	if err != nil {
		t.Fatalf("dbtest: open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// PoolConfig is the service's pool configuration for url (store.PoolConfig:
// the same types sent and read as in production), with pgxpool's default
// size rather than the service's, since many tests run at once.
func PoolConfig(t testing.TB, url string) *pgxpool.Config {
	t.Helper()
	cfg, err := store.PoolConfig(url)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	cfg.MaxConns = max(4, int32(runtime.NumCPU()))
	return cfg
}

func createFromTemplate(ctx context.Context, admin *pgx.Conn, name, tmpl string) error {
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		_, err = admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, tmpl))
		// Another process may still be connected to the template for a moment.
		if err == nil || !strings.Contains(err.Error(), "is being accessed by other users") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("create database %s from %s: %w", name, tmpl, err)
	}
	return nil
}

// ensureTemplate returns the name of the migrated template database,
// creating it under an advisory lock if no earlier run made it.
func ensureTemplate(ctx context.Context, admin *pgx.Conn) (string, error) {
	hash, err := migrationsHash()
	if err != nil {
		return "", err
	}
	tmpl := "lok8s_tmpl_" + hash
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock($1)", store.LockTestTemplate); err != nil {
		return "", fmt.Errorf("lock template: %w", err)
	}
	defer func() {
		_, _ = admin.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", store.LockTestTemplate)
	}()

	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", tmpl).Scan(&exists); err != nil {
		return "", fmt.Errorf("look for template: %w", err)
	}
	if exists {
		return tmpl, nil
	}
	// Build under a temporary name and rename when done, so an interrupted
	// run never leaves a half-migrated template behind under the real name.
	building := tmpl + "_building"
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+building+" WITH (FORCE)"); err != nil {
		return "", fmt.Errorf("drop stale template: %w", err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+building); err != nil {
		return "", fmt.Errorf("create template: %w", err)
	}
	pool, err := store.Connect(ctx, withDatabase(ServerURL(), building))
	if err != nil {
		return "", err
	}
	err = store.Migrate(ctx, pool, slog.New(slog.DiscardHandler))
	pool.Close()
	if err != nil {
		return "", fmt.Errorf("migrate template: %w", err)
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", building, tmpl)); err != nil {
		return "", fmt.Errorf("rename template: %w", err)
	}
	return tmpl, nil
}

// migrationsHash identifies the migration set, River's included (through
// the module version recorded in the build).
func migrationsHash() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		h.Write([]byte(path))
		h.Write(b)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("hash migrations: %w", err)
	}
	h.Write([]byte(riverVersion()))
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func withDatabase(serverURL, db string) string {
	u, err := url.Parse(serverURL)
	if err != nil {
		return serverURL
	}
	u.Path = "/" + db
	return u.String()
}

func randomSuffix() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
