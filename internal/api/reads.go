package api

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"lok8s.dev/provisioner/internal/readmodel"
	"lok8s.dev/provisioner/internal/store"
)

// tokenTouchEvery is how often a token's use is recorded (last_used_at).
const tokenTouchEvery = time.Minute

// authenticateToken resolves a token's hash to its principal: from the
// read model when it holds it (expiry checked on every use; revocation is
// announced), else from Postgres.
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
