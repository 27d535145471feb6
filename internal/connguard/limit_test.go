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

// getStatus GETs url on a connection of its own and returns the status
// and Retry-After of the answer.
func getStatus(url string) (status int, retryAfter string, body []byte, err error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), body, err
}

// TestLimiterRefusesBeyondMax: with 2 clients (the cap) holding requests
// the handler works, each further connection is answered at once with the
// Limiter's Refusal (503, Retry-After, its body) and closed, without
// reaching the server, and without a reset that would lose the answer;
// once the held requests end, a new client is served, and no slot is held
// after every connection closed.
func TestLimiterRefusesBeyondMax(t *testing.T) {
	t.Parallel()
	const max, refused = 2, 20
	release := make(chan struct{})
	var working, most atomic.Int32
	url, l, _ := limitedServer(t, max, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := working.Add(1)
		defer working.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if r.URL.Path == "/hold" {
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	}))
	l.Refusal = Refusal(7, "application/problem+json", []byte(`{"title":"Overloaded"}`))
	var wg sync.WaitGroup
	for range max {
		wg.Go(func() {
			if status, _, _, err := getStatus(url + "/hold"); err != nil || status != http.StatusOK {
				t.Errorf("a held request within the cap: %d, %v", status, err)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for working.Load() < max && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	// Every connection past the cap is answered at once, none reaches the
	// handler, and none is reset before its answer is read.
	var slowest time.Duration
	for i := range refused {
		start := time.Now()
		status, retryAfter, body, err := getStatus(url + "/")
		took := time.Since(start)
		if took > slowest {
			slowest = took
		}
		if err != nil {
			t.Fatalf("connection %d past the cap: %v after %v, want a 503", i, err, took)
		}
		if status != http.StatusServiceUnavailable || retryAfter != "7" || string(body) != `{"title":"Overloaded"}` {
			t.Fatalf("connection %d past the cap: %d, Retry-After %q, body %q; want 503, 7 and the Refusal's body", i, status, retryAfter, body)
		}
	}
	if slowest > time.Second {
		t.Fatalf("a connection past the cap waited %v for its 503", slowest)
	}
	if n, open, r := working.Load(), l.Open(), l.Refused(); n != max || open != max || r != refused {
		t.Fatalf("%d requests worked, %d connections open, %d refused; want %d, %d, %d", n, open, r, max, max, refused)
	}
	close(release)
	wg.Wait()
	if status, _, _, err := getStatus(url + "/"); err != nil || status != http.StatusOK {
		t.Fatalf("a client after the held requests ended: %d, %v", status, err)
	}
	if m := most.Load(); m != max {
		t.Fatalf("at most %d requests worked at once, want %d", m, max)
	}
	for deadline := time.Now().Add(2 * time.Second); l.Open() != 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := l.Open(); n != 0 {
		t.Fatalf("%d slots held after every connection closed", n)
	}
}

// TestLimiterClosesTheIdlestForANewConnection: two keep-alive clients
// hold both slots while idle; once they have idled MinIdle, a third client
// is served at once, in the slot of the connection idle longest. A
// connection working a request is never closed for another: while both
// work, a new client is refused.
func TestLimiterClosesTheIdlestForANewConnection(t *testing.T) {
	t.Parallel()
	const minIdle = 50 * time.Millisecond
	hold := make(chan struct{})
	url, l, closed := limitedServer(t, 2, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			<-hold
		}
		_, _ = io.WriteString(w, "ok")
	}), minIdle)
	get := func(c *http.Client, path string) (local string, status int, err error) {
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { local = info.Conn.LocalAddr().String() },
		})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			return "", 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return local, resp.StatusCode, resp.Body.Close()
	}
	client := func() *http.Client { return &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second} }
	a, b, c := client(), client(), client()
	first, _, err := get(a, "/")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if _, _, err := get(b, "/"); err != nil {
		t.Fatal(err)
	}
	// Both idle past MinIdle now: c is served, in the slot of a's connection.
	time.Sleep(2 * minIdle)
	start := time.Now()
	if _, status, err := get(c, "/"); err != nil || status != http.StatusOK {
		t.Fatalf("the third client, with two connections idle: %d, %v", status, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the third client waited %v for two idle connections", took)
	}
	if got := closed(); len(got) != 1 || got[0] != first {
		t.Fatalf("closed %v, want only the idlest, %s", got, first)
	}

	// b and c working requests: a new connection is refused, and neither
	// is closed.
	var wg sync.WaitGroup
	for _, cl := range []*http.Client{b, c} {
		wg.Go(func() { _, _, _ = get(cl, "/hold") })
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
	if status, _, _, err := getStatus(url + "/"); err != nil || status != http.StatusServiceUnavailable {
		t.Fatalf("a client while both slots worked requests: %d, %v; want 503", status, err)
	}
	if got := closed(); len(got) != 1 {
		t.Fatalf("a connection working a request was closed: %v", got)
	}
	close(hold)
	wg.Wait()
	// Both idle again, for less than MinIdle: soon after, they have idled
	// long enough and a new client is served.
	time.Sleep(2 * minIdle)
	if status, _, _, err := getStatus(url + "/"); err != nil || status != http.StatusOK {
		t.Fatalf("a client once a slot had idled MinIdle: %d, %v", status, err)
	}
}

// TestLimiterSparesBrieflyIdleConnections: a kept-alive connection that
// has idled less than MinIdle is not closed for a new one (under load, a
// client's connections idle for microseconds between requests: closing
// them is churn), which is refused; once it has idled MinIdle, it is, and
// the new client is served.
func TestLimiterSparesBrieflyIdleConnections(t *testing.T) {
	t.Parallel()
	const minIdle = 600 * time.Millisecond
	url, l, closed := limitedServer(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), minIdle)
	kept := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	resp, err := kept.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	// The kept-alive connection idles from now: a new client is refused
	// until it has idled minIdle.
	start := time.Now()
	if status, _, _, err := getStatus(url); err != nil || status != http.StatusServiceUnavailable {
		t.Fatalf("a new client while the only connection had idled %v (MinIdle %v): %d, %v; want 503", time.Since(start), minIdle, status, err)
	}
	if got := closed(); len(got) != 0 {
		t.Fatalf("a connection idle for less than MinIdle (%v) was closed for a new one: %v", minIdle, got)
	}
	time.Sleep(minIdle + 100*time.Millisecond)
	if status, _, _, err := getStatus(url); err != nil || status != http.StatusOK {
		t.Fatalf("a new client once the idle connection had idled MinIdle: %d, %v", status, err)
	}
	if got := closed(); len(got) == 0 {
		t.Fatal("the idle connection was not closed to make room")
	}
	if n := l.Refused(); n != 1 {
		t.Fatalf("%d connections refused, want 1", n)
	}
}

// TestLimitedListenerClose: a connection past the cap is refused, and
// Accept goes on waiting for the next; closing the listener ends that
// wait.
func TestLimitedListenerClose(t *testing.T) {
	t.Parallel()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewLimiter(1)
	ln := l.Listener(raw)
	var dialed []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		dialed = append(dialed, c)
	}
	held, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	got := make(chan error, 1)
	go func() { _, err := ln.Accept(); got <- err }()
	// The second connection, which sends no request, is closed without
	// an answer; a third, which sends one, is answered with the default
	// Refusal.
	_ = dialed[1].SetReadDeadline(time.Now().Add(5 * time.Second))
	if answer, err := io.ReadAll(dialed[1]); err != nil || len(answer) != 0 {
		t.Fatalf("the silent connection past the cap read %q, %v; want only the close", answer, err)
	}
	c, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if answer, err := io.ReadAll(c); err != nil || string(answer) != string(DefaultRefusal) {
		t.Fatalf("the connection past the cap read %q, %v; want %q", answer, err, DefaultRefusal)
	}
	select {
	case err := <-got:
		t.Fatalf("Accept returned past the cap: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	_ = ln.Close()
	select {
	case err := <-got:
		if err == nil {
			t.Fatal("Accept beyond the cap returned a connection")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept did not return when the listener closed")
	}
}
