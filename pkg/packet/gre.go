package packet

// GRE is what Decode reads of a GRE header (RFC 2784; RFC 2637's enhanced
// GRE, version 1, which PPTP carries its PPP frames in): the fields the
// kernel's conntrack keys a GRE connection on (gre_pkt_to_tuple in
// nf_conntrack_proto_gre.c), no more. The zero value is what a header
// shorter than its 4-byte base reads as, and what plain GRE with all
// flags clear reads as; either way a tuple without keys.
type GRE struct {
	// Flags is the first 16 bits: the C, R, K, S flags (enhanced GRE: K,
	// S, A) and the version in the low 3 bits. Zero when the header is
	// shorter than 4 bytes.
	Flags uint16
	// Proto is the protocol type of the payload: an EtherType (0x0800
	// IPv4, 0x86dd IPv6, 0x6558 Ethernet), 0x880b (PPP) in enhanced GRE.
	Proto uint16
	// CallID is an enhanced GRE header's call id (the low half of its key
	// field): the call id of the peer the packet goes to. Set with
	// HasCallID.
	CallID uint16
	// HasCallID: the header is version 1 and its first 8 bytes, which
	// hold the call id, are there. The kernel keys the tuple on the call
	// id only then: a shorter enhanced GRE header has no keys, as plain
	// GRE.
	HasCallID bool
}

// GREProtoPPP is the protocol type of enhanced GRE's PPP payload
// (GRE_PROTO_PPP).
const GREProtoPPP uint16 = 0x880b

// Version is the GRE version: 0 for GRE, 1 for enhanced GRE.
func (g *GRE) Version() uint8 { return uint8(g.Flags & 7) }

// decode reads the GRE header at the start of b, the captured bytes of a
// header the IP header announces l4len bytes for, as the kernel reads it:
// the base header if l4len holds its 4 bytes, and for version 1 the call
// id if l4len holds the 8 bytes up to it. It reports false when those
// bytes are announced but not captured (the packet is truncated).
func (g *GRE) decode(b []byte, l4len int) bool {
	if l4len < 4 {
		return true // no GRE header to read: the kernel keys on addresses
	}
	if len(b) < 4 {
		return false
	}
	g.Flags, g.Proto = be16(b), be16(b[2:])
	if g.Version() != 1 || l4len < 8 {
		return true
	}
	if len(b) < 8 {
		return false
	}
	g.CallID, g.HasCallID = be16(b[6:]), true
	return true
}
