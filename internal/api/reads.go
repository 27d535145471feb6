package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	"lok8s.dev/provisioner/internal/readmodel"
	"lok8s.dev/provisioner/internal/store"
)

// statusBody is the request's cluster status as it is sent: from the read
// model when it holds it, else rendered from Postgres (and kept).
func (s *Server) statusBody(r *http.Request) ([]byte, error) {
	load := func() ([]byte, bool, error) {
		view, err := s.loadStatus(r)
		if err != nil {
			return nil, false, err
		}
		var buf bytes.Buffer // as writeJSON encodes: same bytes from memory as from Postgres
		if err := json.NewEncoder(&buf).Encode(view); err != nil {
			return nil, false, fmt.Errorf("encode status: %w", err)
		}
		return buf.Bytes(), true, nil
	}
	if s.Reads == nil {
		body, _, err := load()
		return body, err
	}
	key := readmodel.ClusterKey{Tenant: principal(r.Context()).TenantID, Name: chi.URLParam(r, "name"), Raw: seesInternals(r)}
	return s.Reads.Statuses.Load(key, load)
}

// clusterChanged drops what the read model holds of the caller's cluster
// name: called right after a write, before answering, so this replica's
// next read of it goes to Postgres (read-your-writes); other replicas hear
// of the change through Postgres.
func (s *Server) clusterChanged(r *http.Request, name string) {
	if s.Reads != nil {
		s.Reads.InvalidateCluster(principal(r.Context()).TenantID, name)
	}
}

// tokenTouchEvery is how often a token's use is recorded (last_used_at).
const tokenTouchEvery = time.Minute

// authenticateToken resolves a token's hash to its principal: from the
// read model when it holds it (expiry checked on every use; the change feed
// reports revocations), else from Postgres.
func (s *Server) authenticateToken(ctx context.Context, hash []byte) (store.Principal, error) {
	if s.Reads == nil {
		return s.store.Authenticate(ctx, hash)
	}
	tok, err := s.Reads.Tokens.Load(string(hash), func() (readmodel.Token, bool, error) {
		p, expires, err := s.store.AuthenticateToken(ctx, hash) // records the use
		touched := &atomic.Int64{}
		touched.Store(time.Now().UnixNano())
		return readmodel.Token{Principal: p, ExpiresAt: expires, Touched: touched}, err == nil, err
	})
	if err != nil {
		return store.Principal{}, err
	}
	now := time.Now()
	if tok.ExpiresAt != nil && !now.Before(*tok.ExpiresAt) {
		s.Reads.Tokens.Invalidate(string(hash))
		return store.Principal{}, fmt.Errorf("token expired: %w", store.ErrNotFound)
	}
	if last := tok.Touched.Load(); now.UnixNano()-last >= int64(tokenTouchEvery) && tok.Touched.CompareAndSwap(last, now.UnixNano()) {
		if err := s.store.TouchToken(ctx, tok.Principal.TokenID); err != nil {
			return store.Principal{}, err
		}
	}
	return tok.Principal, nil
}
