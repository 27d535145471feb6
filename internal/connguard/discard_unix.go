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
// without waiting for more (a socket closed with unread data sends a
// reset), and returns how many bytes that was.
func discardReceived(c net.Conn, buf []byte) (total int) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	_ = raw.Read(func(fd uintptr) bool {
		for total < maxDiscard {
			n, err := syscall.Read(int(fd), buf)
			if n <= 0 || err != nil {
				break
			}
			total += n
		}
		return true // done, whether or not anything was there: never wait
	})
	return total
}
