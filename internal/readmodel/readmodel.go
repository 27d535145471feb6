// Package readmodel keeps, per replica, what the API reads most in memory:
// cluster statuses and API tokens. Postgres stays the source of truth.
// Triggers (migration 00020) announce every change to either on the
// lok8s_reads channel; one LISTEN connection per replica drops the changed
// entries, and the next read loads them again from Postgres. The API also
// drops what it changes itself, before answering, so a replica reads its
// own writes at once.
//
// Staleness is bounded: the model pings itself through Postgres every
// PingEvery, and serves from memory only while its latest ping came back
// within MaxLag of being sent (notifications arrive in commit order, so
// every change committed before that ping has been applied). When the
// connection is down or lagging, every read goes to Postgres; when it comes
// back, everything held is dropped, since announcements may have been lost.
package readmodel

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"lok8s.dev/provisioner/internal/store"
)

// Channel is the NOTIFY channel migration 00020's triggers announce on.
const Channel = "lok8s_reads"

// Defaults of Model's settings.
const (
	DefaultPingEvery  = 200 * time.Millisecond
	DefaultMaxLag     = time.Second
	DefaultMaxEntries = 100_000
)

// ClusterKey names a cached rendering of a cluster: the tenant's cluster
// name, as an admin (Raw: error texts as they are) or a tenant sees it.
type ClusterKey struct {
	Tenant uuid.UUID
	Name   string
	Raw    bool
}

// Token is a cached API token: who it is, and until when.
type Token struct {
	Principal store.Principal
	ExpiresAt *time.Time
	// Touched is when this replica last recorded the token's use (Unix
	// nanoseconds), shared by every copy.
	Touched *atomic.Int64
}

// Model is one replica's read model.
type Model struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	// PingEvery and MaxLag bound staleness (see the package doc); set
	// before Run.
	PingEvery, MaxLag time.Duration

	// Statuses holds GET /v1/clusters/{name}/status bodies.
	Statuses *Cache[ClusterKey, []byte]
	// Tokens holds API tokens by their SHA-256 hash.
	Tokens *Cache[string, Token]

	nonce string

	mu        sync.Mutex
	connected bool
	echoSent  time.Time // send time of the latest own ping heard back
}

// New returns a model reading pool's database once Run runs; until then
// (and whenever it is not fresh) every read goes to Postgres.
func New(pool *pgxpool.Pool, logger *slog.Logger) *Model {
	m := &Model{pool: pool, logger: logger, PingEvery: DefaultPingEvery, MaxLag: DefaultMaxLag}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	m.nonce = hex.EncodeToString(b)
	m.Statuses = newCache[ClusterKey, []byte](m.Fresh, DefaultMaxEntries)
	m.Tokens = newCache[string, Token](m.Fresh, DefaultMaxEntries)
	return m
}

// Fresh reports whether memory may be served: listening, and the latest
// ping heard back was sent within MaxLag.
func (m *Model) Fresh() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.connected && time.Since(m.echoSent) < m.MaxLag
}

// InvalidateCluster drops the tenant's cluster name (both renderings).
func (m *Model) InvalidateCluster(tenant uuid.UUID, name string) {
	m.Statuses.Invalidate(ClusterKey{Tenant: tenant, Name: name})
	m.Statuses.Invalidate(ClusterKey{Tenant: tenant, Name: name, Raw: true})
}

// InvalidateToken drops the token id, whatever its hash.
func (m *Model) InvalidateToken(id uuid.UUID) {
	m.Tokens.InvalidateFunc(func(t Token) bool { return t.Principal.TokenID == id })
}

// Run listens until ctx ends, reconnecting after errors.
func (m *Model) Run(ctx context.Context) error {
	var pinger sync.WaitGroup
	pinger.Go(func() { m.ping(ctx) })
	defer pinger.Wait()
	for {
		err := m.listen(ctx)
		m.setConnected(false)
		if ctx.Err() != nil {
			return nil //nolint:nilerr // ctx ended: stopping is how Run ends
		}
		m.logger.WarnContext(ctx, "read model lost its connection; reading Postgres until it is back", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (m *Model) setConnected(up bool) {
	m.mu.Lock()
	m.connected = up
	m.mu.Unlock()
	// Whatever was held may have missed announcements.
	m.Statuses.Reset()
	m.Tokens.Reset()
}

func (m *Model) listen(ctx context.Context) error {
	pooled, err := m.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	// The connection will LISTEN: take it out of the pool for good.
	conn := pooled.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	m.setConnected(true)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		m.apply(n.Payload)
	}
}

// apply acts on one announcement.
func (m *Model) apply(payload string) {
	kind, rest, _ := strings.Cut(payload, ":")
	switch kind {
	case "c":
		tenant, name, _ := strings.Cut(rest, ":")
		if id, err := uuid.Parse(tenant); err == nil {
			m.InvalidateCluster(id, name)
			return
		}
	case "t":
		if hash, err := hex.DecodeString(rest); err == nil {
			m.Tokens.Invalidate(string(hash))
			return
		}
	case "p":
		nonce, sent, _ := strings.Cut(rest, ":")
		if nonce != m.nonce {
			return // another replica's
		}
		if ns, err := strconv.ParseInt(sent, 10, 64); err == nil {
			m.mu.Lock()
			if t := time.Unix(0, ns); t.After(m.echoSent) {
				m.echoSent = t
			}
			m.mu.Unlock()
			return
		}
	}
	// Not understood: drop everything rather than keep what it changed.
	m.logger.Warn("read model: unknown announcement; dropping what it holds", "payload", payload)
	m.Statuses.Reset()
	m.Tokens.Reset()
}

// ping announces a ping of this model's own every PingEvery.
func (m *Model) ping(ctx context.Context) {
	t := time.NewTicker(m.PingEvery)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, m.MaxLag)
		payload := "p:" + m.nonce + ":" + strconv.FormatInt(time.Now().UnixNano(), 10)
		if _, err := m.pool.Exec(pctx, "SELECT pg_notify($1, $2)", Channel, payload); err != nil && ctx.Err() == nil {
			m.logger.DebugContext(ctx, "read model ping failed", "error", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
