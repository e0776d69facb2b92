package pkttest

import (
	"errors"

	"github.com/statewall/statewall/pkg/packet"
)

// The layout of a packet, shared by fields and bytes so that the two
// cannot disagree about lengths.

// v6 reports whether the packet is IPv6.
func (s *spec) v6() bool { return s.src.Is6() }

// fragHeader reports whether an IPv6 packet carries a fragment header.
func (s *spec) fragHeader() bool { return s.v6() && s.frag >= 0 }

// ipHdrLen is the IP header's length, with the IPv6 fragment header.
func (s *spec) ipHdrLen() int {
	switch {
	case !s.v6():
		return 20
	case s.fragHeader():
		return 48
	}
	return 40
}

// nonFirst reports whether the packet is a non-first fragment, which
// carries no transport header.
func (s *spec) nonFirst() bool { return s.frag > 0 }

// isFragment reports whether the packet is part of a fragmented datagram.
func (s *spec) isFragment() bool { return s.frag > 0 || s.mf }

// l4Hdr is the length of the transport header Decode reads. For protocols
// it does not parse, 8 bytes stand for their header.
func (s *spec) l4Hdr() int {
	switch s.proto {
	case pTCP:
		if s.wscale >= 0 {
			return 24 // NOP, window scale
		}
		return 20
	case pSCTP:
		return 12
	}
	return 8
}

// payloadLen is the length of what follows the transport header: len=,
// the chunks, or the quote.
func (s *spec) payloadLen() int {
	switch {
	case s.quote != nil:
		return s.quote.totalLen()
	case len(s.chunks) > 0:
		n := 0
		for _, c := range s.chunks {
			n += (c[1] + 3) &^ 3
		}
		return n
	}
	return max(s.length, 0)
}

// l4Len is the number of bytes after the IP header(s) the IP header
// announces.
func (s *spec) l4Len() int {
	switch {
	case s.nonFirst():
		return max(s.length, 0)
	case s.l4len >= 0:
		return s.l4len
	}
	return s.l4Hdr() + s.payloadLen()
}

// ipLen is the IP total length (IPv6: 40 + payload length).
func (s *spec) ipLen() int { return s.ipHdrLen() + s.l4Len() }

// totalLen is the number of bytes Bytes returns.
func (s *spec) totalLen() int {
	if s.cut >= 0 {
		return min(s.cut, s.ipLen())
	}
	return s.ipLen()
}

// udpLen is the UDP length field.
func (s *spec) udpLen() int {
	if s.udplen >= 0 {
		return s.udplen
	}
	return s.l4Len()
}

// fields builds the decoded packet, mirroring packet.Decode field by field.
func (s *spec) fields() (*packet.Packet, error) {
	switch {
	case s.cut >= 0:
		return nil, errors.New("cut= makes truncated bytes: use Bytes (Fields has no bytes)")
	case s.badsum:
		return nil, errors.New("badsum makes a wrong checksum in bytes: use Bytes (Fields has no checksum)")
	}
	if err := s.checkLen(); err != nil {
		return nil, err
	}
	p := &packet.Packet{Kind: packet.KindOK}
	setProto(&p.Proto, s.proto)
	p.Src, p.Dst, p.TTL = s.src, s.dst, s.ttl
	p.IPHdrLen, p.IPLen = s.ipHdrLen(), s.ipLen()
	p.Frag.Offset = uint16(max(s.frag, 0))
	p.Frag.More = s.mf
	p.Frag.IsFragment = s.isFragment()
	if s.v6() {
		p.IPVersion, p.EtherType = 6, packet.EtherTypeIPv6
		if s.fragHeader() {
			p.Frag.ID, p.Frag.HdrOff, p.Frag.NHOff = s.ipid, 40, 6
		}
	} else {
		p.IPVersion, p.EtherType = 4, packet.EtherTypeIPv4
		p.Frag.ID = s.ipid
		p.Frag.DontFrag = s.frag < 0
	}
	if s.nonFirst() {
		return p, nil // no transport header: the decoder stops at the IP header
	}
	l4, hdr := s.l4Len(), s.l4Hdr()
	p.L4Len = l4
	p.L4Off = p.IPHdrLen
	p.PayloadOff = p.L4Off + hdr
	p.PayloadLen = max(l4-hdr, 0)
	p.SrcPort, p.DstPort = s.sport, s.dport
	switch s.proto {
	case pTCP:
		p.Seq, p.Ack, p.TCPFlags, p.Window, p.TCPHdrLen = s.seq, s.ack, s.flags, s.win, hdr
		if s.wscale >= 0 {
			p.TCPOpts.WScale, p.TCPOpts.HasWScale = uint8(s.wscale), true
		}
	case pUDP, pUDPLite:
		p.UDPLen = uint16(s.udpLen())
		// Decode takes a UDP datagram's payload from its length field,
		// when the field is one it accepts.
		if u := s.udpLen(); s.proto == pUDP && !s.isFragment() && u >= 8 && u <= l4 {
			p.PayloadLen = u - 8
		}
	case pSCTP:
	case pICMP, pICMPv6:
		p.ICMPType, p.ICMPCode = uint8(s.icmpType), s.icmpCode
		if icmpHasID(s.proto, p.ICMPType) {
			p.ICMPID, p.ICMPSeq = s.id, uint16(s.seq)
		}
		if s.quote != nil {
			p.Inner = s.quote.inner()
		}
	default:
		// Decode does not parse the header: it says where it starts.
		p.PayloadOff, p.PayloadLen = 0, 0
	}
	if s.nol4 {
		p.L4Off, p.PayloadOff = 0, 0
	}
	return p, nil
}

// checkLen checks the lengths against what an IP header can announce.
func (s *spec) checkLen() error {
	if n := s.ipLen(); n > 0xffff+40*btoi(s.v6()) {
		return errors.New("the packet is longer than an IP header can announce")
	}
	if s.quote != nil {
		return s.quote.checkLen()
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// inner is what Decode finds in an ICMP error quoting s (packet's
// decodeInner): the quote is s's bytes, cut= of them if given.
func (s *spec) inner() packet.Inner {
	q := s.totalLen()
	var in packet.Inner
	if q < s.ipHdrLen() {
		return in // too short for the IP header (IPv6: and its fragment header)
	}
	setProto(&in.Proto, s.proto)
	in.Src, in.Dst = s.src, s.dst
	in.IPVersion = 4
	if s.v6() {
		in.IPVersion = 6
	}
	if s.nonFirst() {
		in.Valid, in.NonFirstFragment = true, true
		return in
	}
	// What the kernel reads of the quoted transport header: the ports,
	// or the whole ICMP header, or nothing (packet's decodeInner).
	have, need := min(q, s.ipLen())-s.ipHdrLen(), 0
	switch s.proto {
	case pTCP, pUDP, pUDPLite, pSCTP:
		need = 4
	case pICMP, pICMPv6:
		need = 8
	}
	if have < need {
		return packet.Inner{}
	}
	in.Valid = true
	switch s.proto {
	case pTCP:
		if have >= 8 {
			in.TCPSeq = s.seq
		}
		in.SrcPort, in.DstPort = s.sport, s.dport
	case pUDP, pUDPLite, pSCTP:
		in.SrcPort, in.DstPort = s.sport, s.dport
	case pICMP, pICMPv6:
		in.ICMPType, in.ICMPCode = uint8(s.icmpType), s.icmpCode
		if icmpHasID(s.proto, in.ICMPType) {
			in.ICMPID = s.id
		}
	}
	return in
}
