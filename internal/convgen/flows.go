package convgen

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net/netip"
)

// udpConversation: queries and answers, repeats, a side that speaks
// first, bad and zero checksums, wrong length fields; sometimes UDP-Lite.
func (g *gen) udpConversation() {
	ca, sa, _ := g.addrs()
	proto, name := uint8(protoUDP), "udp"
	if g.chance(0.1) && g.opt.on(GateUDPLite) {
		proto, name = protoUDPLite, "udplite"
	}
	sport := uint16(1024 + g.n(64000))
	dport := []uint16{53, 123, 161, 500, 4500, 5353, uint16(g.n(65536))}[g.n(7)]
	if g.chance(0.02) {
		sport = 0
	}
	if g.opt.on(GateSelfReverse) && g.chance(0.05) {
		sa, dport = ca, sport
		name += " [self-reverse tuple]"
	}
	ends := [2]struct {
		a netip.Addr
		p uint16
		n string
	}{{ca, sport, "c"}, {sa, dport, "s"}}
	from := 0
	if g.chance(0.15) {
		from = 1
	}
	for range 1 + g.n(12) {
		a, b := ends[from], ends[1-from]
		n := g.n(200)
		switch g.pick(85, 10, 5) {
		case 1:
			n = 1200 + g.n(2000) // fragmented by the sender, or a jumbo answer
		case 2:
			n = 0
		}
		l4 := make([]byte, 8+n)
		binary.BigEndian.PutUint16(l4[0:], a.p)
		binary.BigEndian.PutUint16(l4[2:], b.p)
		fill(g, l4[8:])
		lf := len(l4)
		odd := ""
		switch g.pick(92, 3, 2, 2, 1) {
		case 1:
			lf = 8 + g.n(n+1)
			odd = " [length field shorter than the datagram]"
		case 2:
			lf = len(l4) + 1 + g.n(100)
			odd = " [length field beyond the datagram]"
		case 3:
			lf = g.n(8)
			odd = " [length field below the header]"
		case 4:
			if n > 0 {
				l4 = l4[:g.n(8)]
				odd = " [truncated header]"
				lf = 8 + n
			}
		}
		cover := len(l4)
		if proto == protoUDPLite {
			// The field is the checksum coverage: 0 for all.
			switch g.pick(50, 35, 10, 5) {
			case 0:
				lf = 0
			case 1:
				lf = 8 + g.n(max(1, len(l4)-7))
			case 2:
				lf = g.n(8)
				odd = " [coverage below the header]"
			case 3:
				lf = len(l4) + 1 + g.n(10)
				odd = " [coverage beyond the datagram]"
			}
			if lf >= 8 && lf <= len(l4) {
				cover = lf
			}
		}
		if len(l4) >= 6 {
			binary.BigEndian.PutUint16(l4[4:], uint16(lf))
		}
		sum := csumGood
		switch g.pick(92, 5, 3) {
		case 1:
			sum = csumBad
		case 2:
			sum = csumZero
		}
		if len(l4) >= 8 {
			setL4Sum(l4, 6, cover, true, a.a, b.a, proto, sum, proto == protoUDP)
		}
		g.send(g.ip(a.a, b.a), proto, l4, fmt.Sprintf("%s %s>%s len=%d%s%s", name, a.n, b.n, n, odd, csumNote(sum)))
		if g.chance(0.7) {
			from = 1 - from
		}
	}
}

// icmpConversation: echo and the other queries with their replies, replies
// without a request, odd codes, unknown and informational types, and for
// ICMPv6 the neighbour-discovery and MLD types conntrack does not track.
func (g *gen) icmpConversation() {
	ca, sa, _ := g.addrs()
	id := g.u16()
	seq := g.u16()
	type query struct{ req, rep uint8 }
	queries := []query{{8, 0}, {8, 0}, {8, 0}, {13, 14}, {15, 16}, {17, 18}}
	if g.v6 {
		queries = []query{{128, 129}, {128, 129}, {128, 129}, {139, 140}}
	}
	q := queries[g.n(len(queries))]
	other := false // ICMP over the other IP version
	if g.chance(0.03) {
		other = true
	}
	proto := icmpProto(g.v6)
	if other {
		proto = icmpProto(!g.v6)
	}
	for range 1 + g.n(10) {
		from, to, fn := ca, sa, "c>s"
		typ, code := q.req, uint8(0)
		switch g.pick(45, 35, 4, 4, 3, 3, 3, 3) {
		case 0:
			seq++
		case 1:
			from, to, fn, typ = sa, ca, "s>c", q.rep
		case 2: // an odd code
			code = uint8(1 + g.n(255))
		case 3: // a reply with another id, or a reply first
			from, to, fn, typ = sa, ca, "s>c", q.rep
			if g.chance(0.5) {
				id++
			}
		case 4: // an informational type that makes no connection
			typ = g.unsolicited()
		case 5: // an error about nothing we sent
			if g.v6 {
				typ = uint8(1 + g.n(4))
			} else {
				typ = []uint8{3, 4, 5, 11, 12}[g.n(5)]
			}
		case 6: // a query of another kind
			qq := queries[g.n(len(queries))]
			typ = qq.req
		case 7:
			id = g.u16()
		}
		body := make([]byte, g.n(120))
		if g.chance(0.05) {
			body = make([]byte, 1400+g.n(1600))
		}
		fill(g, body)
		var rest [4]byte
		binary.BigEndian.PutUint16(rest[0:], id)
		binary.BigEndian.PutUint16(rest[2:], seq)
		body = g.icmpBody(g.v6 != other, typ, &rest, body, from, to)
		sum := csumGood
		if g.chance(0.04) {
			sum = csumBad
		}
		v6 := g.v6 != other
		if g.chance(0.03) && len(body) < 4 {
			// Shorter than an ICMP header.
			l4 := []byte{typ, code, 0, 0}[:1+g.n(3)]
			g.send(g.ip(from, to), proto, l4, fmt.Sprintf("icmp%s %s type=%d truncated to %d bytes", v6str(v6), fn, typ, len(l4)))
			continue
		}
		l4 := icmpMessage(v6, from, to, typ, code, rest, body, sum)
		if other {
			// The checksum of the other version: ICMPv6 has a
			// pseudo-header, ICMP none.
			if v6 {
				setL4Sum(l4, 2, len(l4), true, from, to, protoICMPv6, sum, false)
			} else {
				setL4Sum(l4, 2, len(l4), false, from, to, protoICMP, sum, false)
			}
		}
		note := fmt.Sprintf("icmp%s %s type=%d code=%d id=%d seq=%d len=%d%s", v6str(v6), fn, typ, code, id, seq, len(body), csumNote(sum))
		if other {
			note += " [ICMP of the other IP version]"
		}
		g.send(g.ip(from, to), proto, l4, note)
	}
}

// icmpBody returns the body of an ICMP message of type typ sent from src to
// dst, and adjusts its 4 header bytes rest: body as given for echo and the
// types whose bytes no tool reads as addresses, and otherwise the
// structure of the type with addresses of the test ranges in it (neighbour
// discovery targets, MLD groups, a quoted packet for errors), because
// every address on the oracle's interface must be in the test ranges.
func (g *gen) icmpBody(v6 bool, typ uint8, rest *[4]byte, body []byte, src, dst netip.Addr) []byte {
	addr := func(a netip.Addr) []byte { return a.AsSlice() }
	quote := func() []byte {
		// A packet of a flow that was never seen, from dst to src.
		l4 := make([]byte, 8+g.n(20))
		binary.BigEndian.PutUint16(l4[0:], uint16(g.n(65536)))
		binary.BigEndian.PutUint16(l4[2:], uint16(g.n(65536)))
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		return g.ip(src, dst).build(protoUDP, l4)
	}
	if !v6 {
		switch typ {
		case 3, 4, 11, 12:
			return quote()
		case 5:
			*rest = [4]byte(addr(src))
			return quote()
		case 9: // router advertisement: no (address, preference) entries
			rest[0] = 0
		}
		return body
	}
	switch typ {
	case 1, 2, 3, 4:
		return quote()
	case 130, 131, 132: // MLD: the group
		return addr(dst)
	case 133:
		return nil
	case 134:
		return body[:min(len(body), 8)]
	case 135, 136:
		return addr(dst)
	case 137:
		return append(addr(dst), addr(dst)...)
	case 143: // MLDv2 report: no records
		*rest = [4]byte{}
		return nil
	}
	return body
}

// unsolicited returns an ICMP type that opens no connection: router
// advertisements and solicitations, unknown types; for ICMPv6 the
// neighbour-discovery and MLD types (untracked), and other
// informational types.
func (g *gen) unsolicited() uint8 {
	if !g.v6 {
		return []uint8{9, 10, uint8(19 + g.n(237)), 0, 14, 16, 18, 6, 7}[g.n(9)]
	}
	t := []uint8{129, 130, 131, 132, 133, 134, 135, 136, 138, 141, 142, 143, 144, 145, 146, 147, 148, 149, 150, 151, 152, 153, 154, 140, uint8(155 + g.n(101))}[g.n(25)]
	if t == 137 && !g.opt.on(GateICMPv6OddErrors) {
		t = 138
	}
	return t
}

// otherConversation: protocols conntrack tracks by addresses only.
func (g *gen) otherConversation() {
	ca, sa, _ := g.addrs()
	protos := []uint8{33, 50, 89, 103, 112, 115, 253, 254}
	proto := protos[g.n(len(protos))]
	from := 0
	if g.chance(0.2) {
		from = 1
	}
	addrs := [2]netip.Addr{ca, sa}
	for range 1 + g.n(8) {
		body := make([]byte, g.n(300))
		fill(g, body)
		g.send(g.ip(addrs[from], addrs[1-from]), proto, body, fmt.Sprintf("proto %d %s len=%d", proto, []string{"c>s", "s>c"}[from], len(body)))
		if g.chance(0.6) {
			from = 1 - from
		}
	}
	if g.v6 && g.opt.on(GateNoNextHeader) && g.chance(0.5) {
		// "No next header" after the fixed header or after an
		// extension, with or without bytes behind it.
		for range 1 + g.n(3) {
			body := make([]byte, g.n(2)*g.n(64))
			fill(g, body)
			h := g.ip(addrs[from], addrs[1-from])
			g.send(h, protoNoNext, body, fmt.Sprintf("ipv6 no next header %s len=%d", []string{"c>s", "s>c"}[from], len(body)))
			from = 1 - from
		}
	}
}

// sctpConversation (GateSCTP): an association and its departures.
func (g *gen) sctpConversation() {
	ca, sa, _ := g.addrs()
	sport, dport := uint16(1024+g.n(64000)), []uint16{2905, 3868, 36412, uint16(1 + g.n(65535))}[g.n(4)]
	if g.opt.on(GateSelfReverse) && g.chance(0.05) {
		sa, dport = ca, sport
	}
	addr := [2]netip.Addr{ca, sa}
	port := [2]uint16{sport, dport}
	tag := [2]uint32{g.u32() | 1, g.u32() | 1} // the tag each end chose (what the peer must send)
	type chunk struct {
		t     uint8
		flags uint8
		body  []byte
	}
	send := func(from int, vtag uint32, note string, chunks ...chunk) {
		l4 := make([]byte, 12)
		binary.BigEndian.PutUint16(l4[0:], port[from])
		binary.BigEndian.PutUint16(l4[2:], port[1-from])
		binary.BigEndian.PutUint32(l4[4:], vtag)
		var names []string
		for _, c := range chunks {
			n := 4 + len(c.body)
			l4 = append(l4, c.t, c.flags, byte(n>>8), byte(n))
			l4 = append(l4, c.body...)
			for len(l4)%4 != 0 {
				l4 = append(l4, 0)
			}
			names = append(names, sctpChunkName(c.t))
		}
		bad := g.chance(0.03)
		crc := crc32.Checksum(l4, crc32.MakeTable(crc32.Castagnoli))
		if bad {
			crc++
		}
		binary.LittleEndian.PutUint32(l4[8:], crc)
		n := fmt.Sprintf("sctp %s vtag=%#x %v%s", []string{"c>s", "s>c"}[from], vtag, names, note)
		if bad {
			n += " [bad CRC32c]"
		}
		g.send(g.ip(addr[from], addr[1-from]), protoSCTP, l4, n)
	}
	initBody := func(t uint32) []byte {
		b := make([]byte, 16)
		binary.BigEndian.PutUint32(b[0:], t)
		binary.BigEndian.PutUint32(b[4:], 65536)
		binary.BigEndian.PutUint16(b[8:], 10)
		binary.BigEndian.PutUint16(b[10:], 10)
		binary.BigEndian.PutUint32(b[12:], g.u32())
		return b
	}
	data := func() chunk {
		b := make([]byte, 12+g.n(100))
		fill(g, b)
		return chunk{0, 3, b}
	}
	sack := func() chunk { return chunk{3, 0, make([]byte, 12)} }
	hb := func(t uint8) chunk { return chunk{t, 0, []byte{0, 1, 0, 8, 1, 2, 3, 4}} }
	// The opening.
	switch g.pick(70, 10, 10, 10) {
	case 0:
		send(0, 0, "", chunk{1, 0, initBody(tag[0])})
		send(1, tag[0], "", chunk{2, 0, initBody(tag[1])})
		send(0, tag[1], "", chunk{10, 0, make([]byte, 8+g.n(32))})
		send(1, tag[0], "", chunk{11, 0, nil})
	case 1: // INIT with a non-zero tag
		send(0, g.u32()|1, " [INIT with a non-zero tag]", chunk{1, 0, initBody(tag[0])})
	case 2: // picked up mid-association
		send(0, tag[1], " [mid-association]", data())
	case 3: // the INIT bundled with another chunk
		send(0, 0, " [INIT bundled]", chunk{1, 0, initBody(tag[0])}, data())
		send(1, tag[0], "", chunk{2, 0, initBody(tag[1])})
	}
	for range g.n(12) {
		i := g.n(2)
		vt := tag[1-i]
		note := ""
		if g.chance(0.08) {
			vt, note = g.u32(), " [wrong tag]"
		}
		switch g.pick(30, 15, 10, 8, 5, 5, 5, 5, 5, 4, 4, 4) {
		case 0:
			send(i, vt, note, data())
		case 1:
			send(i, vt, note, sack())
		case 2:
			send(i, vt, note, hb(4))
		case 3:
			send(i, vt, note, hb(5))
		case 4:
			send(i, vt, note, data(), sack())
		case 5: // SHUTDOWN, SHUTDOWN ACK, SHUTDOWN COMPLETE
			send(i, vt, note, chunk{7, 0, make([]byte, 4)})
			send(1-i, tag[i], "", chunk{8, 0, nil})
			send(i, tag[1-i], "", chunk{14, 0, nil})
		case 6: // ABORT, sometimes with the T bit (the sender's own tag)
			if g.chance(0.3) {
				send(i, tag[i], " [ABORT, T bit]", chunk{6, 1, nil})
			} else {
				send(i, vt, note, chunk{6, 0, nil})
			}
		case 7: // a restart: INIT in the association
			send(i, 0, " [INIT again]", chunk{1, 0, initBody(g.u32() | 1)})
		case 8: // an unknown chunk type
			send(i, vt, note, chunk{uint8(15 + g.n(240)), uint8(g.n(256)), make([]byte, 4*g.n(4))})
		case 9: // COOKIE ECHO again
			send(i, vt, note, chunk{10, 0, make([]byte, 8)})
		case 10: // SHUTDOWN COMPLETE alone, T bit
			send(i, tag[i], " [SHUTDOWN COMPLETE, T bit]", chunk{14, 1, nil})
		case 11: // an INIT ACK out of the blue
			send(i, vt, note, chunk{2, 0, initBody(g.u32() | 1)})
		}
	}
}

func sctpChunkName(t uint8) string {
	names := map[uint8]string{0: "DATA", 1: "INIT", 2: "INIT_ACK", 3: "SACK", 4: "HEARTBEAT", 5: "HEARTBEAT_ACK", 6: "ABORT", 7: "SHUTDOWN", 8: "SHUTDOWN_ACK", 10: "COOKIE_ECHO", 11: "COOKIE_ACK", 14: "SHUTDOWN_COMPLETE"}
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("chunk%d", t)
}

// greConversation (GateGRE): GRE version 0, with and without key, and
// version 1 (enhanced GRE, as PPTP uses) with call ids.
func (g *gen) greConversation() {
	ca, sa, _ := g.addrs()
	addr := [2]netip.Addr{ca, sa}
	v1 := g.chance(0.5)
	key := [2]uint32{g.u32(), g.u32()}
	useKey := g.chance(0.5)
	from := 0
	if g.chance(0.2) {
		from = 1
	}
	var seq [2]uint32
	for range 1 + g.n(10) {
		var h []byte
		payload := make([]byte, 16+g.n(100))
		fill(g, payload)
		// Nothing a tool would take for a tunnelled IP packet: PPP LCP,
		// and for bridged Ethernet a local experimental EtherType.
		copy(payload, []byte{0xff, 0x03, 0xc0, 0x21})
		payload[12], payload[13] = 0x88, 0xb5
		note := ""
		if v1 {
			// K set, version 1, protocol PPP, payload length, call id
			// (the peer's), sometimes a sequence number and an ack.
			flags := uint16(0x2001)
			s := g.chance(0.7)
			a := g.chance(0.5)
			if s {
				flags |= 0x1000
			}
			if a {
				flags |= 0x0080
			}
			h = binary.BigEndian.AppendUint16(nil, flags)
			h = binary.BigEndian.AppendUint16(h, 0x880b)
			h = binary.BigEndian.AppendUint16(h, uint16(len(payload)))
			callID := uint16(key[1-from])
			if g.chance(0.1) {
				callID, note = g.u16(), " [another call id]"
			}
			h = binary.BigEndian.AppendUint16(h, callID)
			if s {
				seq[from]++
				h = binary.BigEndian.AppendUint32(h, seq[from])
			}
			if a {
				h = binary.BigEndian.AppendUint32(h, seq[1-from])
			}
			note = fmt.Sprintf("gre v1 call=%d%s", callID, note)
		} else {
			flags := uint16(0)
			if useKey {
				flags |= 0x2000
			}
			h = binary.BigEndian.AppendUint16(nil, flags)
			h = binary.BigEndian.AppendUint16(h, []uint16{0x6558, 0x880b, 0x88be, 0x0001}[g.n(4)])
			if useKey {
				h = binary.BigEndian.AppendUint32(h, key[0])
			}
			note = "gre v0"
			if useKey {
				note += fmt.Sprintf(" key=%d", key[0])
			}
		}
		g.send(g.ip(addr[from], addr[1-from]), protoGRE, append(h, payload...), fmt.Sprintf("%s %s len=%d", note, []string{"c>s", "s>c"}[from], len(payload)))
		if g.chance(0.6) {
			from = 1 - from
		}
	}
}
