//go:build linux

package nfq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// This file is the little of the kernel's conntrack (ctnetlink) that
// offload needs: the connections whose mark has the offload bit (Dump),
// clearing that bit on one (SetMark), and the kernel's word that a
// connection ended (ListenDestroy). Nothing here runs per packet.

// ctnetlink numbers (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
const (
	subsysCT   = 1 // NFNL_SUBSYS_CTNETLINK
	ctMsgNew   = 0 // IPCTNL_MSG_CT_NEW: also an update, without NLM_F_CREATE
	ctMsgGet   = 1
	ctMsgDel   = 2
	groupCTDel = 3 // NFNLGRP_CONNTRACK_DESTROY

	ctaTupleOrig  = 1
	ctaTupleReply = 2
	ctaTimeout    = 7
	ctaMark       = 8
	ctaZone       = 18
	ctaMarkMask   = 21

	ctaTupleIP    = 1
	ctaTupleProto = 2
	ctaIPv4Src    = 1
	ctaIPv4Dst    = 2
	ctaIPv6Src    = 3
	ctaIPv6Dst    = 4
	ctaProtoNum   = 1
	ctaProtoSport = 2
	ctaProtoDport = 3

	nlaNested = 0x8000 // NLA_F_NESTED
)

// CTTuple is one direction of a kernel conntrack entry.
type CTTuple struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16 // 0 for protocols without ports
}

// CTFlow is a kernel conntrack entry, as much of it as offload reads.
type CTFlow struct {
	Proto       uint8
	Orig, Reply CTTuple
	Mark        uint32
	Zone        uint16
	Timeout     time.Duration // time left; 0 in a DESTROY event
}

// ErrCTOverrun is returned by CTEvents.Receive when the kernel had events
// for the socket and no room: some are lost.
var ErrCTOverrun = errors.New("nfq: conntrack events lost (socket buffer overrun)")

// CT is a ctnetlink socket for requests. It is not safe for concurrent use.
type CT struct{ c *netlink.Conn }

func dialCT(netnsName string) (*netlink.Conn, error) {
	cfg := &netlink.Config{}
	if netnsName != "" {
		ns, err := netns.GetFromName(netnsName)
		if err != nil {
			return nil, fmt.Errorf("nfq: network namespace %s: %w", netnsName, err)
		}
		defer ns.Close()
		cfg.NetNS = int(ns)
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("nfq: conntrack netlink: %w", err)
	}
	return c, nil
}

// DialCT opens a ctnetlink socket in the named network namespace (""
// for the caller's).
func DialCT(netnsName string) (*CT, error) {
	c, err := dialCT(netnsName)
	if err != nil {
		return nil, err
	}
	return &CT{c}, nil
}

// Close closes the socket.
func (c *CT) Close() error { return c.c.Close() }

// Dump returns the kernel's conntrack entries whose mark has all of mask's
// bits equal to mark's (the kernel filters, CTA_MARK and CTA_MARK_MASK);
// mask 0 returns all of them.
func (c *CT) Dump(mark, mask uint32) ([]CTFlow, error) {
	data := []byte{unix.AF_UNSPEC, 0, 0, 0}
	if mask != 0 {
		data = appendAttrBE32(data, ctaMark, mark)
		data = appendAttrBE32(data, ctaMarkMask, mask)
	}
	msgs, err := c.c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(subsysCT<<8 | ctMsgGet), Flags: netlink.Request | netlink.Dump},
		Data:   data,
	})
	if err != nil {
		return nil, fmt.Errorf("nfq: conntrack dump: %w", err)
	}
	flows := make([]CTFlow, 0, len(msgs))
	for _, m := range msgs {
		if f, ok := parseCTFlow(m.Data); ok {
			flows = append(flows, f)
		}
	}
	return flows, nil
}

// SetMark changes the mark of the kernel's entry f (found by its original
// tuple and zone): the bits of mask become those of mark, the others are
// kept. An entry the kernel no longer has is unix.ENOENT.
func (c *CT) SetMark(f *CTFlow, mark, mask uint32) error {
	family := byte(unix.AF_INET)
	if f.Orig.Src.Is6() && !f.Orig.Src.Is4In6() {
		family = unix.AF_INET6
	}
	data := []byte{family, 0, 0, 0}
	data = appendTuple(data, ctaTupleOrig, f.Proto, &f.Orig)
	data = appendAttrBE32(data, ctaMark, mark&mask)
	data = appendAttrBE32(data, ctaMarkMask, mask)
	if f.Zone != 0 {
		data = appendAttr(data, ctaZone, binary.BigEndian.AppendUint16(nil, f.Zone))
	}
	_, err := c.c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(subsysCT<<8 | ctMsgNew), Flags: netlink.Request | netlink.Acknowledge},
		Data:   data,
	})
	var oe *netlink.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// CTEvents receives the kernel's conntrack DESTROY events.
type CTEvents struct{ c *netlink.Conn }

// ListenDestroy subscribes to the kernel's conntrack DESTROY events in the
// named network namespace, with a receive buffer of sockBuf bytes.
func ListenDestroy(netnsName string, sockBuf int) (*CTEvents, error) {
	c, err := dialCT(netnsName)
	if err != nil {
		return nil, err
	}
	if sockBuf > 0 {
		rc, err := c.SyscallConn()
		if err == nil {
			rc.Control(func(fd uintptr) {
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, sockBuf) != nil {
					unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, sockBuf)
				}
			})
		}
	}
	if err := c.JoinGroup(groupCTDel); err != nil {
		c.Close()
		return nil, fmt.Errorf("nfq: conntrack events: %w", err)
	}
	return &CTEvents{c}, nil
}

// Receive waits for the next events: the connections that ended.
// ErrCTOverrun says some were lost; the socket still works. After Close
// it returns an error.
func (e *CTEvents) Receive() ([]CTFlow, error) {
	msgs, err := e.c.Receive()
	if err != nil {
		if errors.Is(err, unix.ENOBUFS) {
			return nil, ErrCTOverrun
		}
		return nil, err
	}
	var flows []CTFlow
	for _, m := range msgs {
		if m.Header.Type != netlink.HeaderType(subsysCT<<8|ctMsgDel) {
			continue
		}
		if f, ok := parseCTFlow(m.Data); ok {
			flows = append(flows, f)
		}
	}
	return flows, nil
}

// Close stops Receive and closes the socket.
func (e *CTEvents) Close() error { return e.c.Close() }

// parseCTFlow reads a ctnetlink message body: nfgenmsg, then attributes.
func parseCTFlow(b []byte) (CTFlow, bool) {
	var f CTFlow
	if len(b) < 4 {
		return f, false
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return f, false
	}
	ad.ByteOrder = binary.BigEndian
	var haveOrig bool
	for ad.Next() {
		switch ad.Type() &^ nlaNested {
		case ctaTupleOrig:
			ad.Do(func(b []byte) error { haveOrig = parseTuple(b, &f.Proto, &f.Orig); return nil })
		case ctaTupleReply:
			ad.Do(func(b []byte) error { parseTuple(b, &f.Proto, &f.Reply); return nil })
		case ctaMark:
			f.Mark = ad.Uint32()
		case ctaTimeout:
			f.Timeout = time.Duration(ad.Uint32()) * time.Second
		case ctaZone:
			f.Zone = ad.Uint16()
		}
	}
	return f, ad.Err() == nil && haveOrig
}

func parseTuple(b []byte, proto *uint8, t *CTTuple) bool {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return false
	}
	ad.ByteOrder = binary.BigEndian
	ok := false
	for ad.Next() {
		switch ad.Type() &^ nlaNested {
		case ctaTupleIP:
			ad.Do(func(b []byte) error {
				ip, err := netlink.NewAttributeDecoder(b)
				if err != nil {
					return nil
				}
				for ip.Next() {
					a, _ := netip.AddrFromSlice(ip.Bytes())
					switch ip.Type() {
					case ctaIPv4Src, ctaIPv6Src:
						t.Src = a
					case ctaIPv4Dst, ctaIPv6Dst:
						t.Dst = a
					}
				}
				ok = t.Src.IsValid() && t.Dst.IsValid()
				return nil
			})
		case ctaTupleProto:
			ad.Do(func(b []byte) error {
				pd, err := netlink.NewAttributeDecoder(b)
				if err != nil {
					return nil
				}
				pd.ByteOrder = binary.BigEndian
				for pd.Next() {
					switch pd.Type() {
					case ctaProtoNum:
						*proto = pd.Uint8()
					case ctaProtoSport:
						t.SrcPort = pd.Uint16()
					case ctaProtoDport:
						t.DstPort = pd.Uint16()
					}
				}
				return nil
			})
		}
	}
	return ok && ad.Err() == nil
}

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func appendAttrBE32(b []byte, typ uint16, v uint32) []byte {
	return appendAttr(b, typ, binary.BigEndian.AppendUint32(nil, v))
}

// appendTuple appends a CTA_TUPLE_* attribute for t.
func appendTuple(b []byte, typ uint16, proto uint8, t *CTTuple) []byte {
	var ip []byte
	if t.Src.Is4() || t.Src.Is4In6() {
		s, d := t.Src.Unmap().As4(), t.Dst.Unmap().As4()
		ip = appendAttr(ip, ctaIPv4Src, s[:])
		ip = appendAttr(ip, ctaIPv4Dst, d[:])
	} else {
		s, d := t.Src.As16(), t.Dst.As16()
		ip = appendAttr(ip, ctaIPv6Src, s[:])
		ip = appendAttr(ip, ctaIPv6Dst, d[:])
	}
	pr := appendAttr(nil, ctaProtoNum, []byte{proto})
	if t.SrcPort != 0 || t.DstPort != 0 {
		pr = appendAttr(pr, ctaProtoSport, binary.BigEndian.AppendUint16(nil, t.SrcPort))
		pr = appendAttr(pr, ctaProtoDport, binary.BigEndian.AppendUint16(nil, t.DstPort))
	}
	var tu []byte
	tu = appendAttr(tu, ctaTupleIP|nlaNested, ip)
	tu = appendAttr(tu, ctaTupleProto|nlaNested, pr)
	return appendAttr(b, typ|nlaNested, tu)
}
