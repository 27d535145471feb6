// Package store persists the service's state in Postgres with pgx: tenants
// and their API tokens, clusters, operations and their steps, sealed
// credentials, idempotency keys and the audit log. Every row belongs to a
// tenant and every query is scoped by one. SQL and pgx types stay here;
// callers see the domain types below and the sentinel errors.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"lok8s.dev/provisioner/migrations"
)

// Sentinel errors; wrap them with context and test with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	// ErrPlacementTaken: the management cluster's namespace belongs to
	// another tenant.
	ErrPlacementTaken = errors.New("the namespace belongs to another tenant")
	// ErrIdempotencyMismatch means an Idempotency-Key was reused for a different request.
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
)

// Store is the service's Postgres store. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
}

// New returns a Store over pool.
func New(pool *pgxpool.Pool, logger *slog.Logger) *Store {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{pool: pool, logger: logger}
}

// Pool returns the underlying pool, for River's driver.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// DefaultMaxConns is the pool size unless the URL sets pool_max_conns.
const DefaultMaxConns = 20

// OneConnection opens a pool of one connection with pool's settings, for a
// reader that must not queue behind pool's other users (the change feed).
func OneConnection(ctx context.Context, pool *pgxpool.Pool) (*pgxpool.Pool, error) {
	cfg := pool.Config()
	cfg.MaxConns = 1
	one, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open a one-connection pool: %w", err)
	}
	return one, nil
}

// PoolConfig is the configuration Connect opens a pool to url with.
func PoolConfig(url string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	// pgxpool's default (the larger of 4 and the CPU count) starves a burst
	// of submissions; pool_max_conns in the URL still wins.
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	cfg.AfterConnect = registerUUIDs
	return cfg, nil
}

// Connect opens a pool to url and checks that the database answers.
func Connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := PoolConfig(url)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("reach database %s@%s:%d/%s: %w", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	return pool, nil
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Migrate applies the service's migrations and River's, holding an advisory
// lock so concurrent replicas migrate one at a time.
func Migrate(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: acquire connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", LockMigrations); err != nil {
		return fmt.Errorf("migrate: take lock: %w", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", LockMigrations)
	}()

	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	provider, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate: apply service migrations: %w", err)
	}
	for _, r := range results {
		logger.InfoContext(ctx, "applied migration", "source", r.Source.Path, "duration", r.Duration)
	}

	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: logger})
	if err != nil {
		return fmt.Errorf("migrate: river: %w", err)
	}
	res, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return fmt.Errorf("migrate: apply river migrations: %w", err)
	}
	for _, v := range res.Versions {
		logger.InfoContext(ctx, "applied river migration", "version", v.Version)
	}
	return nil
}

// inTx runs fn in a transaction, committing if fn returns nil.
//
// A transaction Postgres aborts to break a deadlock, or for a
// serialization failure, is run again, up to txAttempts times in all. The
// events trigger raises the latter when an event would sort before one of
// its cluster's that a later transaction already committed (migration
// 00017: the stream is ordered by transaction id, handed out at a
// transaction's first write, which may precede a wait for a row): run
// again, the transaction gets a later id. fn must therefore do nothing
// outside tx that a rerun would repeat.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.pool, fn)
		if err == nil || attempt == txAttempts || !abortedByPostgres(err) || ctx.Err() != nil {
			return err
		}
		s.logger.WarnContext(ctx, "transaction aborted by Postgres; running it again", "attempt", attempt, "error", err)
	}
}

// txAttempts bounds the runs of one inTx transaction.
const txAttempts = 3

// abortedByPostgres reports whether err is Postgres breaking a deadlock or
// a serialization conflict: the transaction may simply be run again.
func abortedByPostgres(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// exec runs one statement in a transaction of its own through inTx: for
// statements that fire the event triggers, so they are run again the same way.
func (s *Store) exec(ctx context.Context, sql string, args ...any) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, sql, args...)
		return err
	})
}

// isUniqueViolation reports whether err is a unique violation of constraint
// (any constraint when constraint is empty).
func isUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && (constraint == "" || pgErr.ConstraintName == constraint)
}

// notFound maps pgx's no-rows error to ErrNotFound, naming what was missing.
func notFound(err error, what string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// IsUnavailable reports whether err says the database could not be
// reached (refused, reset, timed out, shutting down) rather than that it
// refused a statement: the request may succeed once it is back.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &connectErr), errors.As(err, &netErr), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return true
	case errors.As(err, &pgErr):
		// Class 08: connection exception; 57P01-03: the server is shutting
		// down or cannot accept connections.
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03"
	}
	return pgconn.Timeout(err) || strings.Contains(err.Error(), "conn closed")
}
