package conntrack

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"

	"github.com/statewall/statewall/pkg/packet"
)

// Key is a conntrack tuple: the kernel's struct nf_conntrack_tuple without
// NAT or zones. An entry is stored under its original tuple; Reply gives the
// tuple the other side's packets carry, and both find the entry.
//
// Key is comparable, holds no pointers and has no padding (16+16+2+2+1+1 =
// 38 bytes, alignment 2), so == is one memequal and the entry slab that
// holds keys stays invisible to the garbage collector. Addresses are
// [16]byte (IPv4 in its IPv4-mapped form) rather than netip.Addr, whose zone
// pointer would make every entry something the GC must scan; Tailscale
// found netip.AddrPort keys about twice as slow as this layout
// (net/flowtrack.Tuple), and our index compares keys the same way a map
// does.
//
// Per protocol, as in the kernel:
//   - TCP, UDP, UDP-Lite: source and destination port;
//   - ICMP, ICMPv6: the echo identifier in the source half and (type, code)
//     in the destination half; the reply tuple keeps the identifier and has
//     the reply type (echo 8 -> 0, timestamp 13 -> 14, information 15 -> 16,
//     address mask 17 -> 18; ICMPv6 echo 128 -> 129, node information
//     139 -> 140);
//   - GRE: sport is the source key, always 0 (without a PPTP helper the
//     kernel's keymap is empty), dport the destination key: enhanced GRE's
//     call id, 0 for plain GRE (see gre.go);
//   - every other protocol: addresses only (the generic tracker).
//
// The zero Key matches no packet.
type Key struct {
	src, dst     [16]byte
	sport, dport uint16 // ICMP: sport is the identifier, dport is type<<8 | code
	proto        packet.Proto
	family       uint8 // 4 or 6
}

// NewKey returns the tuple of a protocol with ports (TCP, UDP, UDP-Lite) or,
// with zero ports, of the generic tracker.
func NewKey(proto packet.Proto, src, dst netip.AddrPort) Key {
	k := Key{src: src.Addr().As16(), dst: dst.Addr().As16(), proto: proto, family: family(src.Addr())}
	if hasPorts(proto) {
		k.sport, k.dport = src.Port(), dst.Port()
	}
	return k
}

// NewICMPKey returns the tuple of an ICMP (IPv4) or ICMPv6 (IPv6) query or
// reply.
func NewICMPKey(src, dst netip.Addr, typ, code uint8, id uint16) Key {
	fam, proto := family(src), packet.ProtoICMP
	if fam == 6 {
		proto = packet.ProtoICMPv6
	}
	return Key{src: src.As16(), dst: dst.As16(), proto: proto, family: fam,
		sport: id, dport: uint16(typ)<<8 | uint16(code)}
}

func family(a netip.Addr) uint8 {
	if a.Is4() {
		return 4
	}
	return 6
}

// hasPorts reports whether the tuple of proto carries ports. DCCP, which
// the kernel tracks with a module of its own, is tracked by the generic
// tracker here, which keys on addresses only, like the kernel's
// nf_conntrack_proto_generic. GRE has keys instead (gre.go).
func hasPorts(proto packet.Proto) bool {
	return proto == packet.ProtoTCP || proto == packet.ProtoUDP || proto == packet.ProtoUDPLite || proto == packet.ProtoSCTP
}

func isICMP(proto packet.Proto) bool { return proto == packet.ProtoICMP || proto == packet.ProtoICMPv6 }

// packetKey sets k to the tuple of p in its own direction. It fills k in
// place rather than returning a Key: on the hot path the 38-byte copy of a
// returned value cost as much as building it.
func packetKey(k *Key, p *packet.Packet) {
	k.src, k.dst = p.Src.As16(), p.Dst.As16()
	k.proto, k.family = p.Proto, p.IPVersion
	switch {
	case hasPorts(p.Proto):
		k.sport, k.dport = p.SrcPort, p.DstPort
	case isICMP(p.Proto):
		k.sport, k.dport = p.ICMPID, uint16(p.ICMPType)<<8|uint16(p.ICMPCode)
	case p.Proto == packet.ProtoGRE:
		k.sport = 0
		k.dport, _ = greKey(&p.GRE)
	default:
		k.sport, k.dport = 0, 0
	}
}

// dirOf reports whether o is k's original tuple (0) or its reply tuple (1).
// It compares in place what Reply would build, except for ICMP, whose
// reply type needs the table.
func (k *Key) dirOf(o *Key) (uint8, bool) {
	if k.proto != o.proto || k.family != o.family {
		return 0, false
	}
	if k.src == o.src && k.dst == o.dst && k.sport == o.sport && k.dport == o.dport {
		// A tuple equal to its own reverse (a self-connect, a UDP socket
		// sending to its own address and port, a LAND SYN) is both, and
		// the kernel's lookup meets the reply: __nf_conntrack_hash_insert
		// puts the reply node at the head of the same chain after the
		// original. So from its second packet on, such a connection is
		// an established reply.
		if k.src == k.dst && !isICMP(k.proto) && k.sport == k.dport {
			return 1, true
		}
		return 0, true
	}
	if isICMP(o.proto) {
		return 1, *k == o.Reply()
	}
	return 1, k.src == o.dst && k.dst == o.src && k.sport == o.dport && k.dport == o.sport
}

// innerKey is the tuple of the packet quoted in an ICMP error, as the
// kernel's nf_ct_get_tuplepr reads it. A quote in which the kernel finds
// no tuple (enhanced GRE that does not carry PPP) gives the zero Key,
// which matches no entry.
func innerKey(in *packet.Inner) Key {
	k := Key{src: in.Src.As16(), dst: in.Dst.As16(), proto: in.Proto, family: in.IPVersion}
	switch {
	case hasPorts(in.Proto):
		k.sport, k.dport = in.SrcPort, in.DstPort
	case isICMP(in.Proto):
		k.sport, k.dport = in.ICMPID, uint16(in.ICMPType)<<8|uint16(in.ICMPCode)
	case in.Proto == packet.ProtoGRE:
		var ok bool
		if k.dport, ok = greKey(&in.GRE); !ok {
			return Key{}
		}
	}
	return k
}

// icmpInverse maps an ICMP query type to its reply type and back, plus one
// (0: no inverse), like the kernel's invmap tables.
var icmpInverse = [2][256]uint8{
	{ // ICMP
		8: 0 + 1, 0: 8 + 1, // echo
		13: 14 + 1, 14: 13 + 1, // timestamp
		15: 16 + 1, 16: 15 + 1, // information
		17: 18 + 1, 18: 17 + 1, // address mask
	},
	{ // ICMPv6
		128: 129 + 1, 129: 128 + 1, // echo
		139: 140 + 1, 140: 139 + 1, // node information
	},
}

// icmpTable selects the row of icmpInverse for proto.
func icmpTable(proto packet.Proto) int {
	if proto == packet.ProtoICMPv6 {
		return 1
	}
	return 0
}

// icmpInvertible reports whether an ICMP type has a reply tuple (the kernel's
// nf_ct_invert_tuple succeeds).
func icmpInvertible(proto packet.Proto, typ uint8) bool {
	return icmpInverse[icmpTable(proto)][typ] != 0
}

// Reply returns the tuple of the other direction. For an ICMP type without
// an inverse (errors, unknown types) the type is left as it is; such tuples
// never get an entry.
func (k Key) Reply() Key {
	r := Key{src: k.dst, dst: k.src, proto: k.proto, family: k.family}
	if isICMP(k.proto) {
		r.sport = k.sport
		typ := uint8(k.dport >> 8)
		if inv := icmpInverse[icmpTable(k.proto)][typ]; inv != 0 {
			typ = inv - 1
		}
		r.dport = uint16(typ)<<8 | k.dport&0xff
		return r
	}
	r.sport, r.dport = k.dport, k.sport
	return r
}

// Family is 4 or 6 (0 for the zero Key).
func (k Key) Family() uint8 { return k.family }

// Proto is the IP protocol.
func (k Key) Proto() packet.Proto { return k.proto }

// Src is the source address.
func (k Key) Src() netip.Addr { return k.addr(k.src) }

// Dst is the destination address.
func (k Key) Dst() netip.Addr { return k.addr(k.dst) }

func (k Key) addr(a [16]byte) netip.Addr {
	if k.family == 4 {
		return netip.AddrFrom16(a).Unmap()
	}
	return netip.AddrFrom16(a)
}

// SrcPort is the source port (0 for protocols without ports).
func (k Key) SrcPort() uint16 {
	if !hasPorts(k.proto) {
		return 0
	}
	return k.sport
}

// DstPort is the destination port (0 for protocols without ports).
func (k Key) DstPort() uint16 {
	if !hasPorts(k.proto) {
		return 0
	}
	return k.dport
}

// GREKeys are a GRE tuple's source and destination keys (0 and 0 for
// other protocols): for enhanced GRE (PPTP) the destination key is the
// call id the packets carry, the source key is always 0 (see gre.go).
func (k Key) GREKeys() (src, dst uint16) {
	if k.proto != packet.ProtoGRE {
		return 0, 0
	}
	return k.sport, k.dport
}

// NewGREKey returns the tuple of a GRE packet from src to dst with the
// given destination key: the call id of an enhanced GRE (PPTP) packet, 0
// for plain GRE.
func NewGREKey(src, dst netip.Addr, dstKey uint16) Key {
	return Key{src: src.As16(), dst: dst.As16(), proto: packet.ProtoGRE, family: family(src), dport: dstKey}
}

// ICMPType is the ICMP or ICMPv6 type of the tuple (0 for other
// protocols).
func (k Key) ICMPType() uint8 {
	if !isICMP(k.proto) {
		return 0
	}
	return uint8(k.dport >> 8)
}

// ICMPCode is the ICMP or ICMPv6 code of the tuple (0 for other
// protocols).
func (k Key) ICMPCode() uint8 {
	if !isICMP(k.proto) {
		return 0
	}
	return uint8(k.dport)
}

// ICMPID is the ICMP or ICMPv6 echo identifier of the tuple (0 for other
// protocols).
func (k Key) ICMPID() uint16 {
	if !isICMP(k.proto) {
		return 0
	}
	return k.sport
}

// String renders the tuple the way conntrack -L does:
// "src=198.18.0.1 dst=198.18.0.2 sport=5353 dport=53", with
// "type=8 code=0 id=7" for ICMP and "srckey=0x0 dstkey=0x4001" for GRE.
func (k Key) String() string {
	switch {
	case isICMP(k.proto):
		return fmt.Sprintf("src=%v dst=%v type=%d code=%d id=%d", k.Src(), k.Dst(), k.ICMPType(), k.ICMPCode(), k.ICMPID())
	case hasPorts(k.proto):
		return fmt.Sprintf("src=%v dst=%v sport=%d dport=%d", k.Src(), k.Dst(), k.sport, k.dport)
	case k.proto == packet.ProtoGRE:
		return fmt.Sprintf("src=%v dst=%v srckey=%#x dstkey=%#x", k.Src(), k.Dst(), k.sport, k.dport)
	}
	return fmt.Sprintf("src=%v dst=%v", k.Src(), k.Dst())
}

// hasher is the seeded hash of a Key. It is symmetric: a tuple and its
// Reply hash alike, so both directions of a connection live in one shard
// under one lock, and the index needs one slot per connection instead of
// two (the kernel and gVisor insert both tuples; they need two locks and
// twice the index).
//
// Each endpoint (address, port) is hashed on its own and the two are
// added, which is what makes the hash symmetric; ICMP identifiers and types
// are not swapped by Reply, so they go into the non-symmetric part with the
// type replaced by the query type of its pair. Every step is a
// wyhash-style 64x64->128 multiply folded to 64 bits, with secret seeds: an
// attacker who cannot read the seeds cannot aim many tuples at one slot
// (the kernel seeds its hash for the same reason). Ports are mixed in
// after the address, not XORed into it, since an IPv6 sender picks the low
// address bits and the port and could otherwise cancel one with the other.
// No allocation; about 5 multiplies per key.
type hasher struct{ k [6]uint64 }

func newHasher(seed uint64) hasher {
	var h hasher
	for i := range h.k {
		seed += 0x9e3779b97f4a7c15 // splitmix64
		z := seed
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		h.k[i] = (z ^ z>>31) | 1
	}
	return h
}

func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func (h *hasher) endpoint(a *[16]byte, port uint16) uint64 {
	x := mum(binary.LittleEndian.Uint64(a[0:8])^h.k[0], binary.LittleEndian.Uint64(a[8:16])^h.k[1])
	return mum(x^h.k[2], uint64(port)^h.k[3])
}

// sum hashes k. The low bits pick the shard, bits 24-31 are the slot's
// fingerprint and bits 32-63 the slot position (see shard).
func (h *hasher) sum(k *Key) uint64 {
	extra := uint64(k.family) | uint64(k.proto)<<8
	var sp, dp uint16
	if isICMP(k.proto) {
		typ := uint8(k.dport >> 8)
		// Hash a query/reply pair under the lower of the two types, so
		// that a tuple and its Reply agree.
		if inv := icmpInverse[icmpTable(k.proto)][typ]; inv != 0 && inv-1 < typ {
			typ = inv - 1
		}
		extra |= uint64(k.sport)<<16 | uint64(typ)<<32 | uint64(k.dport&0xff)<<40
	} else {
		sp, dp = k.sport, k.dport
	}
	return mum((h.endpoint(&k.src, sp)+h.endpoint(&k.dst, dp))^h.k[4], extra^h.k[5])
}

// KeyOf returns the original-direction tuple a packet would have if it
// started a connection (the tuple Track looks up): what state sync
// announces for a packet whose entry was just committed.
func KeyOf(p *packet.Packet) Key {
	var k Key
	packetKey(&k, p)
	return k
}
