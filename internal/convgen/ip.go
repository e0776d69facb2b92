package convgen

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers the generator writes.
const (
	protoHopOpts  = 0
	protoICMP     = 1
	protoTCP      = 6
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoGRE      = 47
	protoICMPv6   = 58
	protoNoNext   = 59
	protoDstOpts  = 60
	protoSCTP     = 132
	protoUDPLite  = 136
)

// ipHdr is the IP header of one packet. The builder derives lengths and the
// IPv4 header checksum from the payload.
type ipHdr struct {
	v6       bool
	src, dst netip.Addr
	ttl      uint8
	tos      uint8
	id       uint16 // IPv4 identification
	df       bool
	// opts4 are IPv4 options, padded with EOL to a multiple of 4 bytes.
	opts4 []byte
	// ext6 are IPv6 extension headers between the fixed header and the
	// transport header, each whole (next header and length bytes
	// included); build chains their next-header bytes.
	ext6 [][]byte
	// badHdrSum writes a wrong IPv4 header checksum.
	badHdrSum bool
	// lenCut makes the IPv6 payload length (IPv4 total length) this many
	// bytes shorter than the packet, which the kernel trims the packet to.
	lenCut int
}

// build returns the IP packet carrying l4 as protocol proto.
func (h ipHdr) build(proto uint8, l4 []byte) []byte {
	if h.ttl == 0 {
		h.ttl = 64
	}
	if h.v6 {
		n := 40
		for _, e := range h.ext6 {
			n += len(e)
		}
		b := make([]byte, n, n+len(l4))
		b[0] = 0x60 | h.tos>>4
		b[1] = h.tos << 4
		binary.BigEndian.PutUint16(b[4:], uint16(n-40+len(l4)-h.lenCut))
		b[7] = h.ttl
		s, d := h.src.As16(), h.dst.As16()
		copy(b[8:], s[:])
		copy(b[24:], d[:])
		// Chain the next-header bytes: the fixed header's names the first
		// extension (whose own type its first byte carried), each
		// extension's names the following one, the last's names proto.
		at, next := 6, 40
		for _, e := range h.ext6 {
			b[at] = e[0]
			copy(b[next:], e)
			at = next
			next += len(e)
		}
		b[at] = proto
		return append(b, l4...)
	}
	opts := append([]byte(nil), h.opts4...)
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	hl := 20 + len(opts)
	b := make([]byte, hl, hl+len(l4))
	b[0] = 0x40 | byte(hl/4)
	b[1] = h.tos
	binary.BigEndian.PutUint16(b[2:], uint16(hl+len(l4)-h.lenCut))
	binary.BigEndian.PutUint16(b[4:], h.id)
	if h.df {
		b[6] = 0x40
	}
	b[8], b[9] = h.ttl, proto
	s, d := h.src.As4(), h.dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], opts)
	setIPv4Sum(b[:hl], h.badHdrSum)
	return append(b, l4...)
}

// ext6Options returns an IPv6 extension header of type t (hop-by-hop or
// destination options) of 8*(units+1) bytes, units 0 or 1, that the
// kernel's ip6_parse_tlv accepts: PadN never pads more than 7 bytes in a
// row, so a 16-byte header carries an unknown option whose type says "skip
// me" (0x1e, RFC 3692's experimental type). Its first byte holds t until
// ipHdr.build chains it.
func ext6Options(t uint8, units int) []byte {
	e := []byte{t, byte(units)}
	if units > 0 {
		e = append(e, 0x1e, 6, 0, 0, 0, 0, 0, 0)
	}
	return append(e, 1, 4, 0, 0, 0, 0) // PadN, 4 zero bytes
}

// setIPv4Sum writes the IPv4 header checksum of h (the whole header), wrong
// on purpose when bad.
func setIPv4Sum(h []byte, bad bool) {
	h[10], h[11] = 0, 0
	c := ^fold(onesSum(h, 0))
	if bad {
		c ^= 0x0101
	}
	binary.BigEndian.PutUint16(h[10:], c)
}

// onesSum adds b to acc as big-endian 16-bit words.
func onesSum(b []byte, acc uint32) uint32 {
	for ; len(b) >= 2; b = b[2:] {
		acc += uint32(b[0])<<8 | uint32(b[1])
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

// fold reduces a ones' complement sum to 16 bits.
func fold(acc uint32) uint16 {
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}

// pseudoSum is the pseudo-header sum for n transport bytes of proto.
func pseudoSum(src, dst netip.Addr, proto uint8, n int) uint32 {
	var acc uint32
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		acc = onesSum(s[:], 0)
		acc = onesSum(d[:], acc)
	} else {
		s, d := src.As16(), dst.As16()
		acc = onesSum(s[:], 0)
		acc = onesSum(d[:], acc)
	}
	return acc + uint32(n>>16) + uint32(n&0xffff) + uint32(proto)
}

// csum says how to finish a transport checksum.
type csum uint8

const (
	csumGood csum = iota
	csumBad       // wrong by one bit pattern, never the other spelling of right
	csumZero      // left zero (UDP: "no checksum")
)

// setL4Sum writes the transport checksum at l4[at:] over cover (a prefix of
// l4, normally all of it), with the pseudo-header when pseudo is true.
func setL4Sum(l4 []byte, at int, cover int, pseudo bool, src, dst netip.Addr, proto uint8, how csum, zeroIsNone bool) {
	if at+2 > len(l4) {
		return
	}
	l4[at], l4[at+1] = 0, 0
	if how == csumZero {
		return
	}
	var acc uint32
	if pseudo {
		acc = pseudoSum(src, dst, proto, len(l4))
	}
	c := ^fold(onesSum(l4[:cover], acc))
	if c == 0 && zeroIsNone {
		c = 0xffff
	}
	if how == csumBad {
		c ^= 0x0400
		if c == 0 || c == 0xffff {
			c = 0x1234
		}
	}
	binary.BigEndian.PutUint16(l4[at:], c)
}
