package reject

import (
	"encoding/binary"
	"net/netip"

	"github.com/statewall/statewall/pkg/packet"
)

// Sizes and limits of the answers.
const (
	// TTL is the TTL and hop limit of every answer: the kernel's default
	// (net.ipv4.ip_default_ttl, net.ipv6.conf.*.hop_limit), which is what
	// nf_reject and icmp_send use unless a route says otherwise.
	TTL = 64
	// MaxQuote4 is how many bytes of the blocked packet, from its IP
	// header, an ICMP error quotes at most: icmp_send fills at most 576
	// bytes (RFC 1812 4.3.2.3), of which the IP and ICMP headers take 28.
	MaxQuote4 = 576 - 20 - 8
	// MaxQuote6 is the same for ICMPv6: icmp6_send fills at most the IPv6
	// minimum MTU, 1280 bytes (RFC 4443 2.4 (c)), of which the IPv6 and
	// ICMPv6 headers take 48.
	MaxQuote6 = 1280 - 40 - 8
	// MaxLen is the longest answer: an ICMPv6 error with a full quote. A
	// buffer of this capacity never grows.
	MaxLen = 1280
	// RSTLen4 and RSTLen6 are the lengths of a TCP RST over IPv4 and IPv6.
	RSTLen4 = 20 + 20
	RSTLen6 = 40 + 20
)

// Reply is a blocking rule's answer compiled: what to send, and which
// codes for ICMP. The zero value answers nothing.
type Reply struct {
	Kind  Kind
	ICMP  Code // the IPv4 code; zero (or not an IPv4 code) means port-unr
	ICMP6 Code // the IPv6 code; zero (or not an IPv6 code) means port-unr
}

// Append appends r's answer to pkt to dst, as pf does for a packet that a
// "block return..." rule blocked: a RST for TCP with Return and ReturnRST,
// an ICMP or ICMPv6 unreachable with ReturnICMP and, for other protocols,
// with Return. pkt starts at the IP header. It reports false, with dst
// unchanged, when there is nothing to send (see AppendRST and AppendICMP
// for the packets never answered).
func (r Reply) Append(dst, pkt []byte) ([]byte, bool) {
	var p packet.Packet
	p.Decode(pkt, packet.LinkIP)
	return r.AppendPacket(dst, &p)
}

// AppendPacket is Append for a packet the caller has decoded already.
func (r Reply) AppendPacket(dst []byte, p *packet.Packet) ([]byte, bool) {
	tcp := p.Proto == packet.ProtoTCP
	switch {
	case r.Kind == ReturnRST && tcp, r.Kind == Return && tcp:
		return AppendRSTPacket(dst, p)
	case r.Kind == ReturnICMP, r.Kind == Return:
		c := r.ICMP
		if p.IPVersion == 6 {
			c = r.ICMP6
		}
		return AppendICMPPacket(dst, p, c)
	}
	return dst, false
}

// AppendRST appends to dst the TCP RST that answers pkt, a TCP segment
// starting at its IP header (IPv4 with any options, IPv6 with any
// extension headers), and reports whether there is one. It is the RST the
// kernel's REJECT --reject-with tcp-reset sends (nf_send_reset,
// nf_send_reset6):
//
//   - addresses and ports swapped: it comes from the address and port the
//     segment was sent to;
//   - if the segment had ACK set: RST, with seq the segment's ack and ack 0;
//     otherwise RST|ACK with seq 0 and ack the segment's seq plus one for
//     SYN, one for FIN and its payload length (taken from the IP header,
//     so a segment cut short by the NFQUEUE copy range is answered right);
//   - no options, window 0, TCP and IP checksums filled in;
//   - IPv4: header without options, TOS 0, id 0 as the kernel's (but a
//     raw socket has the kernel choose one, see Sender), DF set, TTL 64;
//     IPv6: traffic class and flow label 0, hop limit 64, no extension
//     headers.
//
// No RST answers a RST, any fragment (the kernel's checksum check fails on
// a fragment, so it answers none either: the daemon reassembles before it
// decides), a segment whose TCP header is not all there, or a segment
// from or to an address that is not unicast (unspecified, multicast, the
// IPv4 limited broadcast): the kernel tests the route for broadcast and
// multicast, which a packet alone cannot show for a subnet's broadcast
// address.
//
// Unlike the kernel, AppendRST does not verify the segment's checksum: the
// copy NFQUEUE hands over may be cut short, and a segment sent by a local
// socket carries a partial checksum. A caller that wants the kernel's
// behaviour checks (*packet.Packet).L4ChecksumOK when the checksum is
// ready.
//
// With a dst of capacity len(dst)+RSTLen6, AppendRST allocates nothing.
func AppendRST(dst, pkt []byte) ([]byte, bool) {
	var p packet.Packet
	p.Decode(pkt, packet.LinkIP)
	return AppendRSTPacket(dst, &p)
}

// AppendRSTPacket is AppendRST for a packet the caller has decoded already
// (with any link type: it reads from p.Data at p.L3Off).
func AppendRSTPacket(dst []byte, p *packet.Packet) ([]byte, bool) {
	if p.Kind != packet.KindOK || p.Proto != packet.ProtoTCP || p.L4Off == 0 || p.TCPHdrLen == 0 ||
		p.Frag.IsFragment || p.TCPFlags&packet.TCPRst != 0 || !unicast(p) {
		return dst, false
	}
	var seq, ack uint32
	flags := packet.TCPRst
	if p.TCPFlags&packet.TCPAck != 0 {
		seq = p.Ack
	} else {
		flags |= packet.TCPAck
		ack = p.Seq + uint32(p.L4Len-p.TCPHdrLen)
		if p.TCPFlags&packet.TCPSyn != 0 {
			ack++
		}
		if p.TCPFlags&packet.TCPFin != 0 {
			ack++
		}
	}
	var b []byte
	var pseudo uint64
	if p.IPVersion == 4 {
		dst, b = grow(dst, RSTLen4)
		ipv4Header(b, p, RSTLen4, 0, 0x4000, packet.ProtoTCP)
		pseudo = packet.OnesSum(b[12:20], uint64(packet.ProtoTCP)+20)
		b = b[20:]
	} else {
		dst, b = grow(dst, RSTLen6)
		ipv6Header(b, p, 20, packet.ProtoTCP)
		pseudo = packet.OnesSum(b[8:40], uint64(packet.ProtoTCP)+20)
		b = b[40:]
	}
	be := binary.BigEndian
	be.PutUint16(b[0:], p.DstPort)
	be.PutUint16(b[2:], p.SrcPort)
	be.PutUint32(b[4:], seq)
	be.PutUint32(b[8:], ack)
	b[12] = 5 << 4
	b[13] = flags
	clear(b[14:20]) // window, checksum, urgent pointer
	be.PutUint16(b[16:], ^packet.Fold(packet.OnesSum(b[:20], pseudo)))
	return dst, true
}

// AppendICMP appends to dst the ICMP (IPv4, type 3) or ICMPv6 (type 1)
// destination unreachable with code that answers pkt, an IP packet
// starting at its IP header, and reports whether there is one. It is what
// the kernel's REJECT --reject-with icmp-*/icmp6-* sends (nf_send_unreach,
// nf_send_unreach6, which call icmp_send and icmp6_send):
//
//   - it comes from the address the packet was sent to and goes to the
//     address it came from (for a packet this host forwarded, the kernel
//     would use an address of its own instead; answering as the
//     destination makes the block look like the destination's refusal);
//   - it quotes the packet from its IP header: as much as the IP header
//     announces and the copy holds, at most MaxQuote4 bytes for IPv4 (the
//     answer fits 576 bytes) and MaxQuote6 for IPv6 (it fits 1280);
//   - the ICMP header's 4 unused bytes are 0, the checksum filled in (over
//     the pseudo-header for ICMPv6);
//   - IPv4: header without options, TOS 0xc0 (precedence "internetwork
//     control") plus the packet's TOS bits 0x1e as icmp_send does, id 0 (the
//     kernel chooses one, see Sender), DF clear (the kernel's ICMP socket
//     does not do path MTU discovery), TTL 64; IPv6: traffic class and flow
//     label 0, hop limit 64.
//
// A code of the other IP version, or the zero Code, means port-unr of the
// packet's version, as pf's return-icmp does for the version it was given
// no code for.
//
// Nothing answers, as RFC 1122 3.2.2, RFC 1812 4.3.2.7 and RFC 4443 2.4
// (e) require and the kernel does: an ICMP error (IPv4 types 3, 4, 5, 11,
// 12 and, as icmp_send, any type above 18; ICMPv6 types below 128); an
// ICMP message whose type is not in the copy; a non-first fragment; a
// packet to a multicast or broadcast address (IPv4 255.255.255.255: a
// subnet's broadcast address cannot be told from the packet alone); a
// packet from an unspecified, multicast or broadcast address. A packet
// that does not decode is not answered either.
//
// With a dst of capacity len(dst)+MaxLen, AppendICMP allocates nothing.
func AppendICMP(dst, pkt []byte, code Code) ([]byte, bool) {
	var p packet.Packet
	p.Decode(pkt, packet.LinkIP)
	return AppendICMPPacket(dst, &p, code)
}

// AppendICMPPacket is AppendICMP for a packet the caller has decoded
// already (with any link type: it reads from p.Data at p.L3Off).
func AppendICMPPacket(dst []byte, p *packet.Packet, code Code) ([]byte, bool) {
	if p.Kind != packet.KindOK || p.Frag.Offset != 0 || !unicast(p) {
		return dst, false
	}
	switch p.Proto {
	case packet.ProtoICMP:
		if p.IPVersion == 4 && (p.L4Off == 0 || p.ICMPType > 18 || icmpError4(p.ICMPType)) {
			return dst, false
		}
	case packet.ProtoICMPv6:
		if p.IPVersion == 6 && (p.L4Off == 0 || p.ICMPType < 128) {
			return dst, false
		}
	}
	if code.Version() != int(p.IPVersion) || !code.valid() {
		code = PortUnr
		if p.IPVersion == 6 {
			code = PortUnr6
		}
	}
	quote := p.Data[p.L3Off:min(len(p.Data), p.L3Off+p.IPLen)]
	var b []byte
	var sum uint64
	if p.IPVersion == 4 {
		quote = quote[:min(len(quote), MaxQuote4)]
		n := 20 + 8 + len(quote)
		dst, b = grow(dst, n)
		tos := p.Data[p.L3Off+1]&0x1e | 0xc0
		ipv4Header(b, p, n, tos, 0, packet.ProtoICMP)
		b = b[20:]
		b[0] = 3
	} else {
		quote = quote[:min(len(quote), MaxQuote6)]
		n := 8 + len(quote)
		dst, b = grow(dst, 40+n)
		ipv6Header(b, p, n, packet.ProtoICMPv6)
		sum = packet.OnesSum(b[8:40], uint64(packet.ProtoICMPv6)+uint64(n))
		b = b[40:]
		b[0] = 1
	}
	b[1] = code.Value()
	clear(b[2:8])
	copy(b[8:], quote)
	binary.BigEndian.PutUint16(b[2:], ^packet.Fold(packet.OnesSum(b, sum)))
	return dst, true
}

// icmpError4 reports whether an ICMP type is an error message, as the
// kernel's icmp_pointers[].error says.
func icmpError4(t uint8) bool {
	switch t {
	case 3, 4, 5, 11, 12:
		return true
	}
	return false
}

// unicast reports whether both of p's addresses could be a single host's:
// neither unspecified, multicast nor the IPv4 limited broadcast.
func unicast(p *packet.Packet) bool {
	return one(p.Src) && one(p.Dst)
}

var broadcast4 = netip.AddrFrom4([4]byte{255, 255, 255, 255})

func one(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && a != broadcast4
}

// ipv4Header writes a 20-byte IPv4 header into b for an answer to p of
// total length n: source p.Dst, destination p.Src, TTL 64, id 0.
func ipv4Header(b []byte, p *packet.Packet, n int, tos uint8, frag uint16, proto packet.Proto) {
	be := binary.BigEndian
	b[0] = 0x45
	b[1] = tos
	be.PutUint16(b[2:], uint16(n))
	be.PutUint16(b[4:], 0)
	be.PutUint16(b[6:], frag)
	b[8] = TTL
	b[9] = byte(proto)
	be.PutUint16(b[10:], 0)
	s, d := p.Dst.As4(), p.Src.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	be.PutUint16(b[10:], ^packet.Fold(packet.OnesSum(b[:20], 0)))
}

// ipv6Header writes a 40-byte IPv6 header into b for an answer to p with
// payload length n: source p.Dst, destination p.Src, hop limit 64.
func ipv6Header(b []byte, p *packet.Packet, n int, nh packet.Proto) {
	b[0] = 0x60
	clear(b[1:4])
	binary.BigEndian.PutUint16(b[4:], uint16(n))
	b[6] = byte(nh)
	b[7] = TTL
	s, d := p.Dst.As16(), p.Src.As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
}

// grow extends dst by n bytes and returns it and the new bytes, which
// hold garbage.
func grow(dst []byte, n int) ([]byte, []byte) {
	l := len(dst)
	if cap(dst)-l < n {
		nd := make([]byte, l, l+n)
		copy(nd, dst)
		dst = nd
	}
	dst = dst[:l+n]
	return dst, dst[l:]
}
