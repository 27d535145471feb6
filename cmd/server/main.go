// Command server runs the lok8s provisioning service: the HTTP API and the
// River workers that provision clusters through Cluster API.
//
//	server [serve]      migrate the database, then serve (the default)
//	server migrate      migrate the database and exit
//	server healthcheck  exit 0 if the server at LOK8S_ADDR is ready (for containers)
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"lok8s.dev/provisioner/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, nil); err != nil {
		fmt.Fprintln(os.Stderr, "lok8s:", err)
		os.Exit(1)
	}
}

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
		return healthcheck(ctx, or(getenv("LOK8S_ADDR"), app.DefaultAddr))
	default:
		return fmt.Errorf("unknown command %q: use serve, migrate or healthcheck", cmd)
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	logger := newLogger(cfg)
	logger.Info("starting", "command", cmd, "config", cfg)
	if cmd == "serve" {
		limit, source := applySoftMemoryLimit(getenv)
		logger.Info("soft memory limit", "bytes", limit, "from", source)
	}
	appCfg := cfg.Config
	appCfg.Logger = logger
	if cmd == "migrate" {
		if err := app.Migrate(ctx, appCfg); err != nil {
			return err
		}
		logger.Info("database migrated")
		return nil
	}
	return app.Serve(ctx, appCfg, ready)
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
