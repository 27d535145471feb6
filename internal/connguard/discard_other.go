//go:build !unix

package connguard

import "net"

// discardReceived reads nothing here: the refusal is written and the
// connection closed as they are.
func discardReceived(net.Conn, []byte) int { return 0 }
