package links

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The rtnetlink structures are decoded by hand rather than with
// github.com/jsimonetti/rtnetlink: we need four fields of a link and three
// of an address, while that library decodes every attribute of a link
// (statistics, link info of every driver, VF and XDP data), fails a whole
// batch on the first attribute it cannot decode, and would bring a new
// module in for it.

// parseLink decodes the body of an RTM_NEWLINK or RTM_DELLINK (struct
// ifinfomsg and its attributes). ok is false for a message about something
// other than the link as a whole: the bridge sends RTM_NEWLINK and
// RTM_DELLINK with family AF_BRIDGE about a port, and such an RTM_DELLINK
// means the port left its bridge, not that the link is gone.
func parseLink(b []byte) (l linkInfo, ok bool, err error) {
	if len(b) < unix.SizeofIfInfomsg {
		return linkInfo{}, false, fmt.Errorf("ifinfomsg of %d bytes", len(b))
	}
	if b[0] != unix.AF_UNSPEC {
		return linkInfo{}, false, nil
	}
	flags := binary.NativeEndian.Uint32(b[8:12])
	l = linkInfo{
		index:    int(int32(binary.NativeEndian.Uint32(b[4:8]))),
		up:       flags&unix.IFF_UP != 0,
		loopback: flags&unix.IFF_LOOPBACK != 0,
	}
	if l.index <= 0 {
		return linkInfo{}, false, fmt.Errorf("link index %d", l.index)
	}
	ad, err := netlink.NewAttributeDecoder(b[unix.SizeofIfInfomsg:])
	if err != nil {
		return linkInfo{}, false, err
	}
	for ad.Next() {
		if ad.Type() == unix.IFLA_IFNAME {
			l.name = ad.String()
		}
	}
	if err := ad.Err(); err != nil {
		return linkInfo{}, false, err
	}
	return l, true, nil
}

// parseAddr decodes the body of an RTM_NEWADDR or RTM_DELADDR (struct
// ifaddrmsg and its attributes). ok is false for a family other than IPv4
// and IPv6.
//
// IFA_LOCAL is the interface's own address and IFA_ADDRESS the peer's on a
// point-to-point link; without a peer the kernel sends only IFA_ADDRESS
// (IPv6) or both the same (IPv4).
func parseAddr(b []byte) (a addrInfo, ok bool, err error) {
	if len(b) < unix.SizeofIfAddrmsg {
		return addrInfo{}, false, fmt.Errorf("ifaddrmsg of %d bytes", len(b))
	}
	family, bits := b[0], int(b[1])
	var size int
	switch family {
	case unix.AF_INET:
		size = 4
	case unix.AF_INET6:
		size = 16
	default:
		return addrInfo{}, false, nil
	}
	a.index = int(binary.NativeEndian.Uint32(b[4:8]))
	ad, err := netlink.NewAttributeDecoder(b[unix.SizeofIfAddrmsg:])
	if err != nil {
		return addrInfo{}, false, err
	}
	var local, address netip.Addr
	for ad.Next() {
		var dst *netip.Addr
		switch ad.Type() {
		case unix.IFA_LOCAL:
			dst = &local
		case unix.IFA_ADDRESS:
			dst = &address
		default:
			continue
		}
		raw := ad.Bytes()
		if len(raw) != size {
			return addrInfo{}, false, fmt.Errorf("address attribute of %d bytes in family %d", len(raw), family)
		}
		*dst, _ = netip.AddrFromSlice(raw)
	}
	if err := ad.Err(); err != nil {
		return addrInfo{}, false, err
	}
	if !local.IsValid() {
		local = address
	} else if address != local {
		a.key.peer = address
	}
	if !local.IsValid() {
		return addrInfo{}, false, errors.New("address message without an address")
	}
	a.key.local = netip.PrefixFrom(local, bits)
	if !a.key.local.IsValid() {
		return addrInfo{}, false, fmt.Errorf("prefix length %d for %v", bits, local)
	}
	return a, true, nil
}

// apply applies one link or address message to t and reports whether t
// changed; messages of other types are ignored.
func apply(t *table, m netlink.Message) (changed bool, err error) {
	switch m.Header.Type {
	case unix.RTM_NEWLINK, unix.RTM_DELLINK:
		l, ok, err := parseLink(m.Data)
		if err != nil || !ok {
			return false, err
		}
		if m.Header.Type == unix.RTM_DELLINK {
			return t.delLink(l.index), nil
		}
		return t.setLink(l), nil
	case unix.RTM_NEWADDR, unix.RTM_DELADDR:
		a, ok, err := parseAddr(m.Data)
		if err != nil || !ok {
			return false, err
		}
		if m.Header.Type == unix.RTM_DELADDR {
			return t.delAddr(a), nil
		}
		return t.setAddr(a), nil
	}
	return false, nil
}

// dump reads every link and address over c, which must not be subscribed
// to any group, into a new table. A message it cannot decode is skipped
// and counted in malformed.
//
// A dump the kernel marks interrupted (NLM_F_DUMP_INTR: the set changed
// while it was read) is used as it is: every change that interrupted it
// is also queued on the notification socket, subscribed before the dump
// began, and applying those repairs whatever the dump got wrong.
func dump(c *netlink.Conn, malformed *atomic.Uint64) (*table, error) {
	t := newTable()
	for _, req := range []struct {
		typ  netlink.HeaderType
		size int
	}{
		{unix.RTM_GETLINK, unix.SizeofIfInfomsg},
		{unix.RTM_GETADDR, unix.SizeofIfAddrmsg},
	} {
		msgs, err := c.Execute(netlink.Message{
			Header: netlink.Header{Type: req.typ, Flags: netlink.Request | netlink.Dump},
			Data:   make([]byte, req.size), // family AF_UNSPEC: all of them
		})
		if err != nil {
			return nil, fmt.Errorf("links: dumping: %w", err)
		}
		for _, m := range msgs {
			if _, err := apply(t, m); err != nil {
				malformed.Add(1)
			}
		}
	}
	return t, nil
}

// dial opens an rtnetlink socket in the namespace cfg names, joined to
// groups.
func dial(cfg Config, groups ...uint32) (*netlink.Conn, error) {
	var nc netlink.Config
	if cfg.NetnsName != "" {
		// The socket is created inside the namespace and stays there;
		// netlink does that on a locked thread of its own.
		ns, err := netns.GetFromName(cfg.NetnsName)
		if err != nil {
			return nil, fmt.Errorf("links: network namespace %q: %w", cfg.NetnsName, err)
		}
		defer ns.Close()
		nc.NetNS = int(ns)
	}
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &nc)
	if err != nil {
		return nil, fmt.Errorf("links: opening rtnetlink socket: %w", err)
	}
	for _, g := range groups {
		if err := c.JoinGroup(g); err != nil {
			c.Close()
			return nil, fmt.Errorf("links: joining rtnetlink group %d: %w", g, err)
		}
	}
	return c, nil
}

// setReadBuffer sets c's receive buffer to n bytes, past
// net.core.rmem_max when the process has CAP_NET_ADMIN.
func setReadBuffer(c *netlink.Conn, n int) error {
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
	return c.SetReadBuffer(n)
}
