package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"lok8s.dev/provisioner/internal/connguard"
)

// TestConnectionsBeyondTheCapAreRefused: with MaxConns 3, three
// connections that send nothing hold every slot; a fourth client is
// answered at once with 503 overloaded, Retry-After and the API's problem
// (not left waiting in the kernel's accept queue), and once one of them
// closes, a client is served. Keep-alive connections left idle a second
// (connguard.DefaultMinIdle) make room for a new client at once (the
// idlest is closed).
func TestConnectionsBeyondTheCapAreRefused(t *testing.T) {
	t.Parallel()
	const maxConns = 3
	s := startService(t, options{maxConns: maxConns, maxUnauthenticatedConns: 100})
	addr := strings.TrimPrefix(s.url, "http://")
	// reply is what healthz got: the status, headers and body.
	type reply struct {
		StatusCode int
		Header     http.Header
	}
	healthz := func(c *http.Client) (reply, []byte, error) {
		resp, err := c.Get(s.url + "/healthz")
		if err != nil {
			return reply{}, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return reply{resp.StatusCode, resp.Header}, body, err
	}
	oneShot := func() *http.Client {
		return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	}
	// Every connection the harness made has idled past MinIdle by the
	// time these come: take the slots with connections working nothing
	// yet (no request: never idle).
	time.Sleep(connguard.DefaultMinIdle + 100*time.Millisecond)
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
	start := time.Now()
	resp, body, err := healthz(oneShot())
	took := time.Since(start)
	if err != nil {
		t.Fatalf("a client beyond the cap of %d: %v after %v; want 503 at once", maxConns, err, took)
	}
	var p struct {
		Type   string
		Title  string
		Status int
	}
	_ = json.Unmarshal(body, &p)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" ||
		resp.Header.Get("Content-Type") != "application/problem+json" ||
		p.Type != "https://lok8s.dev/problems/overloaded" || p.Title != "Overloaded" || p.Status != http.StatusServiceUnavailable {
		t.Fatalf("a client beyond the cap of %d: %d, Retry-After %q, %s; want 503 overloaded, Retry-After 1",
			maxConns, resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if took > 2*time.Second {
		t.Fatalf("a client beyond the cap waited %v for its 503", took)
	}
	_ = held[0].Close()
	time.Sleep(50 * time.Millisecond) // the server sees it close
	if resp, body, err := healthz(oneShot()); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a client once a slot was freed: %v %s", err, body)
	}
	for _, c := range held[1:] {
		_ = c.Close()
	}

	// Keep-alive clients holding every slot while idle do not shut out a
	// new one once they have idled MinIdle.
	for range maxConns {
		if _, _, err := healthz(&http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(connguard.DefaultMinIdle + 100*time.Millisecond)
	start = time.Now()
	if resp, body, err := healthz(&http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a new client beside %d keep-alive connections idle a second: %v %s", maxConns, err, body)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("a new client beside idle keep-alive connections waited %v", took)
	}
}
