//go:build unix

package connguard

import (
	"net"
	"syscall"
)

// maxDiscard bounds what discardReceived reads: a request's headers are
// at most a few kilobytes, and a client sending more is not waited for.
const maxDiscard = 64 << 10

// discardReceived reads into buf and drops what c has already received,
// without waiting for more: a socket closed with unread data sends a reset.
func discardReceived(c net.Conn, buf []byte) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Read(func(fd uintptr) bool {
		for total := 0; total < maxDiscard; {
			n, err := syscall.Read(int(fd), buf)
			if n <= 0 || err != nil {
				break
			}
			total += n
		}
		return true // done, whether or not anything was there: never wait
	})
}
