package e2e

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSlowClientsArePushedOut: an anonymous client sending its body a
// byte at a time is cut by the read timeout, not held for as long as it
// likes; connections that never authenticate are bounded (the next one is
// closed at once) while an authenticated client's requests go on, and an
// event stream outlives the read timeout.
func TestSlowClientsArePushedOut(t *testing.T) {
	t.Parallel()
	s := startService(t, options{readTimeout: time.Second, maxUnauthenticatedConns: 4})
	addr := strings.TrimPrefix(s.url, "http://")

	// A body that trickles: 1 byte every 300 ms of a 100-byte one.
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	start := time.Now()
	if _, err := io.WriteString(slow, "POST /v1/clusters HTTP/1.1\r\nHost: x\r\nContent-Type: application/yaml\r\nContent-Length: 100\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	cut := make(chan time.Duration, 1)
	go func() {
		_, _ = io.Copy(io.Discard, slow) // returns when the server closes it
		cut <- time.Since(start)
	}()
	go func() {
		for i := 0; i < 100; i++ {
			if _, err := slow.Write([]byte("a")); err != nil {
				return
			}
			time.Sleep(300 * time.Millisecond)
		}
	}()
	select {
	case took := <-cut:
		if took > 5*time.Second {
			t.Fatalf("the slow body held the connection %s", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a body sent a byte every 300 ms held its connection for 10 s (read timeout 1 s)")
	}

	// An event stream is not cut by the read timeout.
	stream, err := http.NewRequest(http.MethodGet, s.url+"/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	stream.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(stream) //nolint:bodyclose // closed by the deferred Close below; a goroutine reads the stream
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()

	// An authenticated client with a kept-alive connection.
	authed := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	list := func() int {
		req, _ := http.NewRequest(http.MethodGet, s.url+"/v1/clusters", nil)
		req.Header.Set("Authorization", "Bearer "+s.token)
		resp, err := authed.Do(req)
		if err != nil {
			t.Fatalf("authenticated request: %v", err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	if status := list(); status != http.StatusOK {
		t.Fatalf("list: %d", status)
	}

	// Anonymous connections that send nothing: four are held, the fifth
	// is closed at once.
	var idle []net.Conn
	for i := 0; i < 4; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	time.Sleep(200 * time.Millisecond)
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("a fifth unauthenticated connection was kept (read: %v)", err)
	}
	// Authenticated requests go on over their kept-alive connection.
	if status := list(); status != http.StatusOK {
		t.Fatalf("list with the anonymous connections held: %d", status)
	}

	// Well past the read timeout, the stream is still open.
	time.Sleep(1500 * time.Millisecond)
	for _, c := range idle {
		_ = c.Close()
	}
	select {
	case line, open := <-lines:
		if !open {
			t.Fatal("the event stream ended: the read timeout cut it")
		}
		_ = line
	case <-time.After(time.Second):
		t.Fatal("no line from the event stream")
	}
	drain := time.After(500 * time.Millisecond)
	for {
		select {
		case _, open := <-lines:
			if !open {
				t.Fatal("the event stream ended after the read timeout")
			}
		case <-drain:
			return
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
