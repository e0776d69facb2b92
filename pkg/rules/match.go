package rules

import (
	"net/netip"

	"github.com/statewall/statewall/pkg/packet"
)

// Matching: a packet is converted once into a pkey, then compared with the
// compiled rules (compile.go), in order by matchLinear (the reference) or
// through the index (index.go); the first rule that matches decides.

// pkey is what the matcher needs from a packet, converted once.
type pkey struct {
	dir      Dir
	dirBit   uint8
	ifBit    uint64 // 1<<id of the packet's interface (iface.go)
	family   uint8  // 4, 6, or 0 when the addresses are not valid
	proto    packet.Proto
	l4       bool // the transport header is there (not a later fragment)
	flags    uint8
	icmpType uint8
	icmpCode uint8
	// notOpener: matching for MatchNew a TCP packet that does not open a
	// connection (no transport header, or flags other than S/SA), which
	// synOnly rules do not match.
	notOpener  bool
	sport      uint16
	dport      uint16
	src4, dst4 uint32
	src6, dst6 u128
}

// set fills k from p. It writes through the pointer rather than returning
// a pkey: returning one by value made Match copy the freshly written struct
// with wide loads that stalled on the narrow stores before them, and that
// copy was 40% of Match on webserver.rules (pprof, BenchmarkMatchFile).
func (k *pkey) set(p *packet.Packet, dir Dir, ifBit uint64, newConn bool) {
	if dir > DirOut {
		dir = DirUnknown
	}
	k.dir = dir
	k.ifBit = ifBit
	k.dirBit = 1 << dir
	k.proto = p.Proto
	k.l4 = p.L4Off != 0 && !(p.Frag.IsFragment && p.Frag.Offset != 0)
	k.flags = p.TCPFlags
	k.icmpType = p.ICMPType
	k.icmpCode = p.ICMPCode
	k.notOpener = newConn && p.Proto == packet.ProtoTCP &&
		(!k.l4 || p.TCPFlags&(packet.TCPSyn|packet.TCPAck) != packet.TCPSyn)
	k.sport = p.SrcPort
	k.dport = p.DstPort
	switch {
	case p.Src.Is4() && p.Dst.Is4():
		k.family = 4
		k.src4, k.dst4 = u32Of(p.Src), u32Of(p.Dst)
	case p.Src.Is6() && p.Dst.Is6():
		k.family = 6
		k.src6, k.dst6 = u128Of(p.Src), u128Of(p.Dst)
	default:
		k.family = 0
	}
}

// makeKey is set for tests and benchmarks that keep keys.
func makeKey(p *packet.Packet, dir Dir) pkey {
	var k pkey
	k.set(p, dir, 1, false)
	return k
}

// matches is the whole test of one compiled rule against one packet.
// Conditions a rule does not have are stored so that they pass (full port
// ranges, zero masks), which leaves fewer branches to mispredict.
func (c *crule) matches(k *pkey) bool {
	if c.dirs&k.dirBit == 0 || (c.proto != 0 && c.proto != k.proto) {
		return false
	}
	if c.hasOn && (c.ifPos != 0 && k.ifBit&c.ifPos == 0 || k.ifBit&c.ifNeg != 0) {
		return false
	}
	if c.family != 0 && c.family != k.family {
		return false
	}
	switch k.family {
	case 4:
		if !c.src.contains(k.src4) || !c.dst.contains(k.dst4) {
			return false
		}
	case 6:
		if !c.src.contains6(&c.src6, k.src6) || !c.dst.contains6(&c.dst6, k.dst6) {
			return false
		}
	default:
		if !c.srcAny || !c.dstAny {
			return false
		}
	}
	if c.synOnly && k.notOpener {
		return false
	}
	if c.needL4 {
		if !k.l4 || !c.sport.contains(k.sport) || !c.dport.contains(k.dport) {
			return false
		}
		if k.flags&c.mask != c.flags || (k.icmpType^c.icmpType)&c.typeMask|(k.icmpCode^c.icmpCode)&c.codeMask != 0 {
			return false
		}
	}
	return true
}

// matchLinear returns the position of the first rule that matches, or -1,
// by testing every rule in order.
func (m *matcher) matchLinear(k *pkey) int {
	for i := range m.rules {
		if m.rules[i].matches(k) {
			return i
		}
	}
	return -1
}

// Match returns the first rule that matches the packet travelling in
// direction dir, or nil when none does (the caller then applies Default).
// It does not allocate. A rule with a port, flags or icmp-type condition
// never matches a packet without a transport header (p.L4Off == 0, or a
// fragment other than the first).
func (rs *Ruleset) Match(p *packet.Packet, dir Dir) *Rule {
	return rs.match(p, dir, 0, false)
}

// MatchNew is Match for a packet that conntrack calls new, in stateful
// mode. It differs in one way, pf's: a pass rule that keeps state and names
// no `flags` matches a TCP packet only if it opens a connection (flags
// S/SA: SYN set, ACK clear). A connection picked up mid-stream (an ACK with
// no entry, as an ACK scan sends) therefore falls through to later rules or
// the default unless a rule asks for it with explicit flags (`flags any`,
// `flags A/A`). Rules that say `no state`, block rules, and other protocols
// match as in Match.
func (rs *Ruleset) MatchNew(p *packet.Packet, dir Dir) *Rule {
	return rs.match(p, dir, 0, true)
}

// MatchOn is Match (newConn false) or MatchNew (true) for a packet
// travelling in direction dir (DirIn, DirOut or DirUnknown; DirForward is
// the caller's to split, see Eval) on the interface with index ifindex (0:
// none). `on` conditions see the interface by the name Bind gave it.
func (rs *Ruleset) MatchOn(p *packet.Packet, dir Dir, ifindex uint32, newConn bool) *Rule {
	return rs.match(p, dir, ifindex, newConn)
}

func (rs *Ruleset) match(p *packet.Packet, dir Dir, ifindex uint32, newConn bool) *Rule {
	if rs == nil {
		return nil
	}
	var k pkey
	k.set(p, dir, rs.ifBit(ifindex), newConn)
	var i int
	if rs.m.idx != nil {
		i = rs.m.idx.match(rs.m.rules, &k)
	} else {
		i = rs.m.matchLinear(&k)
	}
	if i < 0 {
		return nil
	}
	return &rs.Rules[i]
}

// Direction is the direction `set local` gives a packet from src to dst,
// for offline use (replay, the benchmarks), where no hook says it: from a
// local address it is out, to one in (between two local addresses out,
// the way it leaves the sending socket first), else DirUnknown, so that
// without `set local` rules that say in or out match nothing.
func (rs *Ruleset) Direction(src, dst netip.Addr) Dir {
	switch {
	case rs.IsLocal(src):
		return DirOut
	case rs.IsLocal(dst):
		return DirIn
	}
	return DirUnknown
}

// IsLocal reports whether a is one of this host's addresses (`set local`),
// as netip.Prefix.Contains would say of one of them (an IPv4 address
// matches only IPv4 prefixes, an IPv4-mapped IPv6 address only IPv6 ones,
// an address with a zone none). Replay and the benchmarks ask it twice per
// packet: over the compiled ranges a decision in the caches took 4 ns less
// than with Contains on each prefix (BenchmarkStatefulKnown, 1k: 93 -> 89
// ns, side by side).
func (rs *Ruleset) IsLocal(a netip.Addr) bool {
	switch {
	case len(rs.Local) == 0:
		return false
	case a.Is4():
		return inSpans(rs.local.pos4, u32Of(a))
	case a.Is6() && a.Zone() == "":
		return in6(rs.local.pos6, u128Of(a))
	}
	return false
}
