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
	hasPos     bool // some positive item (of either family, or a table)
	pos4, neg4 []range4
	pos6, neg6 []range6
	// tabs are the table items (<name>), looked up at match time; nil
	// without. tablePos: some table item is positive (then the ranges
	// alone do not say what the set holds, and the index must treat the
	// set as any address).
	tabs     []tabRef
	tablePos bool
}

type tabRef struct {
	l   Lookup // nil: a table with no run-time object (holds nothing)
	neg bool
}

func compileAddrs(s AddrSpec) addrSet { return compileAddrsT(s, nil) }

// compileAddrsT compiles s with its table items resolved in tables.
func compileAddrsT(s AddrSpec, tables map[string]Lookup) addrSet {
	as := addrSet{any: s.Any()}
	for _, it := range s.Items {
		if it.Table != "" {
			as.tabs = append(as.tabs, tabRef{l: tables[it.Table], neg: it.Neg})
			if !it.Neg {
				as.hasPos, as.tablePos = true, true
			}
			continue
		}
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
	if s.tabs != nil {
		return s.inTables(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), inSpans(s.pos4, v))
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
	if s.tabs != nil {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], v.hi)
		binary.BigEndian.PutUint64(b[8:], v.lo)
		return s.inTables(netip.AddrFrom16(b), in6(s.pos6, v))
	}
	return !s.hasPos || in6(s.pos6, v)
}

// inTables finishes contains for a set with tables: a negated table
// that holds a excludes it; otherwise a is in when there is no positive
// item, a positive range held it (inRange), or a positive table does.
func (s *addrSet) inTables(a netip.Addr, inRange bool) bool {
	for _, t := range s.tabs {
		if t.neg && t.l != nil && t.l.Contains(a) {
			return false
		}
	}
	if !s.hasPos || inRange {
		return true
	}
	for _, t := range s.tabs {
		if !t.neg && t.l != nil && t.l.Contains(a) {
			return true
		}
	}
	return false
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

// The per-rule test reads only the crule itself for the common shapes: an
// address condition that is one range per family with no negation, and a
// port condition that is one range (`any` is the full range). Those live
// inline as a range; anything else (lists, negations) keeps the general
// addrSet or portSet behind a pointer. The general sets are 100-200 bytes
// of slice headers per rule (a crule was 336 bytes); inline, a crule is
// 160 bytes (144 before the `on` masks went at its end) and an IPv4 test
// of a rule without `on` reads its first 80, so 10,000 rules stay in
// L2. With the flat index (index.go), BenchmarkMatchScale rules=10000 went
// from 54 to 23 ns and rules=10 from 24 to 16 ns.

// addr4 is the IPv4 side of one address condition and the switch between
// the two forms.
type addr4 struct {
	lo, hi uint32 // when gen is nil: the IPv4 addresses in [lo, hi]; lo > hi is none
	// gen is the general form, nil when the condition is simple. When it
	// is set it decides for both families and the inline ranges (lo, hi
	// here and crule.src6/dst6) are unused.
	gen *addrSet
}

// port is one port condition: [lo, hi] when gen is nil (0-65535 for any).
type port struct {
	lo, hi uint16
	gen    *portSet
}

func (a *addr4) contains(v uint32) bool {
	if a.gen == nil {
		return v >= a.lo && v <= a.hi
	}
	return a.gen.contains4(v)
}

// contains6 tests v against the inline IPv6 range r, or the general form.
func (a *addr4) contains6(r *range6, v u128) bool {
	if a.gen == nil {
		return !v.less(r.lo) && !r.hi.less(v)
	}
	return a.gen.contains6(v)
}

func (p *port) contains(v uint16) bool {
	if p.gen == nil {
		return v >= p.lo && v <= p.hi
	}
	return p.gen.contains(v)
}

// compileAddr picks the inline form when s is at most one range per
// family and no negation.
func compileAddr(s AddrSpec, tables map[string]Lookup) (a addr4, r6 range6) {
	set := compileAddrsT(s, tables)
	full6 := u128{^uint64(0), ^uint64(0)}
	switch {
	case set.tabs != nil:
	case set.any:
		return addr4{lo: 0, hi: ^uint32(0)}, range6{u128{}, full6}
	case len(set.neg4) == 0 && len(set.neg6) == 0 && len(set.pos4) <= 1 && len(set.pos6) <= 1:
		a = addr4{lo: 1, hi: 0} // empty unless there is a range
		r6 = range6{u128{0, 1}, u128{}}
		if len(set.pos4) == 1 {
			a.lo, a.hi = set.pos4[0].lo, set.pos4[0].hi
		}
		if len(set.pos6) == 1 {
			r6 = set.pos6[0]
		}
		return a, r6
	}
	return addr4{gen: &set}, range6{}
}

func compilePort(s PortSpec) port {
	set := compilePorts(s)
	switch {
	case set.any:
		return port{lo: 0, hi: 0xffff}
	case len(set.neg) == 0 && len(set.pos) == 1:
		return port{lo: set.pos[0].lo, hi: set.pos[0].hi}
	}
	return port{gen: &set}
}

// crule is one compiled rule. The fields an IPv4 test reads come first.
type crule struct {
	dirs   uint8        // bit 1<<Dir for each direction the rule matches; 0: never matches
	family uint8        // 0, 4 or 6
	proto  packet.Proto // 0: any
	needL4 bool
	// synOnly: a pass rule that keeps state and names no flags opens TCP
	// connections only with a SYN (pf's default `flags S/SA`); see MatchNew.
	synOnly bool
	// (packet flags & mask) must equal flags; both 0 without a flags
	// condition, so the test always passes then.
	flags, mask uint8
	// ICMP type and code, compared under the masks: 0xff when the rule
	// names them, 0 when it does not.
	icmpType, icmpCode uint8
	typeMask, codeMask uint8
	// srcAny, dstAny: no address condition at all, the only kind that
	// matches a packet without valid addresses.
	srcAny, dstAny bool
	// hasOn: the rule has an `on` condition, ifPos and ifNeg below.
	hasOn        bool
	sport, dport port
	src, dst     addr4
	src6, dst6   range6 // inline IPv6 ranges, when src.gen / dst.gen are nil
	// The `on` condition over interface ids (iface.go): the packet's
	// interface bit must be in ifPos (when ifPos is not 0) and not in
	// ifNeg. Last, past what a test of a rule without `on` reads.
	ifPos, ifNeg uint64
}

func compileRule(r *Rule, ifNames []string, tables map[string]Lookup) crule {
	c := crule{
		dirs:     1<<DirUnknown | 1<<DirIn | 1<<DirOut,
		family:   r.Family,
		proto:    r.Proto,
		needL4:   r.needsL4(),
		icmpType: r.ICMPType,
		icmpCode: r.ICMPCode,
		sport:    compilePort(r.FromPorts),
		dport:    compilePort(r.ToPorts),
	}
	c.src, c.src6 = compileAddr(r.From, tables)
	c.dst, c.dst6 = compileAddr(r.To, tables)
	c.srcAny, c.dstAny = r.From.Any(), r.To.Any()
	if r.HasFlags {
		c.flags, c.mask = r.Flags, r.FlagsMask
	}
	if r.HasICMPType {
		c.typeMask = 0xff
		if r.HasICMPCode {
			c.codeMask = 0xff
		}
	}
	c.icmpType &= c.typeMask
	c.icmpCode &= c.codeMask
	if r.Dir != DirUnknown {
		c.dirs = 1 << r.Dir
	}
	c.synOnly = r.Action == Pass && !r.NoState && !r.HasFlags && (r.Proto == 0 || r.Proto == packet.ProtoTCP)
	c.ifPos, c.ifNeg = ifMasks(r.On, ifNames)
	c.hasOn = !r.On.Any()
	if r.spoof != spoofNone && r.From.Any() {
		// An antispoof rule whose interface has no addresses (or is not
		// there): it has nothing to block, not everything.
		c.dirs = 0
	}
	return c
}

// matcher holds the compiled rules and the index over them.
type matcher struct {
	rules []crule
	idx   *index
}

func compile(rules []Rule, ifNames []string, tables map[string]Lookup) matcher {
	m := matcher{rules: make([]crule, len(rules))}
	sets := make([]ruleSets, len(rules))
	for i := range rules {
		r := &rules[i]
		m.rules[i] = compileRule(r, ifNames, tables)
		sets[i] = ruleSets{indexAddrs(r.From), indexAddrs(r.To), compilePorts(r.FromPorts), compilePorts(r.ToPorts)}
	}
	m.idx = buildIndex(m.rules, sets)
	return m
}

// indexAddrs is what the index may assume of an address condition: its
// ranges, or any address when a positive table makes the ranges say
// less than the set holds (a negated table only narrows it, so leaving
// it out is a superset). The rule's own test decides exactly.
func indexAddrs(s AddrSpec) addrSet {
	set := compileAddrs(s)
	if set.tablePos {
		return addrSet{any: true}
	}
	set.tabs = nil
	return set
}

// compileLocal compiles the `set local` prefixes into sorted ranges, as
// rule addresses are compiled.
func compileLocal(local []netip.Prefix) addrSet {
	spec := AddrSpec{Items: make([]AddrItem, len(local))}
	for i, p := range local {
		spec.Items[i] = AddrItem{Prefix: p.Masked()}
	}
	return compileAddrs(spec)
}
