package connguard

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Limiter caps the connections an http.Server holds open at once. Its
// Listener hands the server a connection only while fewer than max are
// open: beyond that, new connections wait in the kernel's accept queue
// (the listen backlog) and cost the process no goroutine and no buffers.
// Its ConnState, set as the server's, tells it which connections sit idle
// between keep-alive requests: when a connection is waiting and every slot
// is taken, the one idle longest is closed to make room, as nginx reuses
// keep-alive connections when it runs out of them, so idle clients cannot
// starve new ones for the server's whole IdleTimeout. A connection working
// a request (an event stream included) is never closed for another.
//
// Only a connection idle for at least MinIdle is closed: under load a
// client's kept-alive connections idle for microseconds between requests,
// and closing those would only make the client dial again, turning
// overload into connection churn.
//
// The listener accepts one connection ahead of the cap, to know that one
// is waiting: at most max+1 are open, the last one not yet served.
type Limiter struct {
	// MinIdle is how long a connection must have idled before it is
	// closed for a waiting one (DefaultMinIdle when zero).
	MinIdle time.Duration

	slots chan struct{}
	// idleNow is signalled when a connection goes idle (it can make room).
	idleNow chan struct{}

	mu   sync.Mutex
	idle map[net.Conn]time.Time // since when each idle connection idles
}

// DefaultMinIdle is Limiter.MinIdle's default.
const DefaultMinIdle = time.Second

// NewLimiter returns a Limiter allowing max connections open at once.
func NewLimiter(max int) *Limiter {
	return &Limiter{slots: make(chan struct{}, max), idleNow: make(chan struct{}, 1), idle: map[net.Conn]time.Time{}}
}

// Open is how many connections hold a slot now.
func (l *Limiter) Open() int { return len(l.slots) }

// Listener returns ln limited by l.
func (l *Limiter) Listener(ln net.Listener) net.Listener {
	return &limitedListener{Listener: ln, l: l, done: make(chan struct{})}
}

// ConnState is the server's ConnState hook: it tracks idle connections.
func (l *Limiter) ConnState(c net.Conn, state http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if state == http.StateIdle {
		l.idle[c] = time.Now()
		select {
		case l.idleNow <- struct{}{}:
		default:
		}
		return
	}
	delete(l.idle, c)
}

// closeIdlest closes the connection idle longest if it has idled for
// MinIdle, and reports whether it did; if it has not idled that long yet,
// retryIn says when it will have.
func (l *Limiter) closeIdlest() (closed bool, retryIn time.Duration) {
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
	if oldest == nil {
		l.mu.Unlock()
		return false, 0
	}
	if idled := time.Since(since); idled < minIdle {
		l.mu.Unlock()
		return false, minIdle - idled
	}
	delete(l.idle, oldest)
	l.mu.Unlock()
	// Its slot is free once it is closed; the server's goroutine for it
	// sees its read fail and ends. A request sent on it meanwhile fails as
	// when IdleTimeout closes it: clients retry idempotent ones.
	_ = oldest.Close()
	return true, 0
}

type limitedListener struct {
	net.Listener
	l         *Limiter
	done      chan struct{}
	closeOnce sync.Once
}

// Accept takes the next connection from the backlog, then waits for a
// slot for it: free, made by closing an idle connection, or freed when a
// connection closes.
func (ln *limitedListener) Accept() (net.Conn, error) {
	c, err := ln.Listener.Accept()
	if err != nil {
		return nil, err
	}
	for {
		select {
		case ln.l.slots <- struct{}{}:
			return &limitedConn{Conn: c, release: func() { <-ln.l.slots }}, nil
		default:
		}
		closed, retryIn := ln.l.closeIdlest()
		if closed {
			continue // its Close frees a slot at once
		}
		var ripe <-chan time.Time // when the idlest will have idled MinIdle
		if retryIn > 0 {
			ripe = time.After(retryIn)
		}
		select {
		case ln.l.slots <- struct{}{}:
			return &limitedConn{Conn: c, release: func() { <-ln.l.slots }}, nil
		case <-ln.l.idleNow:
		case <-ripe:
		case <-ln.done:
			_ = c.Close()
			return nil, net.ErrClosed
		}
	}
}

func (ln *limitedListener) Close() error {
	ln.closeOnce.Do(func() { close(ln.done) })
	return ln.Listener.Close()
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
