package packet

import (
	"encoding/binary"
	"net/netip"
)

// EtherType values the decoder looks at.
const (
	EtherTypeIPv4    uint16 = 0x0800
	EtherTypeIPv6    uint16 = 0x86dd
	etherTypeVLAN           = 0x8100 // 802.1Q C-tag
	etherTypeQinQ           = 0x88a8 // 802.1ad S-tag
	etherTypeQinQOld        = 0x9100 // pre-standard Q-in-Q tag, still seen on old switches
)

// IPv6 extension headers the decoder walks.
const (
	ip6HopByHop = 0
	ip6Routing  = 43
	ip6Fragment = 44
	ip6AH       = 51
	ip6DestOpts = 60
)

// BSD loopback address families (the Null and Loop link types). IPv6 has a
// different value on every BSD: 24 NetBSD/OpenBSD, 28 FreeBSD, 30 Darwin.
const (
	afINET         = 2
	afINET6NetBSD  = 24
	afINET6FreeBSD = 28
	afINET6Darwin  = 30
)

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }

// Decode decodes one packet that starts with the link-layer header link.
// It overwrites every field of p, never allocates and never panics; a packet
// it cannot decode gets a Kind other than KindOK and the fields that were
// decoded before the problem was found.
//
// What counts as a problem: the bytes ending inside a header the firewall
// needs (link, IP with its extension headers, the fixed transport header and
// TCP options) is KindTruncated; bytes ending inside the transport payload
// are not (captures are routinely cut by a snap length), so such a packet is
// KindOK with L4Len and PayloadLen still taken from the IP header. Bytes
// after the IP total length (Ethernet padding) are ignored.
//
// Fragments: a non-first fragment has no transport header (L4Off 0, ports
// 0; for IPv6, Proto is the fragment header's next header). A first
// fragment whose transport header continues in the next fragment is KindOK
// with L4Off 0 too; reassemble (pkg/defrag) and decode the whole datagram
// to see it.
func (p *Packet) Decode(data []byte, link LinkType) { p.decode(data, link, false) }

// DecodeUnreassembled decodes one packet as Decode does, except an IPv6
// first fragment, which it decodes as conntrack sees it when the kernel's
// defragmentation passes it on unreassembled (nf_ct_frag6_gather returns 0
// for a first fragment without the whole header chain,
// ipv6frag_thdr_truncated, and for a non-last fragment whose length is not
// a multiple of 8, nf_ct_frag6_queue's -EPROTO): conntrack's
// ipv6_skip_exthdr steps over a fragment header of offset 0 as over any
// other, so the fragment is a whole packet of the transport protocol,
// whose header and length are the fragment's. Frag keeps the fragment
// header's fields but IsFragment is false. A non-first fragment decodes
// as with Decode: conntrack finds no protocol in it (ipv6_get_l4proto
// refuses a non-zero offset).
func (p *Packet) DecodeUnreassembled(data []byte, link LinkType) { p.decode(data, link, true) }

// decode is Decode, or DecodeUnreassembled if unreassembled.
func (p *Packet) decode(data []byte, link LinkType, unreassembled bool) {
	*p = Packet{Data: data}
	var et uint16
	off := 0
	switch link {
	case LinkEthernet:
		if len(data) < 14 {
			p.Kind = KindTruncated
			return
		}
		et, off = be16(data[12:]), 14
	case LinkRaw, LinkIP:
		if len(data) < 1 {
			p.Kind = KindTruncated
			return
		}
		switch data[0] >> 4 {
		case 4:
			et = EtherTypeIPv4
		case 6:
			et = EtherTypeIPv6
		default:
			p.Kind = KindMalformed
			return
		}
	case LinkIPv4:
		et = EtherTypeIPv4
	case LinkIPv6:
		et = EtherTypeIPv6
	case LinkLinuxSLL:
		if len(data) < 16 {
			p.Kind = KindTruncated
			return
		}
		et, off = be16(data[14:]), 16
	case LinkLinuxSLL2:
		if len(data) < 20 {
			p.Kind = KindTruncated
			return
		}
		et, off = be16(data[0:]), 20
	case LinkNull, LinkLoop:
		// Null is host order and Loop network order, but captures get
		// moved between machines and the families are small numbers, so
		// the two byte orders can never be confused: accept both.
		if len(data) < 4 {
			p.Kind = KindTruncated
			return
		}
		fam := binary.LittleEndian.Uint32(data)
		if fam > 0xffff {
			fam = binary.BigEndian.Uint32(data)
		}
		switch fam {
		case afINET:
			et = EtherTypeIPv4
		case afINET6NetBSD, afINET6FreeBSD, afINET6Darwin:
			et = EtherTypeIPv6
		}
		off = 4
	default:
		p.Kind = KindUnsupportedLink
		return
	}
	// VLAN tags. libpcap also re-inserts the tag the kernel stripped into
	// SLL captures, so this runs for every link type with an EtherType.
	for et == etherTypeVLAN || et == etherTypeQinQ || et == etherTypeQinQOld {
		if len(data)-off < 4 {
			p.Kind = KindTruncated
			return
		}
		if p.VLANs == 0 {
			p.VLANID = be16(data[off:]) & 0x0fff
		}
		if p.VLANs < 255 {
			p.VLANs++
		}
		et = be16(data[off+2:])
		off += 4
	}
	p.EtherType = et
	p.L3Off = off
	switch et {
	case EtherTypeIPv4:
		p.decodeIPv4(off)
	case EtherTypeIPv6:
		p.decodeIPv6(off, unreassembled)
	default:
		p.Kind = KindNotIP
	}
}

// decodeIPv4 decodes the IPv4 header at off and what follows.
func (p *Packet) decodeIPv4(off int) {
	h := p.Data[off:]
	if len(h) > 0 && h[0]>>4 != 4 {
		p.Kind = KindMalformed
		return
	}
	if len(h) < 20 {
		p.Kind = KindTruncated
		return
	}
	ihl := int(h[0]&0x0f) * 4
	tot := int(be16(h[2:]))
	if ihl < 20 || tot < ihl {
		p.Kind = KindMalformed
		return
	}
	if len(h) < ihl {
		p.Kind = KindTruncated
		return
	}
	p.IPVersion = 4
	p.IPHdrLen = ihl
	p.IPLen = tot
	p.IPOptions = ihl > 20
	p.TTL = h[8]
	p.Proto = Proto(h[9])
	p.Src = netip.AddrFrom4([4]byte(h[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(h[16:20]))
	fo := be16(h[6:])
	p.Frag.ID = uint32(be16(h[4:]))
	p.Frag.DontFrag = fo&0x4000 != 0
	p.Frag.More = fo&0x2000 != 0
	p.Frag.Offset = (fo & 0x1fff) << 3
	p.Frag.IsFragment = p.Frag.More || p.Frag.Offset != 0
	if p.Frag.Offset != 0 {
		return // KindOK: a non-first fragment carries no transport header
	}
	end := off + tot
	p.decodeL4(p.Data, off+ihl, end, min(end, len(p.Data)))
}

// decodeIPv6 decodes the IPv6 header at off, walks the extension headers
// and decodes what follows; unreassembled: see DecodeUnreassembled.
func (p *Packet) decodeIPv6(off int, unreassembled bool) {
	data := p.Data
	h := data[off:]
	if len(h) > 0 && h[0]>>4 != 6 {
		p.Kind = KindMalformed
		return
	}
	if len(h) < 40 {
		p.Kind = KindTruncated
		return
	}
	// Jumbograms (payload length 0 with a hop-by-hop jumbo option) are not
	// supported: with length 0 any following header is Malformed.
	pl := int(be16(h[4:]))
	p.IPVersion = 6
	p.IPLen = 40 + pl
	p.TTL = h[7]
	p.Src = netip.AddrFrom16([16]byte(h[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(h[24:40]))
	end := off + 40 + pl
	capEnd := min(end, len(data))
	nh := h[6]
	pos := off + 40
	nhPos := off + 6 // the byte that announced the header at pos
	seenFrag := false
walk:
	for {
		var n int
		switch nh {
		case ip6HopByHop, ip6Routing, ip6DestOpts, ip6AH, ip6Fragment:
			// All of them start with next header and a length byte, and
			// are at least 8 bytes long. The kernel reads the whole of a
			// fragment header but only those two bytes of the others
			// before it moves on.
			need := 2
			if nh == ip6Fragment {
				need = 8
			}
			if end-pos < need {
				p.Kind = KindMalformed
				return
			}
			if capEnd-pos < min(8, end-pos) {
				p.Kind = KindTruncated
				return
			}
			switch nh {
			case ip6AH:
				n = (int(data[pos+1]) + 2) * 4
			case ip6Fragment:
				n = 8
			default:
				n = (int(data[pos+1]) + 1) * 8
			}
			if end-pos < n {
				// The header says it runs past the datagram. The
				// kernel's ipv6_skip_exthdr reads only its first two
				// bytes and carries on, past the end: when what
				// follows is an upper-layer protocol, conntrack gets
				// that protocol with no header to read (tracked by
				// addresses if it needs none, invalid otherwise). Decode
				// it so: the protocol, and no transport header.
				next := data[pos]
				switch next {
				case ip6HopByHop, ip6Routing, ip6DestOpts, ip6AH, ip6Fragment:
					p.Kind = KindMalformed
					return
				}
				if nh == ip6HopByHop {
					// Except a hop-by-hop header: ip6_rcv parses it
					// before netfilter (ipv6_parse_hopopts) and drops
					// the packet when it is not all there.
					p.Kind = KindMalformed
					return
				}
				p.markExtHeader(nh)
				p.Proto = Proto(next)
				p.IPHdrLen = end - off
				return
			}
			if capEnd-pos < n {
				p.Kind = KindTruncated
				return
			}
		default:
			break walk // the upper-layer header (or ESP, or No Next Header)
		}
		p.markExtHeader(nh)
		if nh == ip6Fragment {
			fo := be16(data[pos+2:])
			// RFC 8200 allows one fragment header. The kernel skips
			// any number of atomic ones (offset 0, M clear: whole
			// datagrams, RFC 6946), so do we; a real fragment behind
			// another fragment header would need nested reassembly
			// that no sender produces.
			if seenFrag && (fo != 0 || p.Frag.IsFragment) {
				p.Kind = KindMalformed
				return
			}
			seenFrag = true
			p.Frag.ID = be32(data[pos+4:])
			p.Frag.HdrOff = uint16(pos - off)
			p.Frag.NHOff = uint16(nhPos - off)
			p.Frag.Offset = fo &^ 7
			p.Frag.More = fo&1 != 0
			// An atomic fragment (offset 0, M clear) is a whole datagram
			// (RFC 6946) and needs no reassembly; so is a first fragment
			// that is not to be reassembled.
			p.Frag.IsFragment = p.Frag.Offset != 0 || p.Frag.More && !unreassembled
			if p.Frag.Offset != 0 {
				// The rest of the header chain is in the first fragment.
				p.Proto = Proto(data[pos])
				p.IPHdrLen = pos + 8 - off
				return
			}
		}
		nh = data[pos]
		nhPos = pos
		pos += n
	}
	p.Proto = Proto(nh)
	p.IPHdrLen = pos - off
	p.decodeL4(data, pos, end, capEnd)
}

// markExtHeader records that the packet carries IPv6 extension header nh.
func (p *Packet) markExtHeader(nh byte) {
	switch nh {
	case ip6HopByHop:
		p.HasHopByHop = true
	case ip6Routing:
		p.HasRouting = true
	case ip6DestOpts:
		p.HasDestOpts = true
	}
}

// decodeL4 decodes the transport header at start. end is where the IP
// header says the datagram (or fragment) ends, capEnd where the captured
// bytes of it end (capEnd <= end, start <= capEnd).
func (p *Packet) decodeL4(data []byte, start, end, capEnd int) {
	l4len := end - start
	b := data[start:capEnd]
	p.L4Len = l4len
	var hdr int // the decoded header's length
	// One switch both picks the protocol's fixed header length and decodes
	// it: choosing the length first and switching again cost a branch per
	// packet that mispredicts on mixed traffic.
	switch p.Proto {
	case ProtoTCP:
		if !p.fixedHeader(len(b), l4len, 20) {
			return
		}
		doff := int(b[12]>>4) * 4
		if doff < 20 {
			p.Kind = KindMalformed
			return
		}
		if doff > l4len {
			if p.Frag.IsFragment {
				return
			}
			p.Kind = KindMalformed
			return
		}
		if doff > len(b) {
			p.Kind = KindTruncated
			return
		}
		p.SrcPort = be16(b[0:])
		p.DstPort = be16(b[2:])
		p.Seq = be32(b[4:])
		p.Ack = be32(b[8:])
		p.TCPFlags = b[13]
		p.Window = be16(b[14:])
		p.TCPHdrLen = doff
		if doff > 20 {
			p.TCPOpts.parse(b[20:doff])
		}
		hdr = doff
		p.PayloadLen = l4len - doff
	case ProtoUDP, ProtoUDPLite:
		if !p.fixedHeader(len(b), l4len, 8) {
			return
		}
		hdr = 8
		p.SrcPort = be16(b[0:])
		p.DstPort = be16(b[2:])
		ulen := be16(b[4:])
		p.UDPLen = ulen
		p.PayloadLen = l4len - 8
		// The first fragment's length field describes the whole datagram,
		// which this fragment cannot check.
		if !p.Frag.IsFragment {
			if p.Proto == ProtoUDP {
				// Conntrack's udp_error: invalid when the length is below
				// the header or beyond the IP payload. Shorter than the
				// IP payload is allowed; the bytes after it are not data.
				if ulen < 8 || int(ulen) > l4len {
					p.Kind = KindMalformed
					return
				}
				p.PayloadLen = int(ulen) - 8
			} else if ulen != 0 && (ulen < 8 || int(ulen) > l4len) {
				// UDP-Lite's field is the checksum coverage (0: all).
				p.Kind = KindMalformed
				return
			}
		}
	case ProtoSCTP:
		if !p.fixedHeader(len(b), l4len, 12) {
			return
		}
		hdr = 12
		p.SrcPort = be16(b[0:])
		p.DstPort = be16(b[2:])
		p.PayloadLen = l4len - 12
	case ProtoICMP, ProtoICMPv6:
		if (p.Proto == ProtoICMP) != (p.IPVersion == 4) {
			// ICMP in IPv6 or ICMPv6 in IPv4: the kernel treats them as
			// an unknown protocol too.
			p.L4Off = start
			return
		}
		if !p.fixedHeader(len(b), l4len, 8) {
			return
		}
		hdr = 8
		p.ICMPType = b[0]
		p.ICMPCode = b[1]
		p.PayloadLen = l4len - 8
		if p.hasICMPID() {
			p.ICMPID = be16(b[4:])
			p.ICMPSeq = be16(b[6:])
		} else if p.isICMPError() {
			p.decodeInner(b[8:])
		}
	case ProtoGRE:
		// Not a transport header (no ports, no payload offset), but the
		// fields conntrack keys GRE on (see GRE.decode).
		p.L4Off = start
		if !p.GRE.decode(b, l4len) {
			p.Kind = KindTruncated
		}
		return
	default:
		// Not decoded, but L4Off still says where it starts: the generic
		// tracker can read it from there.
		p.L4Off = start
		return
	}
	p.L4Off = start
	p.PayloadOff = start + hdr
}

// fixedHeader checks that a transport header of hdr bytes is there, given
// the captured bytes avail and the bytes l4len the IP header announces. If
// not, it sets Kind (a first fragment whose header continues in the next
// one stays KindOK) and returns false.
func (p *Packet) fixedHeader(avail, l4len, hdr int) bool {
	if l4len < hdr {
		if !p.Frag.IsFragment {
			p.Kind = KindMalformed
		}
		return false
	}
	if avail < hdr {
		p.Kind = KindTruncated
		return false
	}
	return true
}

// hasICMPID reports whether the ICMP message carries an identifier and a
// sequence number: the query/reply pairs that conntrack tracks. ICMPv6 node
// information (139/140) has a query type where the id would be, but the
// kernel's tuple reads the same two bytes, so it is reported the same way.
func (p *Packet) hasICMPID() bool {
	if p.Proto == ProtoICMP {
		switch p.ICMPType {
		case 0, 8, 13, 14, 15, 16, 17, 18:
			return true
		}
		return false
	}
	switch p.ICMPType {
	case 128, 129, 139, 140:
		return true
	}
	return false
}

// isICMPError reports whether the ICMP message quotes the packet that
// caused it: for ICMPv4 destination unreachable, source quench, redirect,
// time exceeded and parameter problem; for ICMPv6 types 1-4 (all errors
// below 128 that RFC 4443 defines).
func (p *Packet) isICMPError() bool {
	if p.Proto == ProtoICMP {
		switch p.ICMPType {
		case 3, 4, 5, 11, 12:
			return true
		}
		return false
	}
	// Every ICMPv6 type below 128 is an error to the kernel
	// (nf_conntrack_icmpv6_error: "is not error message?" is type >= 128),
	// the four RFC 4443 defines and the unassigned ones alike.
	return p.ICMPType < 128
}

// decodeInner decodes the packet quoted by an ICMP error: q starts at the
// quoted IP header and ends where the captured ICMP message ends. The
// quote must be of the same IP version as the error, as in the kernel
// (nf_conntrack_icmp only looks for IPv4 inside ICMPv4). When the quote is
// too short to find a connection, Inner stays zero.
func (p *Packet) decodeInner(q []byte) {
	in := &p.Inner
	var l4 []byte
	// The kernel reads the quote as a header of the error's own IP
	// version, whatever its version field says (ipv4_get_l4proto and
	// ipv6_get_l4proto look at neither), and takes an IPv4 header's
	// length from its IHL even when that is below 20.
	if p.IPVersion == 4 {
		if len(q) < 20 {
			return
		}
		ihl := int(q[0]&0x0f) * 4
		if len(q) < ihl {
			return
		}
		in.Proto = Proto(q[9])
		in.Src = netip.AddrFrom4([4]byte(q[12:16]))
		in.Dst = netip.AddrFrom4([4]byte(q[16:20]))
		in.IPVersion = 4
		if be16(q[6:])&0x1fff != 0 {
			in.Valid, in.NonFirstFragment = true, true // the addresses are all there is
			return
		}
		l4 = q[ihl:]
	} else {
		if len(q) < 40 {
			return
		}
		nh := q[6]
		pos := 40
	walk:
		for {
			var n int
			switch nh {
			case ip6HopByHop, ip6Routing, ip6DestOpts:
				if len(q)-pos < 8 {
					return
				}
				n = (int(q[pos+1]) + 1) * 8
			case ip6AH:
				if len(q)-pos < 8 {
					return
				}
				n = (int(q[pos+1]) + 2) * 4
			case ip6Fragment:
				if len(q)-pos < 8 {
					return
				}
				if be16(q[pos+2:])&^7 != 0 {
					nh = q[pos]
					pos = -1 // non-first fragment
					break walk
				}
				n = 8
			default:
				break walk
			}
			if len(q)-pos < n {
				return
			}
			nh = q[pos]
			pos += n
		}
		in.Proto = Proto(nh)
		in.Src = netip.AddrFrom16([16]byte(q[8:24]))
		in.Dst = netip.AddrFrom16([16]byte(q[24:40]))
		in.IPVersion = 6
		if pos < 0 {
			in.Valid, in.NonFirstFragment = true, true
			return
		}
		l4 = q[pos:]
	}
	// What the kernel's nf_ct_get_tuplepr needs of the quoted transport
	// header to find the connection: the 4 bytes of ports for the
	// protocols that have them, the whole 8-byte ICMP header (type, code,
	// id), nothing for the others (tracked by addresses). RFC 792
	// promises 8 bytes, but a quote that holds only the ports still
	// names its connection.
	need := 0
	switch {
	case in.Proto.HasPorts():
		need = 4
	case in.Proto == ProtoICMP || in.Proto == ProtoICMPv6:
		need = 8
	}
	if len(l4) < need {
		*in = Inner{}
		return
	}
	in.Valid = true
	switch in.Proto {
	case ProtoTCP, ProtoUDP, ProtoUDPLite, ProtoSCTP:
		in.SrcPort = be16(l4[0:])
		in.DstPort = be16(l4[2:])
		if in.Proto == ProtoTCP && len(l4) >= 8 {
			in.TCPSeq = be32(l4[4:])
		}
	case ProtoICMP, ProtoICMPv6:
		in.ICMPType = l4[0]
		in.ICMPCode = l4[1]
		in.ICMPID = be16(l4[4:])
	case ProtoGRE:
		in.GRE.decode(l4, len(l4)) // the quote is all the kernel has of it
	}
}

// parse fills o from the TCP option bytes b. Malformed options (a length
// below 2 or past the end) stop the parse, as in the kernel's
// tcp_parse_options; options with an unexpected length are skipped.
func (o *TCPOptions) parse(b []byte) {
	// Fast path: after the handshake, Linux and the BSDs send NOP, NOP,
	// timestamps on nearly every segment.
	if len(b) == 12 && be32(b) == 0x0101080a {
		o.HasTS = true
		o.TSVal = be32(b[4:])
		o.TSEcr = be32(b[8:])
		return
	}
	// Fast path: Linux opens (and answers) connections with MSS, SACK
	// permitted, timestamps, NOP, window scale. Recognising the layout as
	// a whole costs a third of walking its five options (BenchmarkDecode
	// tcp-syn-v4 24 -> 14 ns).
	if len(b) == 20 && be16(b) == 0x0204 && be32(b[4:]) == 0x0402080a && be32(b[16:])>>8 == 0x010303 {
		o.MSS = be16(b[2:])
		o.SACKPerm = true
		o.HasTS = true
		o.TSVal = be32(b[8:])
		o.TSEcr = be32(b[12:])
		o.WScale = b[19]
		o.HasWScale = true
		return
	}
	o.parseAll(b)
}

// parseAll walks the options one by one: the general case, and the
// reference the fast paths in parse are tested against.
func (o *TCPOptions) parseAll(b []byte) {
	for i := 0; i < len(b); {
		kind := b[i]
		if kind == 0 { // end of option list
			return
		}
		if kind == 1 { // no-op
			i++
			continue
		}
		if i+1 >= len(b) {
			return
		}
		n := int(b[i+1])
		if n < 2 || n > len(b)-i {
			return
		}
		opt := b[i : i+n]
		switch kind {
		case 2:
			if n == 4 {
				o.MSS = be16(opt[2:])
			}
		case 3:
			if n == 3 {
				o.WScale = opt[2]
				o.HasWScale = true
			}
		case 4:
			if n == 2 {
				o.SACKPerm = true
			}
		case 5:
			// Only the first SACK option with at least one block counts,
			// as in the kernel's tcp_sack, which reads the blocks of the
			// first well-formed one and stops. A SACK option without
			// blocks (n == 2) is legal but says nothing, and does not
			// stop the search; NSACK stays 0.
			if o.NSACK == 0 && n >= 10 && (n-2)%8 == 0 {
				k := min((n-2)/8, len(o.SACK))
				for j := range k {
					o.SACK[j] = SACKBlock{be32(opt[2+8*j:]), be32(opt[6+8*j:])}
				}
				o.NSACK = uint8(k)
			}
		case 8:
			if n == 10 {
				o.HasTS = true
				o.TSVal = be32(opt[2:])
				o.TSEcr = be32(opt[6:])
			}
		}
		i += n
	}
}

// Payload returns the transport payload (TCP or UDP data, the ICMP message
// body, SCTP chunks) as captured: shorter than PayloadLen when the capture
// was cut. It aliases Data. Nil when no transport header was decoded.
func (p *Packet) Payload() []byte {
	if p.Kind != KindOK || p.PayloadOff == 0 {
		return nil
	}
	end := min(p.PayloadOff+p.PayloadLen, len(p.Data))
	return p.Data[p.PayloadOff:end]
}

// IPv4HeaderChecksumOK reports whether an IPv4 header checksum is right
// (the kernel drops bad ones in ip_rcv before any netfilter hook). True
// for IPv6, which has no header checksum, and for packets that did not
// decode far enough to tell.
func (p *Packet) IPv4HeaderChecksumOK() bool {
	if p.IPVersion != 4 || p.IPHdrLen == 0 {
		return true
	}
	return fold(sum(p.Data[p.L3Off:p.L3Off+p.IPHdrLen], 0)) == 0xffff
}
