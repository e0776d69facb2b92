package convgen

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// send builds the datagram and puts it on the wire: whole, or (at the
// conversation's fragment rate) in fragments; then, at its error rate, an
// ICMP error about it follows.
func (g *gen) send(h ipHdr, proto uint8, l4 []byte, note string) []byte {
	if g.opt.on(GateExtPastPayload) && h.v6 && g.chance(0.02) {
		if len(h.ext6) == 0 {
			h.ext6 = [][]byte{ext6Options(protoDstOpts, 0)}
		}
		// The payload length ends inside the extension headers or the
		// transport header.
		n := len(l4)
		for _, e := range h.ext6 {
			n += len(e)
		}
		h.lenCut = len(l4) + 1 + g.n(n-len(l4))
		note += " [payload length ends " + fmt.Sprint(h.lenCut-len(l4)) + " bytes into the extension headers]"
	}
	d := h.build(proto, l4)
	if h.lenCut == 0 && g.chance(g.fragRate) {
		g.fragments(d, note)
	} else {
		g.emit(d, note)
	}
	if g.chance(g.errRate) {
		g.errorAbout(d)
	}
	return d
}

// fragments sends datagram d in fragments, with the oddities of real and
// hostile fragmenters: out of order, duplicated, overlapping (with the same
// or other bytes), one missing, IPv6 atomic fragments.
func (g *gen) fragments(d []byte, note string) {
	v6 := d[0]>>4 == 6
	var hdr, body []byte // the part every fragment repeats, the part split
	var nextAt int       // IPv6: where the next-header byte naming the fragmentable part is
	if v6 {
		hdr, nextAt = d[:40], 6
		if d[6] == protoHopOpts && len(d) >= 48 {
			n := 8 * (int(d[41]) + 1)
			if 40+n <= len(d) {
				hdr, nextAt = d[:40+n], 40
			}
		}
		body = d[len(hdr):]
	} else {
		ihl := int(d[0]&0x0f) * 4
		hdr, body = d[:ihl], d[ihl:]
	}
	id := uint32(g.nextID())
	if v6 {
		id = g.u32()
	}
	type piece struct {
		off, end int
		last     bool
		alt      bool // bytes changed
	}
	// Without GateIPv6FragHeaderChain an IPv6 first fragment holds the
	// whole header chain and the transport header's first bytes (the
	// kernel lets a shorter one through unreassembled: the gate), and a
	// copy of it with other bytes changes none of them.
	chain := 0
	if v6 && !g.opt.on(GateIPv6FragHeaderChain) {
		chain = headerChain6(body, d[nextAt])
	}
	var pieces []piece
	unaligned := ""
	switch {
	case v6 && g.chance(0.08):
		pieces = []piece{{0, len(body), true, false}} // atomic fragment
		note += " [atomic fragment]"
	case len(body) <= 8:
		g.emit(d, note+" [too short to fragment]")
		return
	default:
		cuts := []int{}
		k := 1 + g.n(3)
		for range k {
			c := 8 * (1 + g.n((len(body)-1)/8))
			if c < len(body) && c >= chain {
				cuts = append(cuts, c)
			}
		}
		if len(cuts) == 0 {
			g.emit(d, note+" [too short to fragment]")
			return
		}
		cuts = sortedUnique(cuts, len(body))
		prev := 0
		for _, c := range cuts {
			pieces = append(pieces, piece{prev, c, false, false})
			prev = c
		}
		pieces = append(pieces, piece{prev, len(body), true, false})
		// A first piece that runs a few bytes into the second (the same
		// bytes): a non-last fragment whose length is not a multiple of 8.
		if len(pieces) > 1 && (v6 && g.opt.on(GateIPv6FragUnaligned) && g.chance(0.15) || !v6 && g.chance(0.03)) {
			pieces[0].end = min(pieces[0].end+1+g.n(7), len(body)-1)
			if pieces[0].end%8 != 0 {
				unaligned = " [non-last fragment not a multiple of 8]"
			}
		}
	}
	what := fmt.Sprintf(" [fragments id=%#x: %d pieces", id, len(pieces))
	if len(pieces) > 1 {
		switch g.pick(60, 12, 10, 8, 5, 5) {
		case 1:
			for i, j := 0, len(pieces)-1; i < j; i, j = i+1, j-1 {
				pieces[i], pieces[j] = pieces[j], pieces[i]
			}
			what += ", reversed"
		case 2:
			g.r.Shuffle(len(pieces), func(i, j int) { pieces[i], pieces[j] = pieces[j], pieces[i] })
			what += ", shuffled"
		case 3:
			i := g.n(len(pieces))
			pieces = append(pieces[:i+1], pieces[i:]...)
			if g.chance(0.3) {
				pieces[i+1].alt = true
				what += fmt.Sprintf(", piece %d sent twice, the copy with other bytes", i)
			} else {
				what += fmt.Sprintf(", piece %d sent twice", i)
			}
		case 4:
			i := g.n(len(pieces))
			pieces = append(pieces[:i], pieces[i+1:]...)
			what += fmt.Sprintf(", piece %d never sent", i)
		case 5:
			// An overlapping piece across a boundary.
			i := g.n(len(pieces) - 1)
			off := max(0, pieces[i].end-8) &^ 7
			end := min(len(body), pieces[i].end+8)
			if end-off >= 8 {
				p := piece{off, end, end == len(body), g.chance(0.5)}
				pieces = append(pieces[:i+1], append([]piece{p}, pieces[i+1:]...)...)
				what += fmt.Sprintf(", overlapping piece [%d,%d)", off, end)
				if p.alt {
					what += " with other bytes"
				}
			}
		}
	}
	what += "]" + unaligned
	for _, p := range pieces {
		data := append([]byte(nil), body[p.off:p.end]...)
		if p.alt {
			for i := range data {
				if p.off+i >= chain {
					data[i] ^= 0x5a
				}
			}
		}
		var f []byte
		if v6 {
			f = append(append([]byte(nil), hdr...), make([]byte, 8)...)
			fh := f[len(hdr):]
			fh[0] = f[nextAt]
			f[nextAt] = protoFragment
			fo := uint16(p.off) // a multiple of 8: the low 3 bits are flags
			if !p.last {
				fo |= 1
			}
			binary.BigEndian.PutUint16(fh[2:], fo)
			binary.BigEndian.PutUint32(fh[4:], id)
			f = append(f, data...)
			binary.BigEndian.PutUint16(f[4:], uint16(len(f)-40))
		} else {
			f = append(append([]byte(nil), hdr...), data...)
			fo := uint16(p.off / 8)
			if !p.last {
				fo |= 0x2000
			}
			binary.BigEndian.PutUint16(f[6:], fo)
			binary.BigEndian.PutUint16(f[4:], uint16(id))
			binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
			setIPv4Sum(f[:len(hdr)], false)
		}
		g.emit(f, fmt.Sprintf("%s%s frag [%d,%d)", note, what, p.off, p.end))
		what = ""
	}
}

// headerChain6 returns how many bytes of the fragmentable part body (whose
// first header is next) the kernel's ipv6frag_thdr_truncated wants in a
// first fragment: the extension headers, then 20 bytes of TCP, 8 of UDP
// or ICMPv6, 1 of anything else.
func headerChain6(body []byte, next uint8) int {
	at := 0
	for {
		switch next {
		case protoHopOpts, protoRouting, protoDstOpts:
			if at+2 > len(body) {
				return at + 2
			}
			next, at = body[at], at+8*(int(body[at+1])+1)
			continue
		case protoTCP:
			return at + 20
		case protoUDP, protoICMPv6:
			return at + 8
		case protoNoNext:
			return at
		}
		return at + 1
	}
}

// sortedUnique sorts cuts, drops duplicates and those outside (0, n).
func sortedUnique(cuts []int, n int) []int {
	var out []int
	for _, c := range cuts {
		if c <= 0 || c >= n {
			continue
		}
		dup := false
		for _, o := range out {
			dup = dup || o == c
		}
		if !dup {
			out = append(out, c)
		}
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// errorAbout sends an ICMP or ICMPv6 error quoting datagram d (a packet the
// conversation sent): mostly as a router or the destination would, from a
// third host to d's source with d's start quoted; sometimes altered: to the
// wrong host, quoting changed ports or swapped addresses, truncated, with a
// bad checksum.
func (g *gen) errorAbout(d []byte) {
	v6 := d[0]>>4 == 6
	var qsrc, qdst netip.Addr
	if v6 {
		qsrc, qdst = netip.AddrFrom16([16]byte(d[8:24])), netip.AddrFrom16([16]byte(d[24:40]))
	} else {
		qsrc, qdst = netip.AddrFrom4([4]byte(d[12:16])), netip.AddrFrom4([4]byte(d[16:20]))
	}
	_, _, router := g.addrs()
	src, dst := router, qsrc
	how := "from a router"
	switch g.pick(70, 20, 5, 5) {
	case 1:
		src, how = qdst, "from the destination"
	case 2:
		src, dst, how = router, qdst, "to the wrong host (the quoted destination)"
	case 3:
		src, dst, how = qsrc, router, "to a third host"
	}
	q := append([]byte(nil), d...)
	ihl := 40
	if !v6 {
		ihl = int(q[0]&0x0f) * 4
	} else {
		ihl = l4Offset6(q)
	}
	quote := "whole"
	// The quoted protocol (for IPv6, behind the extension headers); for a
	// quoted ICMP message the "ports" are its type and checksum, and
	// changing the type (or a byte of a quote in it) could make an error
	// of a query, whose body would then be read as a quoted packet with
	// addresses from nowhere: those alterations change its id instead,
	// when it is a query that has one, or nothing. Bytes 4-7 of other ICMP
	// messages may be an address: an IPv4 redirect's gateway, which a
	// changed "id" once turned into 199.18.1.77 (seed 45361).
	qproto := uint8(0)
	if v6 && len(q) >= 40 {
		qproto = l4Proto6(q)
	} else if !v6 && len(q) >= 20 {
		qproto = q[9]
	}
	icmpq := qproto == protoICMP || qproto == protoICMPv6
	sportAt, dportAt := ihl, ihl+2
	canAlter := len(q) >= ihl+8
	if icmpq {
		sportAt, dportAt = ihl+4, ihl+5 // the two bytes of the id
		canAlter = canAlter && icmpHasID(v6, q[ihl])
	}
	switch g.pick(40, 35, 6, 4, 3, 3, 3, 3, 3) {
	case 1:
		if len(q) > ihl+8 {
			q = q[:ihl+8]
			quote = "header+8"
		}
	case 2:
		if g.opt.on(GateShortQuote) && len(q) > ihl+4 {
			q = q[:ihl+4]
			quote = "header+4 (ports only)"
		}
	case 3:
		n := g.n(min(len(q), ihl+4))
		q = q[:n]
		quote = fmt.Sprintf("cut to %d bytes", n)
	case 4:
		if canAlter {
			q[sportAt] ^= 0x01
			quote = "source port changed"
		}
	case 5:
		if canAlter {
			q[dportAt] ^= 0x01
			quote = "destination port changed"
		}
	case 6:
		swapAddrs(q)
		quote = "addresses swapped"
	case 7:
		if len(q) > ihl+12 && !icmpq {
			q[len(q)-1] ^= 0xff
			quote = "a quoted byte changed (quoted checksum now wrong)"
		}
	case 8:
		// Another protocol: TCP 6 -> 38, UDP 17 -> 49, ICMP 1 -> 33, ...;
		// but not one whose body is read for addresses (DCCP 33 would
		// become ICMP, its bytes a quoted packet from nowhere).
		if !v6 && len(q) >= 20 && !carriesAddresses(q[9]^0x20) {
			q[9] ^= 0x20
			quote = "quoted protocol changed"
		}
	}
	var typ, code uint8
	var rest [4]byte
	if v6 {
		switch g.pick(40, 20, 20, 20, 8) {
		case 0:
			typ, code = 1, uint8(g.n(8))
		case 1:
			typ = 2
			binary.BigEndian.PutUint32(rest[:], 1280+uint32(g.n(200)))
		case 2:
			typ, code = 3, uint8(g.n(2))
		case 3:
			typ, code = 4, uint8(g.n(4))
			binary.BigEndian.PutUint32(rest[:], uint32(g.n(60)))
		case 4:
			typ, code = 1, uint8(g.n(8))
			if g.opt.on(GateICMPv6OddErrors) {
				switch g.pick(1, 3, 2) {
				case 0:
					typ = 0
				case 1:
					typ = uint8(5 + g.n(123))
				case 2:
					g.redirect6(d, q)
					return
				}
			}
		}
	} else {
		switch g.pick(50, 20, 10, 5, 10, 5) {
		case 0:
			typ, code = 3, uint8(g.n(16))
			if code == 4 {
				binary.BigEndian.PutUint16(rest[2:], 576+uint16(g.n(1000)))
			}
		case 1:
			typ, code = 11, uint8(g.n(2))
		case 2:
			typ, code = 12, uint8(g.n(2))
		case 3:
			typ = 4
		case 4:
			typ, code = 5, uint8(g.n(4))
			gw := router.As4()
			copy(rest[:], gw[:])
		case 5:
			typ, code = 3, uint8(16+g.n(240)) // an unknown code
		}
	}
	how2 := csumGood
	if g.chance(0.05) {
		how2 = csumBad
	}
	l4 := icmpMessage(v6, src, dst, typ, code, rest, q, how2)
	note := fmt.Sprintf("icmp%s error %d/%d %s, quote %s%s", v6str(v6), typ, code, how, quote, csumNote(how2))
	g.emit(g.ip(src, dst).build(icmpProto(v6), l4), note)
}

// redirect6 sends an ICMPv6 Redirect whose redirected-header option quotes
// q (GateICMPv6OddErrors), from the router to d's source.
func (g *gen) redirect6(d, q []byte) {
	_, _, router := g.addrs()
	src := netip.AddrFrom16([16]byte(d[8:24]))
	target, dest := netip.AddrFrom16([16]byte(d[24:40])), netip.AddrFrom16([16]byte(d[24:40]))
	body := make([]byte, 4+32)
	t, ds := target.As16(), dest.As16()
	copy(body[4:], t[:])
	copy(body[20:], ds[:])
	// Redirected header option: type 4, length in 8-byte units, 6 reserved
	// bytes, then the quote padded to 8. A quote cut inside its IP header
	// is padded with the packet's own next bytes, not zeros: zeros would
	// end a cut address as one outside the test ranges.
	n := (8 + len(q) + 7) / 8
	opt := make([]byte, 8*n)
	opt[0], opt[1] = 4, byte(n)
	if len(q) < len(d) {
		copy(opt[8:], d[:min(len(d), 8*n-8)])
	}
	copy(opt[8:], q)
	body = append(body, opt...)
	l4 := append([]byte{137, 0, 0, 0}, body...)
	setL4Sum(l4, 2, len(l4), true, router, src, protoICMPv6, csumGood, false)
	h := g.ip(router, src)
	h.ttl = 255
	g.emit(h.build(protoICMPv6, l4), "icmp6 redirect quoting the packet")
}

// icmpMessage builds an ICMP (v6: ICMPv6) message of type/code with the 4
// bytes rest and body after the 8-byte header.
func icmpMessage(v6 bool, src, dst netip.Addr, typ, code uint8, rest [4]byte, body []byte, how csum) []byte {
	l4 := make([]byte, 8, 8+len(body))
	l4[0], l4[1] = typ, code
	copy(l4[4:], rest[:])
	l4 = append(l4, body...)
	if v6 {
		setL4Sum(l4, 2, len(l4), true, src, dst, protoICMPv6, how, false)
	} else {
		setL4Sum(l4, 2, len(l4), false, src, dst, protoICMP, how, false)
	}
	return l4
}

// swapAddrs swaps the source and destination addresses of the IP header at
// the start of q (as far as q holds them).
func swapAddrs(q []byte) {
	if len(q) >= 40 && q[0]>>4 == 6 {
		for i := 0; i < 16; i++ {
			q[8+i], q[24+i] = q[24+i], q[8+i]
		}
	} else if len(q) >= 20 {
		for i := 0; i < 4; i++ {
			q[12+i], q[16+i] = q[16+i], q[12+i]
		}
	}
}

// l4Offset6 returns where the transport header of IPv6 packet b starts,
// after the extension headers the generator writes (hop-by-hop,
// destination options, fragment).
func l4Offset6(b []byte) int {
	at, _ := l4Start6(b)
	return at
}

// l4Proto6 returns the protocol of IPv6 packet b's transport header, after
// the extension headers (the last next header read when they run past b).
func l4Proto6(b []byte) uint8 {
	_, next := l4Start6(b)
	return next
}

func l4Start6(b []byte) (int, uint8) {
	at, next := 40, b[6]
	for at+8 <= len(b) {
		switch next {
		case protoHopOpts, protoDstOpts, protoRouting:
			next = b[at]
			at += 8 * (int(b[at+1]) + 1)
		case protoFragment:
			next = b[at]
			at += 8
		default:
			return at, next
		}
	}
	return min(at, len(b)), next
}

// icmpHasID reports whether an ICMP (ICMPv6 if v6) message of type typ is
// a query or reply with an identifier in bytes 4-5 (node information's
// query type sits there too): bytes that are no address.
func icmpHasID(v6 bool, typ uint8) bool {
	if v6 {
		return typ == 128 || typ == 129 || typ == 139 || typ == 140
	}
	switch typ {
	case 0, 8, 13, 14, 15, 16, 17, 18:
		return true
	}
	return false
}

// carriesAddresses reports whether an IP packet of protocol proto has
// addresses past its IP header for the kernel or the rewriter to read:
// ICMP and ICMPv6 (quotes, redirects, neighbour discovery), IP in IP, GRE.
func carriesAddresses(proto uint8) bool {
	switch proto {
	case protoICMP, protoICMPv6, protoGRE, 4, 41:
		return true
	}
	return false
}

func icmpProto(v6 bool) uint8 {
	if v6 {
		return protoICMPv6
	}
	return protoICMP
}

func v6str(v6 bool) string {
	if v6 {
		return "6"
	}
	return ""
}

func csumNote(c csum) string {
	switch c {
	case csumBad:
		return " [bad checksum]"
	case csumZero:
		return " [zero checksum]"
	}
	return ""
}
