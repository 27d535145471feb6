package connguard

import (
	"net"
	"net/http"
	"testing"
)

func TestGuard(t *testing.T) {
	t.Parallel()
	g := New(2)
	pipe := func() net.Conn {
		a, b := net.Pipe()
		t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		return a
	}
	c1, c2, c3 := pipe(), pipe(), pipe()
	g.ConnState(c1, http.StateNew)
	g.ConnState(c2, http.StateNew)
	if n := g.Unauthenticated(); n != 2 {
		t.Fatalf("counted %d", n)
	}
	// A request on c1 authenticates: it leaves the count, so c3 fits.
	Authenticated(g.ConnContext(t.Context(), c1))
	g.ConnState(c3, http.StateNew)
	if n := g.Unauthenticated(); n != 2 {
		t.Fatalf("after c1 authenticated and c3 came: %d", n)
	}
	// A fourth while two wait is closed.
	c4 := pipe()
	g.ConnState(c4, http.StateNew)
	if _, err := c4.Write([]byte("x")); err == nil {
		t.Fatal("the connection over the bound was not closed")
	}
	g.ConnState(c2, http.StateClosed)
	g.ConnState(c3, http.StateHijacked)
	if n := g.Unauthenticated(); n != 0 {
		t.Fatalf("after close and hijack: %d", n)
	}
	Authenticated(t.Context()) // no guard: nothing happens
}
