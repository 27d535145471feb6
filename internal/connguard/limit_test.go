package connguard

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// limitedServer serves handler on a loopback listener limited to max
// connections and returns its URL, the limiter, and the remote addresses
// of the connections the server closed or saw closed, in order.
func limitedServer(t *testing.T, max int, handler http.Handler, minIdle ...time.Duration) (string, *Limiter, func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewLimiter(max)
	if len(minIdle) > 0 {
		l.MinIdle = minIdle[0]
	}
	var mu sync.Mutex
	var closed []string
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, ConnState: func(c net.Conn, s http.ConnState) {
		l.ConnState(c, s)
		if s == http.StateClosed {
			mu.Lock()
			closed = append(closed, c.RemoteAddr().String())
			mu.Unlock()
		}
	}}
	go func() { _ = srv.Serve(l.Listener(ln)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String(), l, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), closed...)
	}
}

// TestLimiterServesAtMostMax: with 6 clients, each on a connection of its
// own, sending a request the handler holds, only 2 (the cap) reach the
// server at once; the others wait until connections close, and all are
// answered in the end.
func TestLimiterServesAtMostMax(t *testing.T) {
	t.Parallel()
	const max, clients = 2, 6
	release := make(chan struct{})
	var working, most atomic.Int32
	url, l, _ := limitedServer(t, max, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := working.Add(1)
		defer working.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		_, _ = io.WriteString(w, "ok")
	}))
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Go(func() {
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
			resp, err := c.Get(url)
			if err != nil {
				errs <- err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for working.Load() < max && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // time for any more to arrive
	if n, open := working.Load(), l.Open(); n != max || open != max {
		t.Fatalf("with %d clients waiting, %d requests are being worked and %d connections open; want %d of each", clients, n, open, max)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a client beyond the cap was not served after the others: %v", err)
	}
	if m := most.Load(); m != max {
		t.Fatalf("at most %d requests worked at once, want %d", m, max)
	}
	if deadline := time.Now().Add(2 * time.Second); true {
		for l.Open() != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if n := l.Open(); n != 0 {
		t.Fatalf("%d slots held after every connection closed", n)
	}
}

// TestLimiterClosesTheIdlestForANewConnection: two keep-alive clients
// hold both slots while idle; a third client is served at once, in the
// slot of the connection idle longest, and a connection working a request
// is never closed for another.
func TestLimiterClosesTheIdlestForANewConnection(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	url, l, closed := limitedServer(t, 2, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			<-hold
		}
		_, _ = io.WriteString(w, "ok")
	}))
	get := func(c *http.Client, path string) (local string, err error) {
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { local = info.Conn.LocalAddr().String() },
		})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return local, resp.Body.Close()
	}
	client := func() *http.Client { return &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second} }
	a, b, c := client(), client(), client()
	first, err := get(a, "/")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if _, err := get(b, "/"); err != nil {
		t.Fatal(err)
	}
	// Both idle now: c is served, in the slot of a's connection.
	start := time.Now()
	if _, err := get(c, "/"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the third client waited %v for two idle connections", took)
	}
	if got := closed(); len(got) != 1 || got[0] != first {
		t.Fatalf("closed %v, want only the idlest, %s", got, first)
	}

	// b and c working requests: a new connection waits, and neither is closed.
	var wg sync.WaitGroup
	for _, cl := range []*http.Client{b, c} {
		wg.Go(func() { _, _ = get(cl, "/hold") })
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		idle := len(l.idle)
		l.mu.Unlock()
		if idle == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	done := make(chan error, 1)
	go func() { _, err := get(client(), "/"); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("a client was served while both slots worked requests (err %v)", err)
	case <-time.After(500 * time.Millisecond):
	}
	if got := closed(); len(got) != 1 {
		t.Fatalf("a connection working a request was closed: %v", got)
	}
	close(hold)
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatalf("the waiting client was not served once a slot went idle: %v", err)
	}
}

// TestLimiterSparesBrieflyIdleConnections: a kept-alive connection that
// has idled less than MinIdle is not closed for a waiting one (under load,
// a client's connections idle for microseconds between requests: closing
// them is churn); once it has idled MinIdle, it is, and the waiting client
// is served.
func TestLimiterSparesBrieflyIdleConnections(t *testing.T) {
	t.Parallel()
	const minIdle = 600 * time.Millisecond
	url, _, closed := limitedServer(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), minIdle)
	get := func(c *http.Client) error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	if err := get(&http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	// The kept-alive connection idles from now: a new client waits for it
	// to have idled minIdle.
	start := time.Now()
	if err := get(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if took < minIdle*8/10 {
		t.Fatalf("the new client was served after %v: a connection idle for less than MinIdle (%v) was closed for it", took, minIdle)
	}
	if took > 3*minIdle {
		t.Fatalf("the new client waited %v, well past MinIdle (%v)", took, minIdle)
	}
	if got := closed(); len(got) == 0 {
		t.Fatal("the idle connection was not closed to make room")
	}
}

// TestLimitedListenerClose: closing the listener ends an Accept waiting
// for a slot.
func TestLimitedListenerClose(t *testing.T) {
	t.Parallel()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewLimiter(1)
	ln := l.Listener(raw)
	for range 2 {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	held, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	got := make(chan error, 1)
	go func() { _, err := ln.Accept(); got <- err }()
	time.Sleep(100 * time.Millisecond)
	_ = ln.Close()
	select {
	case err := <-got:
		if err == nil {
			t.Fatal("Accept beyond the cap returned a connection")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept waiting for a slot did not return when the listener closed")
	}
}
