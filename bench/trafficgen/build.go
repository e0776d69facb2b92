package trafficgen

import (
	"encoding/binary"
	"github.com/statewall/statewall/pkg/packet"
)

// TCP flags as in byte 13 of the header.
const (
	tcpFin uint8 = 1 << 0
	tcpSyn uint8 = 1 << 1
	tcpPsh uint8 = 1 << 3
	tcpAck uint8 = 1 << 4
)

const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// seg describes one packet to write: its endpoints and transport fields.
type seg struct {
	v6         bool
	fromClient bool  // a session packet from the client (else from the server)
	slot       int   // the session's slot: the client address
	server     uint8 // server index
	// Attack packets: the source is scanner number scanner, or a random
	// spoofed address from srcRand; the destination is the server. They
	// carry no TCP options.
	attacker bool
	spoofed  bool
	scanner  uint32
	srcRand  uint64

	sport, dport uint16
	flags        uint8
	seq, ack     uint32
	win          uint16
	syn          bool   // SYN options (MSS, SACK permitted, timestamps, window scale)
	bare         bool   // no options at all
	mss          uint16 // for syn
	tsval, tsecr uint32
	payload      int
}

// addrs writes the source and destination addresses into the IP header at
// b (IPv4: offsets 12 and 16; IPv6: 8 and 24).
func (g *Generator) addrs(b []byte, e *seg) {
	var src, dst []byte
	if e.v6 {
		src, dst = b[8:24], b[24:40]
	} else {
		src, dst = b[12:16], b[16:20]
	}
	switch {
	case e.attacker:
		g.attackerAddr(src, e)
		serverAddr(dst, e.v6, e.server)
	case e.fromClient:
		clientAddr(src, e.v6, e.slot)
		serverAddr(dst, e.v6, e.server)
	default:
		serverAddr(src, e.v6, e.server)
		clientAddr(dst, e.v6, e.slot)
	}
}

var (
	prefix6 = [8]byte{0xfd, 0x00, 0x01, 0x98, 0x00, 0x18, 0, 0} // fd00:198:18::/64
)

// clientAddr: 198.18.0.0 + slot%65536, or fd00:198:18:0:c:: + slot.
func clientAddr(b []byte, v6 bool, slot int) {
	if !v6 {
		b[0], b[1], b[2], b[3] = 198, 18, byte(slot>>8), byte(slot)
		return
	}
	copy(b, prefix6[:])
	b[8], b[9], b[10], b[11] = 0, 0x0c, 0, 0
	binary.BigEndian.PutUint32(b[12:], uint32(slot))
}

// serverAddr: 198.19.0.1+i, or fd00:198:18::5:1+i.
func serverAddr(b []byte, v6 bool, i uint8) {
	if !v6 {
		b[0], b[1], b[2], b[3] = 198, 19, 0, 1+i
		return
	}
	copy(b, prefix6[:])
	b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15] = 0, 0, 0, 0, 0, 5, 0, 1+i
}

// attackerAddr: a scanner is 198.19.255.1+n or fd00:198:18:0:f:ffff:0:1+n;
// a spoofed source is random in 198.19.128.0-198.19.254.255 or
// fd00:198:18:0:f::/80 below f:ffff::.
func (g *Generator) attackerAddr(b []byte, e *seg) {
	if !e.spoofed {
		if !e.v6 {
			b[0], b[1], b[2], b[3] = 198, 19, 255, byte(1+e.scanner)
			return
		}
		copy(b, prefix6[:])
		b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15] = 0, 0x0f, 0xff, 0xff, 0, 0, 0, byte(1+e.scanner)
		return
	}
	r := e.srcRand
	if !e.v6 {
		b[0], b[1], b[2], b[3] = 198, 19, byte(128+(r>>8)%127), byte(r)
		return
	}
	copy(b, prefix6[:])
	b[8], b[9] = 0, 0x0f
	binary.BigEndian.PutUint32(b[10:], uint32(r>>16))
	b[10] &= 0x7f
	binary.BigEndian.PutUint16(b[14:], uint16(r))
}

// writeIP writes the IP header for a transport segment of l4 bytes of
// protocol proto, addresses included, and returns its length.
func (g *Generator) writeIP(b []byte, e *seg, proto uint8, l4 int) int {
	if e.v6 {
		// Version 6, traffic class 0, a flow label per connection (Linux
		// hashes one per socket).
		fl := (uint32(e.sport)*2654435761 ^ uint32(e.dport)*40503 ^ uint32(e.slot)) & 0xfffff
		binary.BigEndian.PutUint32(b[0:], 6<<28|fl)
		binary.BigEndian.PutUint16(b[4:], uint16(l4))
		b[6], b[7] = proto, 64
		g.addrs(b, e)
		return 40
	}
	b[0], b[1] = 0x45, 0
	binary.BigEndian.PutUint16(b[2:], uint16(20+l4))
	binary.BigEndian.PutUint16(b[4:], g.ipid)
	binary.BigEndian.PutUint16(b[6:], 0x4000) // DF, as Linux sets on TCP and most UDP
	b[8], b[9] = 64, proto
	b[10], b[11] = 0, 0
	g.addrs(b, e)
	binary.BigEndian.PutUint16(b[10:], ^fold(sum(b[:20], 0)))
	return 20
}

// pseudoSum is the unfolded sum of the pseudo-header of an upper layer of
// l4 bytes, for the IP header at b.
func pseudoSum(b []byte, v6 bool, proto uint8, l4 int) uint64 {
	if v6 {
		return sum(b[8:40], uint64(proto)+uint64(l4))
	}
	return sum(b[12:20], uint64(proto)+uint64(l4))
}

// fillPayload copies n bytes of the pattern into b, from an offset taken
// from k.
func (g *Generator) fillPayload(b []byte, n int, k uint32) {
	off := int(k & 2047)
	copy(b[:n], g.pattern[off:off+n])
}

// writeTCP writes an IP packet with a TCP segment and returns its length.
func (g *Generator) writeTCP(b []byte, e *seg) int {
	opts := 12 // NOP, NOP, timestamps
	switch {
	case e.attacker || e.bare:
		opts = 0
	case e.syn:
		opts = 20 // MSS, SACK permitted, timestamps, NOP, window scale
	}
	hl := 20 + opts
	l4 := hl + e.payload
	ihl := g.writeIP(b, e, protoTCP, l4)
	t := b[ihl : ihl+l4]
	binary.BigEndian.PutUint16(t[0:], e.sport)
	binary.BigEndian.PutUint16(t[2:], e.dport)
	binary.BigEndian.PutUint32(t[4:], e.seq)
	binary.BigEndian.PutUint32(t[8:], e.ack)
	t[12], t[13] = byte(hl/4)<<4, e.flags
	binary.BigEndian.PutUint16(t[14:], e.win)
	t[16], t[17], t[18], t[19] = 0, 0, 0, 0 // checksum, urgent pointer
	o := t[20:hl]
	switch opts {
	case 20:
		o[0], o[1] = 2, 4
		binary.BigEndian.PutUint16(o[2:], e.mss)
		o[4], o[5], o[6], o[7] = 4, 2, 8, 10
		binary.BigEndian.PutUint32(o[8:], e.tsval)
		binary.BigEndian.PutUint32(o[12:], e.tsecr)
		o[16], o[17], o[18], o[19] = 1, 3, 3, wscale
	case 12:
		o[0], o[1], o[2], o[3] = 1, 1, 8, 10
		binary.BigEndian.PutUint32(o[4:], e.tsval)
		binary.BigEndian.PutUint32(o[8:], e.tsecr)
	}
	g.fillPayload(t[hl:], e.payload, e.seq)
	binary.BigEndian.PutUint16(t[16:], ^fold(sum(t, pseudoSum(b, e.v6, protoTCP, l4))))
	return ihl + l4
}

// writeUDP writes an IP packet with a UDP datagram and returns its length.
func (g *Generator) writeUDP(b []byte, e *seg) int {
	l4 := 8 + e.payload
	ihl := g.writeIP(b, e, protoUDP, l4)
	u := b[ihl : ihl+l4]
	binary.BigEndian.PutUint16(u[0:], e.sport)
	binary.BigEndian.PutUint16(u[2:], e.dport)
	binary.BigEndian.PutUint16(u[4:], uint16(l4))
	u[6], u[7] = 0, 0
	g.fillPayload(u[8:], e.payload, e.seq)
	c := ^fold(sum(u, pseudoSum(b, e.v6, protoUDP, l4)))
	if c == 0 {
		c = 0xffff // 0 means "no checksum"
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return ihl + l4
}

// writeEcho writes an ICMP or ICMPv6 echo request or reply with ping's 56
// bytes of data and returns its length.
func (g *Generator) writeEcho(b []byte, e *seg, id uint16, reply bool) int {
	const data = 56
	l4 := 8 + data
	proto := uint8(protoICMP)
	typ := uint8(8)
	if reply {
		typ = 0
	}
	if e.v6 {
		proto, typ = protoICMPv6, 128
		if reply {
			typ = 129
		}
	}
	ihl := g.writeIP(b, e, proto, l4)
	m := b[ihl : ihl+l4]
	m[0], m[1], m[2], m[3] = typ, 0, 0, 0
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], uint16(e.seq))
	// A reply echoes the request's data: both come from the same offset.
	g.fillPayload(m[8:], data, uint32(id)^e.seq)
	var acc uint64
	if e.v6 {
		acc = pseudoSum(b, true, proto, l4)
	}
	binary.BigEndian.PutUint16(m[2:], ^fold(sum(m, acc)))
	return ihl + l4
}

// sum and fold are pkg/packet's Internet checksum.
func sum(b []byte, acc uint64) uint64 { return packet.OnesSum(b, acc) }

func fold(s uint64) uint16 { return packet.Fold(s) }
