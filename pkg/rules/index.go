package rules

import (
	"encoding/binary"
	"sort"
)

// The index keeps first-match exact while testing only a few rules per
// packet, however many rules there are.
//
// Level 1 dispatches on what every packet has: direction, address family
// and protocol. Each (dir, family, proto) triple gets the ordered list of
// rules that can match it (rules naming another protocol, family or
// direction are left out); protocols that no rule names share one list.
//
// Level 2 is a decision tree over that list. A node splits the value range
// of one field (source or destination address, source or destination port,
// ICMP type) into intervals at the boundaries of the rules' ranges; each
// interval keeps, in rule order, the rules whose positive ranges cover it
// plus the rules that put no (positive) condition on that field. Long
// interval lists are split again on another field. A leaf is scanned in
// order with the full compiled test.
//
// Why it is exact: a rule is left out of an interval only when it cannot
// match any packet whose field value falls in that interval, so every leaf
// holds every rule that can match its packets, in file order, and the first
// one that matches is the first in the file that matches.
//
// Negated items only ever exclude, so a rule with a negation is placed by
// its positive items alone (or everywhere, when it has none); the leaf test
// then applies the negation.

const (
	dimSrc = iota
	dimDst
	dimSport
	dimDport
	dimICMPType
	numDims
)

// leafSize is the list length below which a node is not split: scanning a
// few compact rules costs less than one more binary search.
const leafSize = 8

type node struct {
	dim int8 // field this node splits on; -1 for a leaf
	// Interval i is [starts[i], starts[i+1]); starts[0] is 0. IPv6 address
	// nodes use starts; the others (IPv4 addresses, ports, ICMP types) fit
	// in 64 bits and use starts64, whose search is about twice as fast.
	starts   []u128
	starts64 []uint64
	kids     []*node
	rules    []int32 // leaf: rule positions, in file order
}

type index struct {
	// protoSlot maps a protocol number to its column in roots: protocols
	// named by some rule get their own, all others share slot 0.
	protoSlot [256]uint8
	// roots[dir][fam][slot], fam 0 for IPv4 and 1 for IPv6.
	roots [3][2][]*node
}

// maxProtoSlots bounds the level-1 table; a ruleset naming more protocols
// than this falls back to the linear scan (none of ours comes close).
const maxProtoSlots = 64

func buildIndex(rules []crule) *index {
	x := &index{}
	var protos []uint8
	for i := range rules {
		if p := rules[i].proto; p != 0 && x.protoSlot[p] == 0 {
			if len(protos)+1 >= maxProtoSlots {
				return nil
			}
			protos = append(protos, p)
			x.protoSlot[p] = uint8(len(protos))
		}
	}
	b := &builder{rules: rules, memo: map[string]*node{}}
	for dir := DirUnknown; dir <= DirOut; dir++ {
		for fi, fam := range [2]uint8{4, 6} {
			x.roots[dir][fi] = make([]*node, len(protos)+1)
			for slot := 0; slot <= len(protos); slot++ {
				var proto uint8 // slot 0: a protocol no rule names
				if slot > 0 {
					proto = protos[slot-1]
				}
				var cands []int32
				for i := range rules {
					if b.canMatch(&rules[i], dir, fam, proto) {
						cands = append(cands, int32(i))
					}
				}
				x.roots[dir][fi][slot] = b.tree(cands, fam)
			}
		}
	}
	return x
}

type builder struct {
	rules []crule
	memo  map[string]*node // candidate list (and family) -> its tree
}

// canMatch reports whether r can match some packet with this direction,
// family and protocol (proto 0: a protocol that no rule names).
func (b *builder) canMatch(r *crule, dir Dir, fam, proto uint8) bool {
	if r.dirs&(1<<dir) == 0 || r.family != 0 && r.family != fam || r.proto != proto && r.proto != 0 {
		return false
	}
	for _, s := range [2]*addrSet{&r.src, &r.dst} {
		if s.hasPos && (fam == 4 && len(s.pos4) == 0 || fam == 6 && len(s.pos6) == 0) {
			return false // only other-family addresses: never matches here
		}
	}
	return true
}

func (b *builder) tree(cands []int32, fam uint8) *node {
	key := make([]byte, 1, 1+4*len(cands))
	key[0] = fam
	for _, c := range cands {
		key = binary.LittleEndian.AppendUint32(key, uint32(c))
	}
	if n, ok := b.memo[string(key)]; ok {
		return n
	}
	budget := 16*len(cands) + 4096
	n := b.split(cands, fam, 0, &budget)
	b.memo[string(key)] = n
	return n
}

// ranges returns the positive ranges of rule r on field dim, or wild when
// the rule puts no positive condition on it.
func (b *builder) ranges(r *crule, dim int, fam uint8, buf []range6) (rs []range6, wild bool) {
	rs = buf[:0]
	switch dim {
	case dimSrc, dimDst:
		s := &r.src
		if dim == dimDst {
			s = &r.dst
		}
		if s.any || !s.hasPos {
			return nil, true
		}
		if fam == 4 {
			for _, p := range s.pos4 {
				rs = append(rs, range6{u128{0, uint64(p.lo)}, u128{0, uint64(p.hi)}})
			}
		} else {
			rs = append(rs, s.pos6...)
		}
	case dimSport, dimDport:
		s := &r.sport
		if dim == dimDport {
			s = &r.dport
		}
		if s.any || !s.hasPos {
			return nil, true
		}
		for _, p := range s.pos {
			rs = append(rs, range6{u128{0, uint64(p.lo)}, u128{0, uint64(p.hi)}})
		}
	case dimICMPType:
		if !r.hasType {
			return nil, true
		}
		rs = append(rs, range6{u128{0, uint64(r.icmpType)}, u128{0, uint64(r.icmpType)}})
	}
	return rs, false
}

// split builds the subtree for cands, choosing the field whose split leaves
// the shortest longest list. used is the set of fields already split on
// above; budget bounds the list entries the subtree may hold.
func (b *builder) split(cands []int32, fam uint8, used uint8, budget *int) *node {
	leaf := &node{dim: -1, rules: cands}
	if len(cands) <= leafSize {
		return leaf
	}
	var best *intervals
	bestDim := -1
	for dim := 0; dim < numDims; dim++ {
		if used&(1<<dim) != 0 {
			continue
		}
		iv := b.intervals(cands, fam, dim, *budget)
		if iv == nil || iv.maxLen >= len(cands) {
			continue
		}
		if best == nil || iv.maxLen < best.maxLen || iv.maxLen == best.maxLen && iv.total < best.total {
			best, bestDim = iv, dim
		}
	}
	if best == nil {
		return leaf
	}
	*budget -= best.total
	lists := best.materialize(b, cands, fam, bestDim)
	n := &node{dim: int8(bestDim)}
	for i, l := range lists {
		if i > 0 && equalInt32s(l, lists[i-1]) {
			continue // same rules as the interval before: widen that one
		}
		if maxValue(bestDim, fam).hi == 0 {
			n.starts64 = append(n.starts64, best.starts[i].lo)
		} else {
			n.starts = append(n.starts, best.starts[i])
		}
		n.kids = append(n.kids, b.split(l, fam, used|1<<bestDim, budget))
	}
	return n
}

type intervals struct {
	starts []u128
	maxLen int
	total  int
}

// intervals computes the elementary intervals of field dim over cands, and
// the length of each interval's list, without building the lists. It
// returns nil when the lists would hold more than budget entries.
func (b *builder) intervals(cands []int32, fam uint8, dim int, budget int) *intervals {
	var buf [8]range6
	starts := []u128{{}}
	nwild := 0
	for _, c := range cands {
		rs, wild := b.ranges(&b.rules[c], dim, fam, buf[:])
		if wild {
			nwild++
			continue
		}
		for _, r := range rs {
			starts = append(starts, r.lo)
			if r.hi != maxValue(dim, fam) {
				starts = append(starts, r.hi.inc())
			}
		}
	}
	if nwild == len(cands) {
		return nil
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i].less(starts[j]) })
	starts = dedupU128(starts)
	diff := make([]int, len(starts)+1)
	for _, c := range cands {
		rs, wild := b.ranges(&b.rules[c], dim, fam, buf[:])
		if wild {
			continue
		}
		for _, r := range rs {
			lo, hi := findInterval(starts, r.lo), len(starts)
			if r.hi != maxValue(dim, fam) {
				hi = findInterval(starts, r.hi.inc())
			}
			diff[lo]++
			diff[hi]--
		}
	}
	iv := &intervals{starts: starts}
	n := nwild
	for i := range starts {
		n += diff[i]
		iv.total += n
		if n > iv.maxLen {
			iv.maxLen = n
		}
	}
	if iv.total > budget {
		return nil
	}
	return iv
}

func (iv *intervals) materialize(b *builder, cands []int32, fam uint8, dim int) [][]int32 {
	lists := make([][]int32, len(iv.starts))
	var buf [8]range6
	for _, c := range cands {
		rs, wild := b.ranges(&b.rules[c], dim, fam, buf[:])
		if wild {
			for i := range lists {
				lists[i] = append(lists[i], c)
			}
			continue
		}
		for _, r := range rs {
			lo, hi := findInterval(iv.starts, r.lo), len(iv.starts)
			if r.hi != maxValue(dim, fam) {
				hi = findInterval(iv.starts, r.hi.inc())
			}
			for i := lo; i < hi; i++ {
				lists[i] = append(lists[i], c)
			}
		}
	}
	return lists
}

func maxValue(dim int, fam uint8) u128 {
	switch {
	case dim == dimSport || dim == dimDport:
		return u128{0, 0xffff}
	case dim == dimICMPType:
		return u128{0, 0xff}
	case fam == 4:
		return u128{0, 0xffffffff}
	}
	return u128{^uint64(0), ^uint64(0)}
}

func dedupU128(s []u128) []u128 {
	out := s[:1]
	for _, v := range s[1:] {
		if v != out[len(out)-1] {
			out = append(out, v)
		}
	}
	return out
}

// findInterval returns the index of the interval that holds v: the last i
// with starts[i] <= v. starts[0] is 0, so there always is one.
func findInterval(starts []u128, v u128) int {
	lo, hi := 1, len(starts)
	for lo < hi { // first i with starts[i] > v
		m := int(uint(lo+hi) >> 1)
		if v.less(starts[m]) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo - 1
}

func findInterval64(starts []uint64, v uint64) int {
	lo, hi := 1, len(starts)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if v < starts[m] {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo - 1
}

func equalInt32s(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (k *pkey) value(dim int8) u128 {
	switch dim {
	case dimSrc:
		if k.family == 4 {
			return u128{0, uint64(k.src4)}
		}
		return k.src6
	case dimDst:
		if k.family == 4 {
			return u128{0, uint64(k.dst4)}
		}
		return k.dst6
	case dimSport:
		return u128{0, uint64(k.sport)}
	case dimDport:
		return u128{0, uint64(k.dport)}
	}
	return u128{0, uint64(k.icmpType)}
}

// match returns what matchLinear would, testing only the rules in the
// packet's leaf.
func (x *index) match(rules []crule, k *pkey) int {
	var fi int
	switch k.family {
	case 4:
	case 6:
		fi = 1
	default: // no valid addresses: rare, and only address-less rules match
		for i := range rules {
			if rules[i].matches(k) {
				return i
			}
		}
		return -1
	}
	n := x.roots[k.dir][fi][x.protoSlot[k.proto]]
	for n.dim >= 0 {
		if n.starts64 != nil {
			n = n.kids[findInterval64(n.starts64, k.value(n.dim).lo)]
		} else {
			n = n.kids[findInterval(n.starts, k.value(n.dim))]
		}
	}
	for _, i := range n.rules {
		if rules[i].matches(k) {
			return int(i)
		}
	}
	return -1
}
