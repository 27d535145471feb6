// Package readmodel keeps, per replica, what the API reads most in memory:
// cluster statuses and API tokens. Postgres stays the source of truth.
// Triggers record every change to either in the change log (migrations
// 00020 and 00080: "c:<tenant>:<cluster>", "t:<token hash>"); the
// replica's change feed (internal/changes) hands the model what was
// committed since its previous look (Apply), which drops the changed
// entries, and the next read loads them again from Postgres. The API also
// drops what it changes itself, before answering, so a replica reads its
// own writes at once.
//
// Staleness is bounded: the model serves from memory only while the
// latest batch it applied covers every change committed up to MaxLag ago
// (Batch.AsOf). While the feed cannot read the change log, every read goes
// to Postgres; when changes may have been missed (Batch.Lost), everything
// held is dropped.
package readmodel

import (
	"encoding/hex"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"lok8s.dev/provisioner/internal/changes"
	"lok8s.dev/provisioner/internal/store"
)

// Defaults of Model's settings.
const (
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
	logger *slog.Logger
	// MaxLag bounds staleness (see the package doc); set before use.
	MaxLag time.Duration

	// Statuses holds GET /v1/clusters/{name}/status bodies.
	Statuses *Cache[ClusterKey, []byte]
	// Tokens holds API tokens by their SHA-256 hash.
	Tokens *Cache[string, Token]

	// asOf is the AsOf of the latest batch applied (Unix nanoseconds;
	// zero before the first).
	asOf atomic.Int64
}

// New returns a model; pass its Apply to the replica's change feed. Until
// the feed's first batch (and whenever it is not fresh) every read goes
// to Postgres.
func New(logger *slog.Logger) *Model {
	m := &Model{logger: logger, MaxLag: DefaultMaxLag}
	m.Statuses = newCache[ClusterKey, []byte](m.Fresh, DefaultMaxEntries)
	m.Tokens = newCache[string, Token](m.Fresh, DefaultMaxEntries)
	return m
}

// Fresh reports whether memory may be served: the latest batch applied
// covers every change committed until less than MaxLag ago.
func (m *Model) Fresh() bool {
	asOf := m.asOf.Load()
	return asOf != 0 && time.Since(time.Unix(0, asOf)) < m.MaxLag
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

// Apply acts on a batch of the change feed: drops what it changed (or
// everything, when changes may have been missed), then counts as fresh as
// of the batch.
func (m *Model) Apply(b changes.Batch) {
	if b.Lost {
		m.Statuses.Reset()
		m.Tokens.Reset()
	}
	for _, k := range b.Keys {
		m.apply(k)
	}
	if asOf := b.AsOf.UnixNano(); asOf > m.asOf.Load() {
		m.asOf.Store(asOf) // the feed applies its batches one at a time
	}
}

// apply acts on one changed key.
func (m *Model) apply(key string) {
	kind, rest, _ := strings.Cut(key, ":")
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
	case "e":
		return // the events hub's
	}
	// Not understood: drop everything rather than keep what it changed.
	m.logger.Warn("read model: unknown change; dropping what it holds", "key", key)
	m.Statuses.Reset()
	m.Tokens.Reset()
}
