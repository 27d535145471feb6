//go:build !unix

package connguard

import "net"

// discardReceived reads nothing here: it says one byte was, so that the
// refusal is written (it cannot tell whether the request came).
func discardReceived(net.Conn, []byte) int { return 1 }
