//go:build !unix

package connguard

import "net"

// discardReceived does nothing here: the refusal is written and the
// connection closed as it is.
func discardReceived(net.Conn, []byte) {}
