package e2e

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestConnectionsBeyondTheCapWait: with MaxConns 3, three connections
// that send nothing hold every slot; a fourth client is not served (it
// waits in the kernel's accept queue, costing the server nothing) until
// one of them closes, then it is. Keep-alive connections left idle make
// room for a new client at once (the idlest is closed).
func TestConnectionsBeyondTheCapWait(t *testing.T) {
	t.Parallel()
	const maxConns = 3
	s := startService(t, options{maxConns: maxConns, maxUnauthenticatedConns: 100})
	addr := strings.TrimPrefix(s.url, "http://")
	healthz := func(c *http.Client) error {
		resp, err := c.Get(s.url + "/healthz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	// Every connection the harness made has gone idle: take the slots
	// with connections working nothing yet (no request: never idle).
	var held []net.Conn
	for range maxConns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		held = append(held, c)
		time.Sleep(50 * time.Millisecond) // accepted in turn, each closing an idle one
	}
	answered := make(chan error, 1)
	go func() {
		answered <- healthz(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second})
	}()
	select {
	case err := <-answered:
		t.Fatalf("a connection beyond the cap of %d was served while every slot was held (err %v)", maxConns, err)
	case <-time.After(time.Second):
	}
	_ = held[0].Close()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("the waiting client: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting client was not served after a slot was freed")
	}
	for _, c := range held[1:] {
		_ = c.Close()
	}

	// Keep-alive clients holding every slot while idle do not starve a
	// new one.
	for range maxConns {
		if err := healthz(&http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if err := healthz(&http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}); err != nil {
		t.Fatalf("a new client beside %d idle keep-alive connections: %v", maxConns, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("a new client beside idle keep-alive connections waited %v", took)
	}
}
