package connguard

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Limiter caps the connections an http.Server holds open at once. Its
// Listener hands the server a connection only while fewer than max are
// open. A connection beyond that is answered at once, by the listener,
// with its Refusal (503 and Retry-After) and closed: it costs no server
// goroutine and no buffers (at most maxRefusing small goroutines wait for
// requests to refuse, see Accept), and its client learns at once to come back later,
// where in the kernel's accept queue it would wait, uncounted, for as
// long as its own timeout. Its ConnState, set as the server's, tells
// it which connections sit idle between keep-alive requests: when every
// slot is taken, the one idle longest is closed to make room for the new
// connection, as nginx reuses keep-alive connections when it runs out of
// them, so idle clients cannot shut new ones out for the server's whole
// IdleTimeout. A connection working a request (an event stream included)
// is never closed for another.
//
// Only a connection idle for at least MinIdle is closed: under load a
// client's kept-alive connections idle for microseconds between requests,
// and closing those would only make the client dial again, turning
// overload into connection churn. A new connection that finds no slot and
// no connection idle that long is refused.
type Limiter struct {
	// MinIdle is how long a connection must have idled before it is
	// closed for a new one (DefaultMinIdle when zero).
	MinIdle time.Duration
	// Refusal is written to a connection refused at the cap before it is
	// closed: a whole HTTP/1.1 response (see Refusal; nil: DefaultRefusal).
	Refusal []byte

	slots chan struct{}
	// refusers holds a buffer for each refusal that may wait at once (nil
	// until first used); a refusal takes one and gives it back.
	refusers chan []byte
	refused  atomic.Int64

	mu   sync.Mutex
	idle map[net.Conn]time.Time // since when each idle connection idles
}

// DefaultMinIdle is Limiter.MinIdle's default.
const DefaultMinIdle = time.Second

// DefaultRefusal is Limiter.Refusal's default: 503 with Retry-After: 1 and
// no body.
var DefaultRefusal = Refusal(1, "", nil)

const (
	// maxRefusing bounds the refusals waiting for their request at once:
	// each costs a small goroutine and a discardSize buffer.
	maxRefusing = 256
	// refusalReadTimeout bounds a refusal's wait for the request. A
	// request usually comes at once, but a client short of CPU can take
	// a while to send it after its connection is made, and closing before
	// it comes makes its request fail (Go's client does not dial again
	// for a request already written).
	refusalReadTimeout = time.Second
	// refusalWriteTimeout bounds the write of the Refusal into a new
	// connection's empty send buffer, which does not wait unless the
	// socket is broken.
	refusalWriteTimeout = 5 * time.Millisecond
)

// Refusal is an HTTP/1.1 503 Service Unavailable response with
// Retry-After (in seconds) and body of contentType, which closes the
// connection.
func Refusal(retryAfter int, contentType string, body []byte) []byte {
	h := fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nRetry-After: %d\r\nContent-Length: %d\r\nConnection: close\r\n", retryAfter, len(body))
	if contentType != "" {
		h += "Content-Type: " + contentType + "\r\n"
	}
	return append([]byte(h+"\r\n"), body...)
}

// NewLimiter returns a Limiter allowing max connections open at once.
func NewLimiter(max int) *Limiter {
	l := &Limiter{slots: make(chan struct{}, max), refusers: make(chan []byte, maxRefusing), idle: map[net.Conn]time.Time{}}
	for range maxRefusing {
		l.refusers <- nil
	}
	return l
}

// Open is how many connections hold a slot now.
func (l *Limiter) Open() int { return len(l.slots) }

// Refused is how many connections have been refused at the cap.
func (l *Limiter) Refused() int64 { return l.refused.Load() }

// Listener returns ln limited by l.
func (l *Limiter) Listener(ln net.Listener) net.Listener {
	return &limitedListener{Listener: ln, l: l}
}

// ConnState is the server's ConnState hook: it tracks idle connections.
func (l *Limiter) ConnState(c net.Conn, state http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if state == http.StateIdle {
		l.idle[c] = time.Now()
		return
	}
	delete(l.idle, c)
}

// take takes a slot if one is free.
func (l *Limiter) take() bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// closeIdlest closes the connection idle longest if it has idled for
// MinIdle, and reports whether it did; its slot is free once it returns.
func (l *Limiter) closeIdlest() bool {
	minIdle := l.MinIdle
	if minIdle <= 0 {
		minIdle = DefaultMinIdle
	}
	l.mu.Lock()
	var oldest net.Conn
	var since time.Time
	for c, t := range l.idle {
		if oldest == nil || t.Before(since) {
			oldest, since = c, t
		}
	}
	if oldest == nil || time.Since(since) < minIdle {
		l.mu.Unlock()
		return false
	}
	delete(l.idle, oldest)
	l.mu.Unlock()
	// Its slot is freed by its Close; the server's goroutine for it sees
	// its read fail and ends. A request sent on it meanwhile fails as when
	// IdleTimeout closes it: clients retry idempotent ones.
	_ = oldest.Close()
	return true
}

// refuse answers c with the Refusal and closes it. Unless wait is zero,
// it first waits up to wait for the request to arrive, and closes a
// connection that sends none meanwhile without an answer (one a client
// dialed ahead and left idle: Go's client takes it out of its pool). An
// answer that comes before the request is taken for a stray one (Go's
// http.Transport reports an error instead of the 503), but closing at
// once fails a request written just after (Go's client does not dial
// again for a new connection's request), so without the wait the Refusal
// is written anyway. What the client has sent is read into buf and
// dropped first, so that the close ends the connection with a FIN after
// the answer rather than a reset that could overtake it.
func (l *Limiter) refuse(c net.Conn, buf []byte, wait time.Duration) {
	l.refused.Add(1)
	defer c.Close()
	if wait > 0 {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		if n, _ := c.Read(buf); n == 0 {
			return // nothing to answer, or the client is gone
		}
	}
	discardReceived(c, buf)
	refusal := l.Refusal
	if refusal == nil {
		refusal = DefaultRefusal
	}
	_ = c.SetWriteDeadline(time.Now().Add(refusalWriteTimeout))
	_, _ = c.Write(refusal)
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

type limitedListener struct {
	net.Listener
	l *Limiter
	// discard is the buffer of the refusals the accept loop makes itself.
	discard []byte
}

// Accept takes the next connection from the backlog and gives it a slot:
// a free one, or that of the idlest connection, closed for it; if there is
// neither, it refuses the connection and takes the next. A refusal waits
// for the client's request in a goroutine of its own, at most
// maxRefusing at once, each for at most refusalReadTimeout; beyond those,
// the accept loop refuses itself, without waiting.
func (ln *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if ln.l.take() || (ln.l.closeIdlest() && ln.l.take()) {
			return &limitedConn{Conn: c, release: func() { <-ln.l.slots }}, nil
		}
		select {
		case buf := <-ln.l.refusers:
			if buf == nil {
				buf = make([]byte, discardSize)
			}
			go func() {
				defer func() { ln.l.refusers <- buf }()
				ln.l.refuse(c, buf, refusalReadTimeout)
			}()
		default:
			if ln.discard == nil {
				ln.discard = make([]byte, discardSize)
			}
			ln.l.refuse(c, ln.discard, 0)
		}
	}
}

// limitedConn gives its slot back when it is first closed.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// discardSize is the size of a buffer refuse reads into (more is read
// into it again, up to maxDiscard).
const discardSize = 4 << 10
