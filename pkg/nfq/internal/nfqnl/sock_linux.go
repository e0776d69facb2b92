//go:build linux

package nfqnl

import (
	"errors"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// SetRcvBuf sets the receive buffer with SO_RCVBUFFORCE (CAP_NET_ADMIN,
// which binding a queue needs anyway), falling back to SO_RCVBUF, capped by
// net.core.rmem_max.
func SetRcvBuf(c *netlink.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err != nil {
		return err
	}
	if serr == nil {
		return nil
	}
	return errors.Join(serr, c.SetReadBuffer(n))
}
