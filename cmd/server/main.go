// Command server runs the lok8s provisioning service: the HTTP API and the
// River workers that provision clusters through Cluster API.
//
//	server [serve]      migrate the database, then serve (the default)
//	server migrate      migrate the database and exit
//	server healthcheck  exit 0 if the server at LOK8S_ADDR is ready (for containers)
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	provisioner "lok8s.dev/provisioner"
	"lok8s.dev/provisioner/internal/api"
	"lok8s.dev/provisioner/internal/jobs"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, nil); err != nil {
		fmt.Fprintln(os.Stderr, "lok8s:", err)
		os.Exit(1)
	}
}

// shutdownTimeout bounds how long in-flight requests and jobs may take to
// finish after SIGTERM.
const shutdownTimeout = 30 * time.Second

// run is the whole program; ready, when not nil, receives the address the
// server listens on (tests start it on :0).
func run(ctx context.Context, args []string, getenv func(string) string, ready chan<- string) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "serve", "migrate":
	case "healthcheck":
		return healthcheck(ctx, or(getenv("LOK8S_ADDR"), ":8080"))
	default:
		return fmt.Errorf("unknown command %q: use serve, migrate or healthcheck", cmd)
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	logger := newLogger(cfg)
	logger.Info("starting", "command", cmd, "config", cfg)

	pool, err := store.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := store.Migrate(ctx, pool, logger); err != nil {
		return err
	}
	if cmd == "migrate" {
		logger.Info("database migrated")
		return nil
	}
	return serve(ctx, cfg, logger, store.New(pool, logger), ready)
}

func serve(ctx context.Context, cfg config, logger *slog.Logger, st *store.Store, ready chan<- string) error {
	keyring, err := seal.NewKeyring(cfg.EncryptionKey, cfg.OldKeys...)
	if err != nil {
		return err
	}
	if _, err := st.EnsureAdminToken(ctx, "admin", api.HashToken(cfg.AdminToken)); err != nil {
		return err
	}
	pipeline := jobs.NewPipeline()
	queue, err := jobs.NewQueue(st.Pool(), jobs.Config{Store: st, Logger: logger, Pipeline: pipeline, Workers: cfg.Workers})
	if err != nil {
		return err
	}
	registry := mgmt.Registry{DefaultKubeconfig: cfg.MgmtKubeconfig, KubeconfigDir: cfg.KubeconfigDir}
	handler, err := api.New(api.Config{
		Store: st, Keyring: keyring, Logger: logger,
		Enqueue: queue.Enqueue, CancelJob: queue.CancelJob, StepNames: pipeline.StepNames,
		ManagementClusterKnown: registry.Known, OpenAPI: provisioner.OpenAPI,
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	if err := queue.Start(ctx); err != nil {
		return err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String())
	if ready != nil {
		ready <- ln.Addr().String()
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down: finishing in-flight requests and jobs")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	httpErr := srv.Shutdown(shutdownCtx)
	queueErr := queue.Stop(shutdownCtx)
	if err := errors.Join(httpErr, queueErr); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// healthcheck asks the server listening on addr whether it is ready.
func healthcheck(ctx context.Context, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("LOK8S_ADDR %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /readyz answered %s", resp.Status)
	}
	return nil
}

func newLogger(cfg config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}
