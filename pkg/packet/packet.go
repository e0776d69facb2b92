// Package packet turns the bytes of one captured or queued packet into one
// flat, caller-owned value (Packet). Decoding never allocates and never
// panics: a packet that cannot be decoded gets a Kind that says why, and the
// caller's policy decides what happens to it.
//
// The decoder is hand-written rather than built on gopacket's
// DecodingLayerParser: the firewall needs a dozen fields from three headers,
// and a flat decoder reads them in a few tens of nanoseconds with no
// interface calls. gopacket remains the reference it is tested against.
package packet

import "net/netip"

// Kind says whether a packet decoded, and if not, why.
type Kind uint8

const (
	// KindOK: the network and transport headers (as far as the protocol is
	// known) decoded completely.
	KindOK Kind = iota
	// KindTruncated: the bytes end inside a header that was announced.
	KindTruncated
	// KindMalformed: a header field is impossible (IP version, header length
	// smaller than the minimum, total length smaller than the header, ...).
	KindMalformed
	// KindNotIP: a link-layer frame that carries no IPv4 or IPv6 (ARP, LLDP,
	// MPLS, IS-IS, ...). Such frames never reach netfilter's IP hooks.
	KindNotIP
	// KindUnsupportedLink: the capture's link type is not one we decode.
	KindUnsupportedLink
)

func (k Kind) String() string {
	switch k {
	case KindOK:
		return "ok"
	case KindTruncated:
		return "truncated"
	case KindMalformed:
		return "malformed"
	case KindNotIP:
		return "not-ip"
	case KindUnsupportedLink:
		return "unsupported-link"
	}
	return "kind?"
}

// LinkType is a pcap/pcapng link-layer header type (LINKTYPE_* values), plus
// LinkIP for packets that start at the IP header with the version in the
// first nibble (what NFQUEUE delivers).
type LinkType uint16

const (
	LinkNull      LinkType = 0   // BSD loopback, 4-byte host-order family
	LinkEthernet  LinkType = 1   // Ethernet II, with any number of 802.1Q/802.1ad tags
	LinkRaw       LinkType = 101 // raw IP, version from the first nibble
	LinkLoop      LinkType = 108 // OpenBSD loopback, 4-byte network-order family
	LinkLinuxSLL  LinkType = 113 // Linux cooked capture v1
	LinkIPv4      LinkType = 228 // raw IPv4
	LinkIPv6      LinkType = 229 // raw IPv6
	LinkLinuxSLL2 LinkType = 276 // Linux cooked capture v2
	// LinkIP is not a pcap value: raw IP as NFQUEUE hands it over. It decodes
	// like LinkRaw.
	LinkIP LinkType = 0xffff
)

// TCP flag bits as they sit in byte 13 of the TCP header.
const (
	TCPFin uint8 = 1 << iota
	TCPSyn
	TCPRst
	TCPPsh
	TCPAck
	TCPUrg
	TCPEce
	TCPCwr
)

// TCPFlagsString renders flags in tcpdump's order and letters
// (F S R P . U E W, with A for ACK), for example "SA" or "FA".
func TCPFlagsString(f uint8) string {
	return tcpFlagStrings[f]
}

var tcpFlagStrings = func() (t [256]string) {
	letters := []struct {
		bit uint8
		c   byte
	}{{TCPFin, 'F'}, {TCPSyn, 'S'}, {TCPRst, 'R'}, {TCPPsh, 'P'}, {TCPAck, 'A'}, {TCPUrg, 'U'}, {TCPEce, 'E'}, {TCPCwr, 'W'}}
	for f := 0; f < 256; f++ {
		var b []byte
		for _, l := range letters {
			if uint8(f)&l.bit != 0 {
				b = append(b, l.c)
			}
		}
		t[f] = string(b)
	}
	return t
}()

// Fragment describes IP fragmentation. The zero value means "not a
// fragment". For IPv6 an atomic fragment (offset 0, no more fragments) is
// reported with IsFragment false, since the kernel treats it as a whole
// datagram.
type Fragment struct {
	IsFragment bool   // part of a datagram split in several fragments
	More       bool   // MF flag / M bit
	Offset     uint16 // in bytes (already multiplied by 8)
	ID         uint32 // IPv4 id (16 bits) or IPv6 fragment header id
	DontFrag   bool   // IPv4 DF flag
	// IPv6 only, when a fragment header was seen: where it starts, and
	// where the next-header byte that announces it sits, both counted from
	// L3Off. Reassembly (pkg/defrag) removes the header and moves its next
	// header into that byte.
	HdrOff, NHOff uint16
}

// First reports whether this is the first fragment (the one that carries the
// transport header) of a fragmented datagram.
func (f Fragment) First() bool { return f.IsFragment && f.Offset == 0 }

// TCPOptions are the options the connection tracker needs.
type TCPOptions struct {
	MSS       uint16
	WScale    uint8 // shift count as sent (not capped)
	HasWScale bool
	SACKPerm  bool
	NSACK     uint8 // number of valid entries in SACK
	SACK      [4]SACKBlock
	HasTS     bool
	TSVal     uint32
	TSEcr     uint32
}

// SACKBlock is one selective-acknowledgement block [Left, Right).
type SACKBlock struct{ Left, Right uint32 }

// Inner is the packet quoted inside an ICMP or ICMPv6 error message: enough
// of it to find the connection the error is about.
type Inner struct {
	// Valid: the quote held an IP header of the error's own IP version and
	// what the kernel reads of its transport header to find the
	// connection: the 4 bytes of ports (TCP, UDP, UDP-Lite, SCTP), the
	// 8-byte ICMP header, nothing for other protocols; or the IP header of
	// a non-first fragment. When Valid is false Inner is zero.
	Valid bool
	// NonFirstFragment: the quoted packet is a non-first fragment, so the
	// quote has addresses and Proto but no ports (Valid is still set). The
	// kernel's conntrack finds no tuple in such a quote (get_l4proto in
	// nf_conntrack_core.c) and labels the error invalid.
	NonFirstFragment bool
	IPVersion        uint8
	Proto            Proto
	Src, Dst         netip.Addr
	SrcPort          uint16 // TCP/UDP/UDP-Lite/SCTP ports; for ICMP quotes: 0
	DstPort          uint16
	ICMPType         uint8 // when Proto is ICMP/ICMPv6
	ICMPCode         uint8
	ICMPID           uint16
	TCPSeq           uint32 // when Proto is TCP and the quote holds it
	GRE              GRE    // when Proto is GRE: as much of its header as the quote holds
}

// Packet is one decoded packet. The zero value is an empty packet; Decode
// overwrites every field, so one Packet can be reused for every packet a
// worker sees. Data aliases the caller's buffer: it is valid only as long as
// that buffer is.
type Packet struct {
	Kind Kind

	// Data is the whole captured frame; L3Off and L4Off index into it. L4Off
	// is 0 when the packet carries no transport header: a non-first
	// fragment, or a first fragment whose transport header continues in the
	// next one. For protocols without a transport header Decode parses
	// (GRE, whose fields are in GRE, ESP, ...) L4Off still says where
	// their header starts.
	Data         []byte
	L3Off, L4Off int
	// PayloadOff is the start of the transport payload (TCP/UDP/SCTP data,
	// the ICMP body after its 8-byte header); 0 when no transport header
	// was decoded.
	PayloadOff int

	// Link layer.
	VLANs     uint8  // number of 802.1Q/802.1ad tags seen
	VLANID    uint16 // outermost VLAN id, when VLANs > 0
	EtherType uint16 // innermost EtherType (0x0800, 0x86dd, 0x0806, ...)

	// Network layer.
	IPVersion uint8 // 4 or 6, 0 when Kind is KindNotIP
	Proto     Proto // transport protocol (after IPv6 extension headers)
	Src, Dst  netip.Addr
	TTL       uint8 // TTL or hop limit
	IPLen     int   // IP total length from the header (IPv6: 40 + payload length)
	IPHdrLen  int   // IPv4 header with options; IPv6 40 + extension headers
	IPOptions bool  // IPv4 options present
	Frag      Fragment
	// HasHopByHop, HasRouting, HasDestOpts: IPv6 extension headers seen.
	HasHopByHop, HasRouting, HasDestOpts bool

	// Transport layer. Ports are 0 for protocols without them.
	SrcPort, DstPort uint16
	L4Len            int // transport header + payload bytes as the IP header announces them (a fragment: its own share)
	PayloadLen       int // transport payload bytes as the headers announce them (UDP: from the UDP length)

	// TCP.
	TCPFlags  uint8
	Seq, Ack  uint32
	Window    uint16
	TCPHdrLen int // data offset in bytes
	TCPOpts   TCPOptions

	// UDP.
	UDPLen uint16 // the UDP length field (UDP-Lite: the checksum coverage, 0 meaning all)

	// ICMP and ICMPv6.
	ICMPType uint8
	ICMPCode uint8
	ICMPID   uint16 // identifier of echo, timestamp, information, address mask (ICMPv6: echo, node information)
	ICMPSeq  uint16 // their sequence number
	Inner    Inner  // for error messages

	// GRE: its header, read where the IP header announces it (the base
	// header from 4 bytes, enhanced GRE's call id from 8). GRE is not a
	// transport header here: L4Off says where it starts, PayloadOff is 0.
	GRE GRE

	// Checksums are not verified by Decode (it costs as much as the rest of
	// decoding on a 1500-byte packet); call L4ChecksumOK when it matters.
}
