package conntrack

import (
	"encoding/binary"
	"time"

	"github.com/statewall/statewall/pkg/packet"
)

// udpStreamAfter: a replied UDP flow becomes a stream (120 s, assured) with
// the first packet more than 2 s after its creation (the kernel's
// ct->proto.udp.stream_ts, a constant, not a sysctl).
const udpStreamAfter = 2 * time.Second

// udpChecksumZero reports whether the UDP header's checksum field is 0 ("no
// checksum"). Without the bytes (packets built by hand) it reports false.
func udpChecksumZero(p *packet.Packet) bool {
	if p.L4Off == 0 || len(p.Data) < p.L4Off+8 {
		return false
	}
	return binary.BigEndian.Uint16(p.Data[p.L4Off+6:]) == 0
}

// trackUDP is the kernel's nf_conntrack_udp_packet with udp_error.
func (t *Table) trackUDP(r *Result, p *packet.Packet, pre *tuple, now int64) {
	switch {
	case p.L4Len < 8:
		t.invalid(r, p, ReasonShortHeader)
		return
	case p.UDPLen < 8 || int(p.UDPLen) > p.L4Len:
		// Shorter than the IP payload is allowed: the rest is padding.
		t.invalid(r, p, ReasonBadLength)
		return
	case !udpChecksumZero(p) && !t.checksumOK(p):
		// A zero checksum means none, for IPv6 too: conntrack does not
		// enforce RFC 8200 (the IPv6 UDP stack drops it later).
		t.invalid(r, p, ReasonBadChecksum)
		return
	}
	var k Key
	var h uint64
	kp := &k
	if pre != nil {
		kp, h = &pre.k, pre.h
	} else {
		packetKey(&k, p)
		h = t.hash.sum(&k)
	}
	c, ok := t.lookup(kp, h, now)
	defer c.unlock()
	if !ok {
		t.miss(r, c.s, h, now, t.to.UDP)
		return
	}
	c.label(r)
	// The packet that brings the first reply still sees the entry as
	// unreplied (seen-reply is set after the protocol handler runs), so it
	// refreshes by 30 s; a later packet extends to 120 s and assures the
	// flow only once the flow is more than 2 s old: a DNS query and its
	// answer never become assured.
	d := t.to.UDP
	if c.e.seenReply() && now > *c.e.streamTS() {
		d = t.to.UDPStream
		c.e.flags |= flagAssured
	}
	c.accept(p, now, d)
}

// trackUDPLite is the kernel's nf_conntrack_udplite_packet: like UDP, but
// the length field is the checksum coverage, the checksum is mandatory and
// checked as the kernel sums it (udpliteKernelChecksumOK: not RFC 3828's
// sum), and any packet after a reply makes the flow a stream.
func (t *Table) trackUDPLite(r *Result, p *packet.Packet, pre *tuple, now int64) {
	switch {
	case p.L4Len < 8:
		t.invalid(r, p, ReasonShortHeader)
		return
	case p.UDPLen != 0 && (p.UDPLen < 8 || int(p.UDPLen) > p.L4Len):
		t.invalid(r, p, ReasonBadLength)
		return
	case udpChecksumZero(p) || t.checksum && !udpliteKernelChecksumOK(p):
		t.invalid(r, p, ReasonBadChecksum)
		return
	}
	var k Key
	var h uint64
	kp := &k
	if pre != nil {
		kp, h = &pre.k, pre.h
	} else {
		packetKey(&k, p)
		h = t.hash.sum(&k)
	}
	c, ok := t.lookup(kp, h, now)
	defer c.unlock()
	if !ok {
		t.miss(r, c.s, h, now, t.to.UDP)
		return
	}
	c.label(r)
	d := t.to.UDP
	if c.e.seenReply() {
		d = t.to.UDPStream
		c.e.flags |= flagAssured
	}
	c.accept(p, now, d)
}

// udpliteKernelChecksumOK checks a UDP-Lite checksum as conntrack's
// udplite_error does, which is not RFC 3828's sum: it calls
//
//	nf_checksum_partial(skb, state->hook, dataoff, cscov, IPPROTO_UDP, state->pf)
//
// so the pseudo-header carries protocol 17, not 136, and on IPv4
// nf_ip_checksum_partial passes the protocol and the length to
//
//	csum_tcpudp_nofold(iph->saddr, iph->daddr, protocol, skb->len - dataoff, 0)
//
// in each other's places: the length lands in the __u8 proto argument and
// is taken modulo 256 (the two are added, so only that truncation shows).
// On IPv6 nf_ip6_checksum_partial passes them right, the length whole. The
// sum covers the first cscov bytes (0: all). Every datagram with a correct
// RFC 3828 checksum is therefore invalid to the kernel (unless the two
// sums happen to agree), and one summed the kernel's way is new
// (TestUDPLiteChecksumAsTheKernelSumsIt; testdata/kerneldiff/udplite-*).
// This is the kernel's CHECKSUM_NONE path, the one a packet from a tun
// device (the oracle's) takes; see docs/kernel-parity.md for the other.
//
// Like L4ChecksumOK it reports true when it cannot compute the sum:
// fragments, a capture cut short, no transport header decoded.
// Precondition: the coverage was checked (8 to the transport length, or 0).
func udpliteKernelChecksumOK(p *packet.Packet) bool {
	if p.Kind != packet.KindOK || p.L4Off == 0 || p.Frag.IsFragment {
		return true
	}
	end := p.L4Off + p.L4Len
	if end > len(p.Data) {
		return true
	}
	b := p.Data[p.L4Off:end]
	cov := int(p.UDPLen)
	if cov == 0 || cov > len(b) {
		cov = len(b)
	}
	var addrs []byte
	n := uint64(len(b))
	if p.IPVersion == 4 {
		addrs = p.Data[p.L3Off+12 : p.L3Off+20]
		n &= 0xff
	} else {
		addrs = p.Data[p.L3Off+8 : p.L3Off+40]
	}
	acc := packet.OnesSum(addrs, uint64(packet.ProtoUDP)+n)
	return packet.Fold(packet.OnesSum(b[:cov], acc)) == 0xffff
}
