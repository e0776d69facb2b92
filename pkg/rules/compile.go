package rules

import (
	"encoding/binary"
	"net/netip"
	"sort"

	"github.com/statewall/statewall/pkg/packet"
)

// The compiled form. Parse turns each Rule into a crule: flat integers,
// address sets as sorted disjoint ranges, no pointers to chase per field.
// Match then never allocates.
//
// Two matchers share the crules: matchLinear scans them in order and is the
// reference; the index (index.go) narrows the scan to the rules that can
// match the packet's direction, family, protocol and destination, and must
// return exactly what matchLinear returns (the differential test checks).

// u128 is an IPv6 address as two integers, for ordered comparison.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func u128Of(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func u32Of(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// span is an inclusive range of IPv4 addresses or ports; mergeSpans and
// inSpans serve both. IPv6 ranges (u128, not an ordered Go type) have their
// own merge6 and in6.
type span[T uint16 | uint32] struct{ lo, hi T }

type range4 = span[uint32]
type range6 struct{ lo, hi u128 }
type range16 = span[uint16]

// addrSet is a compiled AddrSpec: positive and negated items merged into
// sorted, disjoint ranges per family.
type addrSet struct {
	any        bool // no items: matches every address
	hasPos     bool // some positive item (of either family)
	pos4, neg4 []range4
	pos6, neg6 []range6
}

func compileAddrs(s AddrSpec) addrSet {
	as := addrSet{any: s.Any()}
	for _, it := range s.Items {
		p := it.Prefix
		if p.Addr().Is4() {
			lo := u32Of(p.Addr())
			hi := lo | uint32(uint64(1)<<(32-p.Bits())-1)
			if it.Neg {
				as.neg4 = append(as.neg4, range4{lo, hi})
			} else {
				as.pos4 = append(as.pos4, range4{lo, hi})
			}
		} else {
			lo := u128Of(p.Addr())
			hi := lo
			if b := p.Bits(); b < 64 {
				hi.hi |= ^uint64(0) >> b
				hi.lo = ^uint64(0)
			} else if b < 128 {
				hi.lo |= ^uint64(0) >> (b - 64)
			}
			if it.Neg {
				as.neg6 = append(as.neg6, range6{lo, hi})
			} else {
				as.pos6 = append(as.pos6, range6{lo, hi})
			}
		}
		if !it.Neg {
			as.hasPos = true
		}
	}
	as.pos4, as.neg4 = mergeSpans(as.pos4), mergeSpans(as.neg4)
	as.pos6, as.neg6 = merge6(as.pos6), merge6(as.neg6)
	return as
}

// mergeSpans sorts rs and merges overlapping and adjacent ranges.
func mergeSpans[T uint16 | uint32](rs []span[T]) []span[T] {
	if len(rs) < 2 {
		return rs
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].lo < rs[j].lo })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		// r.lo-1 cannot wrap: r.lo > last.hi >= 0 when the first test fails.
		if r.lo <= last.hi || r.lo-1 == last.hi {
			if r.hi > last.hi {
				last.hi = r.hi
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

func (a u128) inc() u128 {
	if a.lo == ^uint64(0) {
		return u128{a.hi + 1, 0}
	}
	return u128{a.hi, a.lo + 1}
}

func merge6(rs []range6) []range6 {
	if len(rs) < 2 {
		return rs
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].lo.less(rs[j].lo) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if !last.hi.less(r.lo) || (last.hi != u128{^uint64(0), ^uint64(0)} && last.hi.inc() == r.lo) {
			if last.hi.less(r.hi) {
				last.hi = r.hi
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// inSpans reports whether v is in the sorted disjoint ranges rs: a linear scan
// for short lists, binary search beyond.
func inSpans[T uint16 | uint32](rs []span[T], v T) bool {
	if len(rs) <= 8 {
		for _, r := range rs {
			if v >= r.lo && v <= r.hi {
				return true
			}
		}
		return false
	}
	lo, hi := 0, len(rs)
	for lo < hi { // first range with hi >= v
		m := int(uint(lo+hi) >> 1)
		if rs[m].hi < v {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(rs) && rs[lo].lo <= v
}

func in6(rs []range6, v u128) bool {
	if len(rs) <= 8 {
		for _, r := range rs {
			if !v.less(r.lo) && !r.hi.less(v) {
				return true
			}
		}
		return false
	}
	lo, hi := 0, len(rs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if rs[m].hi.less(v) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(rs) && !v.less(rs[lo].lo)
}

// contains4 and contains6 take the packet's address already converted, so
// it is converted once per packet and not once per rule.
func (s *addrSet) contains4(v uint32) bool {
	if s.any {
		return true
	}
	if inSpans(s.neg4, v) {
		return false
	}
	return !s.hasPos || inSpans(s.pos4, v)
}

func (s *addrSet) contains6(v u128) bool {
	if s.any {
		return true
	}
	if in6(s.neg6, v) {
		return false
	}
	return !s.hasPos || in6(s.pos6, v)
}

// portSet is a compiled PortSpec.
type portSet struct {
	any      bool
	hasPos   bool
	pos, neg []range16
}

func compilePorts(s PortSpec) portSet {
	ps := portSet{any: s.Any()}
	for _, it := range s.Items {
		if it.Neg {
			ps.neg = append(ps.neg, range16{it.Lo, it.Hi})
		} else {
			ps.pos = append(ps.pos, range16{it.Lo, it.Hi})
			ps.hasPos = true
		}
	}
	ps.pos, ps.neg = mergeSpans(ps.pos), mergeSpans(ps.neg)
	return ps
}

func (s *portSet) contains(v uint16) bool {
	if s.any {
		return true
	}
	if inSpans(s.neg, v) {
		return false
	}
	return !s.hasPos || inSpans(s.pos, v)
}

// crule is one compiled rule.
type crule struct {
	dirs     uint8 // bit 1<<Dir for each direction the rule matches
	family   uint8 // 0, 4 or 6
	proto    uint8 // 0: any
	needL4   bool
	hasFlags bool
	// synOnly: a pass rule that keeps state and names no flags opens TCP
	// connections only with a SYN (pf's default `flags S/SA`); see MatchNew.
	synOnly  bool
	flags    uint8
	mask     uint8
	hasType  bool
	hasCode  bool
	icmpType uint8
	icmpCode uint8
	src, dst addrSet
	sport    portSet
	dport    portSet
}

func compileRule(r *Rule) crule {
	c := crule{
		dirs:     1<<DirUnknown | 1<<DirIn | 1<<DirOut,
		family:   r.Family,
		proto:    r.Proto,
		needL4:   r.needsL4(),
		hasFlags: r.HasFlags,
		flags:    r.Flags,
		mask:     r.FlagsMask,
		hasType:  r.HasICMPType,
		hasCode:  r.HasICMPCode,
		icmpType: r.ICMPType,
		icmpCode: r.ICMPCode,
		src:      compileAddrs(r.From),
		dst:      compileAddrs(r.To),
		sport:    compilePorts(r.FromPorts),
		dport:    compilePorts(r.ToPorts),
	}
	if r.Dir != DirUnknown {
		c.dirs = 1 << r.Dir
	}
	c.synOnly = r.Action == Pass && !r.NoState && !r.HasFlags && (r.Proto == 0 || r.Proto == packet.ProtoTCP)
	return c
}

// pkey is what the matcher needs from a packet, converted once.
type pkey struct {
	dir        Dir
	dirBit     uint8
	newConn    bool  // matching the first packet of a connection (MatchNew)
	family     uint8 // 4, 6, or 0 when the addresses are not valid
	proto      uint8
	l4         bool // the transport header is there (not a later fragment)
	flags      uint8
	icmpType   uint8
	icmpCode   uint8
	sport      uint16
	dport      uint16
	src4, dst4 uint32
	src6, dst6 u128
}

func makeKey(p *packet.Packet, dir Dir) pkey {
	if dir > DirOut {
		dir = DirUnknown
	}
	k := pkey{
		dir:      dir,
		dirBit:   1 << dir,
		proto:    p.Proto,
		l4:       p.L4Off != 0 && !(p.Frag.IsFragment && p.Frag.Offset != 0),
		flags:    p.TCPFlags,
		icmpType: p.ICMPType,
		icmpCode: p.ICMPCode,
		sport:    p.SrcPort,
		dport:    p.DstPort,
	}
	switch {
	case p.Src.Is4() && p.Dst.Is4():
		k.family = 4
		k.src4, k.dst4 = u32Of(p.Src), u32Of(p.Dst)
	case p.Src.Is6() && p.Dst.Is6():
		k.family = 6
		k.src6, k.dst6 = u128Of(p.Src), u128Of(p.Dst)
	}
	return k
}

// matches is the whole test of one compiled rule against one packet.
func (c *crule) matches(k *pkey) bool {
	if c.dirs&k.dirBit == 0 || (c.proto != 0 && c.proto != k.proto) {
		return false
	}
	if c.family != 0 && c.family != k.family {
		return false
	}
	switch k.family {
	case 4:
		if !c.src.contains4(k.src4) || !c.dst.contains4(k.dst4) {
			return false
		}
	case 6:
		if !c.src.contains6(k.src6) || !c.dst.contains6(k.dst6) {
			return false
		}
	default:
		if !c.src.any || !c.dst.any {
			return false
		}
	}
	if c.synOnly && k.newConn && k.proto == packet.ProtoTCP &&
		(!k.l4 || k.flags&(packet.TCPSyn|packet.TCPAck) != packet.TCPSyn) {
		return false
	}
	if c.needL4 {
		if !k.l4 || !c.sport.contains(k.sport) || !c.dport.contains(k.dport) {
			return false
		}
		if c.hasFlags && k.flags&c.mask != c.flags {
			return false
		}
		if c.hasType && (k.icmpType != c.icmpType || c.hasCode && k.icmpCode != c.icmpCode) {
			return false
		}
	}
	return true
}

// matcher holds the compiled rules and the index over them.
type matcher struct {
	rules []crule
	idx   *index
}

func compile(rules []Rule) matcher {
	m := matcher{rules: make([]crule, len(rules))}
	for i := range rules {
		m.rules[i] = compileRule(&rules[i])
	}
	m.idx = buildIndex(m.rules)
	return m
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
	return rs.match(p, dir, false)
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
	return rs.match(p, dir, true)
}

func (rs *Ruleset) match(p *packet.Packet, dir Dir, newConn bool) *Rule {
	if rs == nil {
		return nil
	}
	k := makeKey(p, dir)
	k.newConn = newConn
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

// IsLocal reports whether a is one of this host's addresses (`set local`).
func (rs *Ruleset) IsLocal(a netip.Addr) bool {
	for _, p := range rs.Local {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
