package pcaprewrite

import "encoding/binary"

// maxDepth bounds recursion into quoted and tunnelled packets.
const maxDepth = 4

// IP protocol numbers handled here.
const (
	protoICMP    = 1
	protoIGMP    = 2
	protoIPIP    = 4
	protoTCP     = 6
	protoUDP     = 17
	protoDCCP    = 33
	protoIPv6    = 41
	protoGRE     = 47
	protoICMPv6  = 58
	protoOSPF    = 89
	protoPIM     = 103
	protoUDPLite = 136
)

// rewriter rewrites one packet's addresses in place, with the checksums
// adjusted incrementally.
type rewriter struct {
	mp    *Mapper
	notes []string
}

func (r *rewriter) note(s string) {
	for _, n := range r.notes {
		if n == s {
			return
		}
	}
	r.notes = append(r.notes, s)
}

// ip rewrites the IPv4 or IPv6 packet at the start of b. b may be truncated
// (an ICMP quote, a tunnelled packet inside a first fragment): only the
// fields that are fully present are touched.
func (r *rewriter) ip(b []byte, depth int) {
	if len(b) < 1 || depth > maxDepth {
		return
	}
	switch b[0] >> 4 {
	case 4:
		r.ipv4(b, depth)
	case 6:
		r.ipv6(b, depth)
	}
}

// ---- IPv4 ----

// v4FinalDst returns the offset in b of the address the transport
// pseudo-header uses as destination: the last address of an unfinished
// LSRR/SSRR option, else the header's destination (as gopacket computes it).
func v4FinalDst(b []byte, ihl int) int {
	end := min(ihl, len(b))
	for i := 20; i < end; {
		t := b[i]
		if t == 0 {
			break
		}
		if t == 1 {
			i++
			continue
		}
		if i+1 >= end || b[i+1] < 2 || i+int(b[i+1]) > end {
			break
		}
		l := int(b[i+1])
		if (t == 131 || t == 137) && l >= 7 && int(b[i+2]) <= l {
			return i + l - 4
		}
		i += l
	}
	return 16
}

func (r *rewriter) ipv4(b []byte, depth int) {
	ihl := int(b[0]&0x0f) * 4
	hlen := min(max(ihl, 20), len(b))
	hdr := b[:hlen]
	hdrBefore := fold(sum16(hdr, 0))
	fd := v4FinalDst(b, ihl)
	psOld := addrSum(b, 12, 4) + addrSum(b, fd, 4)

	r.mp.map4(b, 12)
	r.mp.map4(b, 16)
	if ihl > 20 {
		r.ipv4Options(b[:hlen])
	}
	psNew := addrSum(b, 12, 4) + addrSum(b, fd, 4)
	adjustField(b, 10, hdrBefore, fold(sum16(hdr, 0)), false)

	if ihl < 20 || len(b) <= ihl {
		return
	}
	end := len(b)
	if tl := int(binary.BigEndian.Uint16(b[2:])); tl >= ihl && tl < end {
		end = tl
	}
	frag := binary.BigEndian.Uint16(b[6:])
	r.l4(b[ihl:end], b[9], int(frag&0x1fff)*8, frag&0x2000 != 0, fold(psOld), fold(psNew), false, depth)
}

// addrSum sums the address at b[off:off+n] if it is fully present.
func addrSum(b []byte, off, n int) uint32 {
	if off < 0 || off+n > len(b) {
		return 0
	}
	return sum16(b[off:off+n], 0)
}

// ipv4Options rewrites addresses in record-route, loose/strict source route
// and timestamp (flags 1 and 3) options.
func (r *rewriter) ipv4Options(h []byte) {
	for i := 20; i < len(h); {
		t := h[i]
		if t == 0 {
			return
		}
		if t == 1 {
			i++
			continue
		}
		if i+1 >= len(h) || h[i+1] < 2 || i+int(h[i+1]) > len(h) {
			return
		}
		l := int(h[i+1])
		opt := h[i : i+l]
		switch t {
		case 7: // record route: only the slots filled so far (before the pointer)
			if l >= 3 {
				for a := 3; a+4 <= l && a+1 < int(opt[2]); a += 4 {
					r.mp.map4(opt, a)
				}
			}
		case 131, 137: // LSRR, SSRR: every slot is a hop address
			for a := 3; a+4 <= l; a += 4 {
				r.mp.map4(opt, a)
			}
		case 68: // timestamp: flag 1 = recorded (addr, ts) pairs, 3 = prespecified
			if l >= 4 {
				flg := opt[3] & 0x0f
				if flg == 1 || flg == 3 {
					for a := 4; a+8 <= l && (flg == 3 || a+1 < int(opt[2])); a += 8 {
						r.mp.map4(opt, a)
					}
				}
			}
		}
		i += l
	}
}

// ---- IPv6 ----

// v6Layout is what the extension-header walk finds.
type v6Layout struct {
	proto     uint8 // upper-layer protocol (or next header of a non-first fragment)
	l4        int   // offset of the upper layer (or of the fragment data)
	end       int   // end of the packet as the header announces it, capped to len
	frag      bool  // a fragment header was seen
	fragOff   int   // fragment offset in bytes
	more      bool  // M bit
	fragID    uint32
	fragData  int   // offset of the fragmentable part (just after the fragment header)
	finalDst  int   // offset of the pseudo-header destination address
	pseudoSrc int   // offset of the pseudo-header source address (home address option)
	addrs     []int // offsets of other addresses (routing header, home address)
	stopped   bool  // walk ended early (ESP, truncated, unknown): no upper layer
}

func walkV6(b []byte) v6Layout {
	lay := v6Layout{finalDst: 24, pseudoSrc: 8, end: len(b)}
	if len(b) < 40 {
		lay.stopped = true
		return lay
	}
	if pl := int(binary.BigEndian.Uint16(b[4:])); 40+pl < len(b) {
		lay.end = 40 + pl
	}
	nh, off := b[6], 40
	for {
		switch nh {
		case 0, 60: // hop-by-hop, destination options
			if off+2 > lay.end {
				lay.stopped = true
				return lay
			}
			l := (int(b[off+1]) + 1) * 8
			if off+l > lay.end {
				lay.stopped = true
				return lay
			}
			if nh == 60 {
				for i := off + 2; i < off+l; {
					if b[i] == 0 { // Pad1
						i++
						continue
					}
					if i+1 >= off+l {
						break
					}
					ol := int(b[i+1])
					if b[i] == 201 && ol >= 16 && i+2+16 <= off+l { // home address
						lay.addrs = append(lay.addrs, i+2)
						lay.pseudoSrc = i + 2
					}
					i += 2 + ol
				}
			}
			nh, off = b[off], off+l
		case 43: // routing
			if off+8 > lay.end {
				lay.stopped = true
				return lay
			}
			l := (int(b[off+1]) + 1) * 8
			if off+l > lay.end {
				lay.stopped = true
				return lay
			}
			typ, left := b[off+2], b[off+3]
			switch typ {
			case 0, 2: // source route (deprecated), type 2 (mobile IPv6)
				n := (l - 8) / 16
				for k := 0; k < n; k++ {
					lay.addrs = append(lay.addrs, off+8+16*k)
				}
				if left > 0 && n > 0 {
					lay.finalDst = off + 8 + 16*(n-1)
				}
			case 4: // segment routing: segment list[0] is the final segment
				n := min(int(b[off+4])+1, (l-8)/16)
				for k := 0; k < n; k++ {
					lay.addrs = append(lay.addrs, off+8+16*k)
				}
				if left > 0 && n > 0 {
					lay.finalDst = off + 8
				}
			}
			nh, off = b[off], off+l
		case 44: // fragment
			if off+8 > lay.end {
				lay.stopped = true
				return lay
			}
			fo := binary.BigEndian.Uint16(b[off+2:])
			lay.frag = true
			lay.fragOff = int(fo &^ 7)
			lay.more = fo&1 != 0
			lay.fragID = binary.BigEndian.Uint32(b[off+4:])
			nh, off = b[off], off+8
			lay.fragData = off
			if lay.fragOff != 0 {
				lay.proto, lay.l4 = nh, off
				return lay
			}
		case 51: // AH
			if off+2 > lay.end {
				lay.stopped = true
				return lay
			}
			l := (int(b[off+1]) + 2) * 4
			if off+l > lay.end {
				lay.stopped = true
				return lay
			}
			nh, off = b[off], off+l
		case 50, 59: // ESP, no next header
			lay.proto, lay.l4, lay.stopped = nh, off, true
			return lay
		default:
			lay.proto, lay.l4 = nh, off
			return lay
		}
	}
}

func (r *rewriter) ipv6(b []byte, depth int) {
	lay := walkV6(b)
	psOld := addrSum(b, lay.pseudoSrc, 16) + addrSum(b, lay.finalDst, 16)
	r.mp.map16(b, 8)
	r.mp.map16(b, 24)
	for _, a := range lay.addrs {
		r.mp.map16(b, a)
	}
	psNew := addrSum(b, lay.pseudoSrc, 16) + addrSum(b, lay.finalDst, 16)
	if lay.stopped || lay.l4 > lay.end {
		return
	}
	r.l4(b[lay.l4:lay.end], lay.proto, lay.fragOff, lay.more, fold(psOld), fold(psNew), true, depth)
}

// ---- transport ----

// csumInfo says where a protocol keeps its checksum and whether the
// checksum covers a pseudo-header (and so changes with the addresses).
func csumInfo(proto uint8, v6 bool) (off int, pseudo, zeroNone bool) {
	switch proto {
	case protoTCP:
		return 16, true, false
	case protoUDP:
		return 6, true, true
	case protoUDPLite, protoDCCP:
		return 6, true, false
	case protoICMPv6:
		return 2, true, false
	case protoICMP, protoIGMP:
		return 2, false, false
	case protoPIM:
		return 2, v6, false
	case protoOSPF:
		if v6 {
			return 12, true, false
		}
	}
	return -1, false, false
}

// l4 rewrites what lies above IP: the checksum for the pseudo-header change
// and, in the part of the datagram that holds the transport header, the
// addresses carried in ICMP/ICMPv6/IGMP messages and tunnelled packets.
// p is this packet's share of the datagram, starting at datagram byte
// fragOff (0 for unfragmented packets and first fragments).
func (r *rewriter) l4(p []byte, proto uint8, fragOff int, more bool, psOld, psNew uint16, v6 bool, depth int) {
	off, pseudo, zeroNone := csumInfo(proto, v6)
	if !pseudo {
		psOld, psNew = 0, 0
	}
	if fragOff > 0 {
		// A later fragment: no transport header here, but with tiny
		// fragments the checksum field itself can be (ipv4-frag-tcp-syn).
		if pseudo && off >= fragOff {
			adjustField(p, off-fragOff, psOld, psNew, zeroNone)
		}
		return
	}
	regionBefore := fold(sum16(p, 0))
	changed := false
	if depth < maxDepth {
		switch proto {
		case protoICMP:
			changed = r.icmp4(p, depth)
		case protoICMPv6:
			changed = r.icmp6(p, depth)
		case protoIGMP:
			changed = r.igmp(p)
		case protoGRE:
			r.gre(p, depth) // GRE's optional checksum is handled inside
		case protoIPIP, protoIPv6:
			r.ip(p, depth+1)
		}
		if more && changed {
			r.note("first fragment: addresses inside the transport payload were rewritten only as far as this fragment reaches")
		}
	}
	if off < 0 {
		return
	}
	oldSum, newSum := psOld, psNew
	if changed {
		oldSum = onesAdd(oldSum, regionBefore)
		newSum = onesAdd(newSum, fold(sum16(p, 0)))
	}
	adjustField(p, off, oldSum, newSum, zeroNone)
}

func isICMP4Error(t uint8) bool { return t == 3 || t == 4 || t == 5 || t == 11 || t == 12 }

// icmp4 rewrites the packet quoted by an ICMP error (type 3, 4, 5, 11, 12),
// the gateway of a redirect and the router addresses of a router
// advertisement. It reports whether it may have changed anything.
func (r *rewriter) icmp4(p []byte, depth int) bool {
	if len(p) < 8 {
		return false
	}
	t := p[0]
	switch {
	case isICMP4Error(t):
		if t == 5 {
			r.mp.map4(p, 4)
		}
		r.ip(p[8:], depth+1)
		return true
	case t == 9: // router advertisement: (address, preference) entries
		n, size := int(p[4]), int(p[5])*4
		if size < 8 {
			return false
		}
		for k := 0; k < n; k++ {
			r.mp.map4(p, 8+k*size)
		}
		return n > 0
	}
	return false
}

// igmp rewrites group and source addresses (IGMPv1/v2, v3 query, v3 report).
func (r *rewriter) igmp(p []byte) bool {
	if len(p) < 8 {
		return false
	}
	switch p[0] {
	case 0x11, 0x12, 0x16, 0x17:
		r.mp.map4(p, 4)
		if p[0] == 0x11 && len(p) >= 12 {
			n := int(binary.BigEndian.Uint16(p[10:]))
			for k := 0; k < n; k++ {
				r.mp.map4(p, 12+4*k)
			}
		}
		return true
	case 0x22:
		nrec := int(binary.BigEndian.Uint16(p[6:]))
		o := 8
		for k := 0; k < nrec && o+8 <= len(p); k++ {
			aux, ns := int(p[o+1])*4, int(binary.BigEndian.Uint16(p[o+2:]))
			r.mp.map4(p, o+4)
			for s := 0; s < ns; s++ {
				r.mp.map4(p, o+8+4*s)
			}
			o += 8 + 4*ns + aux
		}
		return true
	}
	return false
}

// gre rewrites the packet a GRE header carries (IPv4, IPv6, Ethernet-bridged
// IP in GREv0; PPP-framed IP in enhanced GRE v1 as PPTP uses) and keeps the
// optional GRE checksum consistent.
func (r *rewriter) gre(p []byte, depth int) {
	if len(p) < 4 {
		return
	}
	flags := binary.BigEndian.Uint16(p)
	ver := flags & 7
	et := binary.BigEndian.Uint16(p[2:])
	hl := 4
	if flags&0xc000 != 0 { // checksum or routing present: checksum+offset word
		hl += 4
	}
	if flags&0x2000 != 0 {
		hl += 4
	}
	if flags&0x1000 != 0 {
		hl += 4
	}
	if ver == 1 && flags&0x0080 != 0 {
		hl += 4
	}
	if flags&0x4000 != 0 || hl > len(p) || ver > 1 {
		return // GRE source routing (obsolete) or unknown version: leave alone
	}
	before := fold(sum16(p, 0))
	inner := p[hl:]
	switch {
	case ver == 0 && (et == 0x0800 || et == 0x86dd):
		r.ip(inner, depth+1)
	case ver == 0 && et == 0x6558: // transparent Ethernet bridging
		if ip, _ := ethernetToIP(inner); ip != nil {
			r.ip(ip, depth+1)
		}
	case ver == 1 && et == 0x880b: // PPP
		q := inner
		if len(q) >= 2 && q[0] == 0xff && q[1] == 0x03 {
			q = q[2:]
		}
		var pp uint16
		switch {
		case len(q) >= 1 && q[0]&1 == 1:
			pp, q = uint16(q[0]), q[1:]
		case len(q) >= 2:
			pp, q = binary.BigEndian.Uint16(q), q[2:]
		}
		if pp == 0x21 || pp == 0x57 {
			r.ip(q, depth+1)
		}
	default:
		return
	}
	if flags&0x8000 != 0 {
		adjustField(p, 4, before, fold(sum16(p, 0)), false)
	}
}

// icmp6 rewrites ICMPv6 error quotes, neighbour discovery targets and
// options, redirects, and MLD group/source addresses.
func (r *rewriter) icmp6(p []byte, depth int) bool {
	if len(p) < 8 {
		return false
	}
	switch t := p[0]; {
	case t >= 1 && t <= 4: // unreachable, too big, time exceeded, parameter problem
		r.ip(p[8:], depth+1)
		return true
	case t == 130 || t == 131 || t == 132: // MLD query / v1 report / done
		r.mp.map16(p, 8)
		if t == 130 && len(p) >= 28 {
			n := int(binary.BigEndian.Uint16(p[26:]))
			for k := 0; k < n; k++ {
				r.mp.map16(p, 28+16*k)
			}
		}
		return true
	case t == 133: // router solicitation
		r.ndOptions(p, 8, depth)
		return true
	case t == 134: // router advertisement
		r.ndOptions(p, 16, depth)
		return true
	case t == 135 || t == 136: // neighbour solicitation / advertisement
		r.mp.map16(p, 8)
		r.ndOptions(p, 24, depth)
		return true
	case t == 137: // redirect
		r.mp.map16(p, 8)
		r.mp.map16(p, 24)
		r.ndOptions(p, 40, depth)
		return true
	case t == 143: // MLDv2 report
		nrec := int(binary.BigEndian.Uint16(p[6:]))
		o := 8
		for k := 0; k < nrec && o+20 <= len(p); k++ {
			aux, ns := int(p[o+1])*4, int(binary.BigEndian.Uint16(p[o+2:]))
			r.mp.map16(p, o+4)
			for s := 0; s < ns; s++ {
				r.mp.map16(p, o+20+16*s)
			}
			o += 20 + 16*ns + aux
		}
		return true
	}
	return false
}

// ndOptions walks neighbour-discovery options from p[o:]: prefix
// information, redirected header (a quoted packet), route information and
// RDNSS carry addresses. Prefixes are mapped like addresses (a prefix value
// with zero host bits becomes one mapped address).
func (r *rewriter) ndOptions(p []byte, o, depth int) {
	for o+2 <= len(p) {
		l := int(p[o+1]) * 8
		if l == 0 || o+l > len(p) {
			return
		}
		opt := p[o : o+l]
		switch p[o] {
		case 3: // prefix information
			r.mp.map16(opt, 16)
		case 4: // redirected header
			r.ip(opt[8:], depth+1)
		case 24: // route information: 0, 8 or 16 prefix bytes
			if n := min(l-8, 16); n > 0 {
				var a [16]byte
				copy(a[:], opt[8:])
				r.mp.map16(a[:], 0)
				copy(opt[8:], a[:n])
			}
		case 25: // RDNSS
			for a := 8; a+16 <= l; a += 16 {
				r.mp.map16(opt, a)
			}
		}
		o += l
	}
}
