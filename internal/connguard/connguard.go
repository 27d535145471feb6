// Package connguard bounds the connections an HTTP server holds: all of
// them (Limiter: beyond a cap, a new connection is answered 503 and
// closed, costing the process no server goroutine), and those that have not yet carried an
// authenticated request (Guard: anonymous clients cannot pin more than
// that many connections, and goroutines, however slowly they send; a
// connection leaves that count when a request on it authenticates, see
// Authenticated, and when it closes).
package connguard

import (
	"context"
	"net"
	"net/http"
	"sync"
)

// Guard counts the unauthenticated connections of one http.Server: set its
// ConnState and ConnContext as the server's.
type Guard struct {
	max    int
	mu     sync.Mutex
	unauth map[net.Conn]struct{}
}

// New returns a Guard that closes a new connection while max others are
// unauthenticated.
func New(max int) *Guard {
	return &Guard{max: max, unauth: map[net.Conn]struct{}{}}
}

// ConnState is the server's ConnState hook.
func (g *Guard) ConnState(c net.Conn, state http.ConnState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch state {
	case http.StateNew:
		if len(g.unauth) >= g.max {
			_ = c.Close() // the server sees the read fail and forgets it
			return
		}
		g.unauth[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(g.unauth, c)
	}
}

// Unauthenticated is how many connections are counted now.
func (g *Guard) Unauthenticated() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.unauth)
}

type markKey struct{}

// ConnContext is the server's ConnContext hook: requests on c can mark it
// authenticated.
func (g *Guard) ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, markKey{}, func() {
		g.mu.Lock()
		delete(g.unauth, c)
		g.mu.Unlock()
	})
}

// Authenticated marks the connection of the request whose context is ctx
// as authenticated; without a Guard it does nothing.
func Authenticated(ctx context.Context) {
	if mark, ok := ctx.Value(markKey{}).(func()); ok {
		mark()
	}
}
