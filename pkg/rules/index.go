package rules

import (
	"encoding/binary"
	"sort"

	"github.com/statewall/statewall/pkg/packet"
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
// order with the full compiled test. Nodes with many intervals carry a
// bucket table (hint) that replaces most of the binary search.
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

// The index is flat: nodes live in one slice and refer to their children
// by ref, and every leaf's rule list lives in one []int32. A lookup at
// 10,000 rules then touches a root slot, one node, its interval, the leaf
// list and the rule, instead of chasing a *node per level and a slice
// header per leaf (the pointer version spent 54 ns there, most of it in
// cache misses on node structs and on a 9,000-entry binary search).

// ref names a subtree: nodes[ref], or with leafBit set a leaf whose rule
// positions start at leaves[ref&^leafBit] and run, in file order, up to a
// -1.
type ref uint32

const leafBit ref = 1 << 31

type node struct {
	dim int8 // field this node splits on
	// Interval i is [ivs[i].start, ivs[i+1].start), ivs[0].start is 0: the
	// form for fields that fit in 32 bits (IPv4 addresses, ports, ICMP
	// type). Start and child sit together so the search and the step down
	// share a cache line.
	ivs  []interval
	hint *hint // for nodes with many intervals, nil otherwise
	// IPv6 address nodes use starts6 and kids6 in the same way.
	starts6 []u128
	kids6   []ref
}

type interval struct {
	start uint32
	kid   ref
}

// hint narrows the search in a node with many intervals: the values from
// base up are cut into equal buckets of 1<<shift, and tab[b] is the
// interval that holds the first value of bucket b, so a value in bucket b
// lies in one of the intervals tab[b]..tab[b+1]. With about one interval
// per bucket that is one table read and a search over one or two entries
// instead of a dozen dependent probes through a 70 KB array. Clustered
// values leave some buckets long; the search inside them is still a binary
// search, so the worst case is the search without the hint.
type hint struct {
	base  uint32
	shift uint8
	tab   []uint32 // len: buckets+1; the last is len(ivs)-1
}

// hintMin is the interval count from which a node gets a hint; below it
// the binary search stays within a few cache lines anyway.
const hintMin = 64

// find returns the child for the interval that holds v.
func (n *node) find(v uint32) ref {
	iv := n.ivs
	lo, hi := 0, len(iv) // iv[lo].start <= v; hi == len(iv) or iv[hi].start > v
	if h := n.hint; h != nil {
		if v < h.base {
			return iv[0].kid
		}
		d := (v - h.base) >> h.shift
		if last := uint32(len(h.tab) - 2); d > last {
			d = last
		}
		lo, hi = int(h.tab[d]), int(h.tab[d+1])+1
	}
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if iv[m].start <= v {
			lo = m
		} else {
			hi = m
		}
	}
	return iv[lo].kid
}

func buildHint(iv []interval) *hint {
	if len(iv) < hintMin {
		return nil
	}
	base := iv[1].start
	span := iv[len(iv)-1].start - base
	buckets := uint32(1)
	for buckets < uint32(len(iv)) {
		buckets <<= 1
	}
	var shift uint8
	for span>>shift >= buckets {
		shift++
	}
	n := span>>shift + 1 // buckets actually used
	h := &hint{base: base, shift: shift, tab: make([]uint32, n+1)}
	j := 0
	for b := range n {
		v := base + b<<shift
		for j+1 < len(iv) && iv[j+1].start <= v {
			j++
		}
		h.tab[b] = uint32(j)
	}
	h.tab[n] = uint32(len(iv) - 1)
	return h
}

type index struct {
	// protoSlot maps a protocol number to its column in roots: protocols
	// named by some rule get their own, all others share slot 0.
	protoSlot [256]uint8
	nslots    int
	// roots[(dir*2+fam)*nslots+slot], fam 0 for IPv4 and 1 for IPv6.
	roots  []ref
	nodes  []node
	leaves []int32
}

// maxProtoSlots bounds the level-1 table; a ruleset naming more protocols
// than this falls back to the linear scan (none of ours comes close).
const maxProtoSlots = 64

// ruleSets are a rule's conditions in the general form, which the builder
// reads whatever form the crule keeps.
type ruleSets struct {
	src, dst     addrSet
	sport, dport portSet
}

func buildIndex(rules []crule, sets []ruleSets) *index {
	x := &index{}
	var protos []packet.Proto
	for i := range rules {
		if p := rules[i].proto; p != 0 && x.protoSlot[p] == 0 {
			if len(protos)+1 >= maxProtoSlots {
				return nil
			}
			protos = append(protos, p)
			x.protoSlot[p] = uint8(len(protos))
		}
	}
	x.nslots = len(protos) + 1
	x.roots = make([]ref, 3*2*x.nslots)
	b := &builder{rules: rules, sets: sets, x: x, memo: map[string]ref{}, leafMemo: map[string]ref{}}
	b.work = workBase
	for i := range rules {
		for dim := 0; dim < numDims; dim++ {
			n := max(b.rangeCount(int32(i), dim, 4), 1)
			if dim == dimSrc || dim == dimDst {
				n += max(b.rangeCount(int32(i), dim, 6), 0)
			}
			b.work += workPerRange * n
		}
	}
	for dir := DirUnknown; dir <= DirOut; dir++ {
		for fi, fam := range [2]uint8{4, 6} {
			for slot := 0; slot < x.nslots; slot++ {
				var proto packet.Proto // slot 0: a protocol no rule names
				if slot > 0 {
					proto = protos[slot-1]
				}
				var cands []int32
				for i := range rules {
					if b.canMatch(i, dir, fam, proto) {
						cands = append(cands, int32(i))
					}
				}
				x.roots[(int(dir)*2+fi)*x.nslots+slot] = b.tree(cands, fam)
			}
		}
	}
	return x
}

type builder struct {
	rules    []crule
	sets     []ruleSets
	x        *index
	memo     map[string]ref // candidate list (and family) -> its tree
	leafMemo map[string]ref // rule list -> its leaf, shared by equal lists
	work     int            // ranges intervals may still sort; see workPerRange
	scratch  []range6       // ranges' result, reused
}

// Each node's budget bounds the lists it stores, but not the ranges it
// sorts to learn that a split does not fit. Rules that hold long lists and
// sit in many intervals of the split above (a blocklist beside many host
// rules) were sorted again in each interval: 600 KB of rules took minutes
// to build, and a ruleset with two blocklists of 100,000 addresses 20 s
// (TestIndexBuildBounded, TestLimitsRealistic). So intervals first refuses,
// from counts alone, a split whose lists cannot fit; and over the whole
// index the builder sorts at most workPerRange times as many ranges as the
// rules hold (each rule counted at least once per field) plus workBase,
// which stops what fits each node's budget but not their sum. Once that is
// spent the remaining nodes are leaves: matching stays exact, only slower.
// genRules(100000) uses a tenth of it.
const (
	workPerRange = 4
	workBase     = 1 << 20
)

// canMatch reports whether r can match some packet with this direction,
// family and protocol (proto 0: a protocol that no rule names).
func (b *builder) canMatch(i int, dir Dir, fam uint8, proto packet.Proto) bool {
	r := &b.rules[i]
	if r.dirs&(1<<dir) == 0 || r.family != 0 && r.family != fam || r.proto != proto && r.proto != 0 {
		return false
	}
	for _, s := range [2]*addrSet{&b.sets[i].src, &b.sets[i].dst} {
		if s.hasPos && (fam == 4 && len(s.pos4) == 0 || fam == 6 && len(s.pos6) == 0) {
			return false // only other-family addresses: never matches here
		}
	}
	return true
}

func (b *builder) tree(cands []int32, fam uint8) ref {
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

// leaf stores a rule list and returns its ref; equal lists share one.
func (b *builder) leaf(rules []int32) ref {
	key := make([]byte, 0, 4*len(rules))
	for _, c := range rules {
		key = binary.LittleEndian.AppendUint32(key, uint32(c))
	}
	if r, ok := b.leafMemo[string(key)]; ok {
		return r
	}
	r := leafBit | ref(len(b.x.leaves))
	b.x.leaves = append(append(b.x.leaves, rules...), -1)
	b.leafMemo[string(key)] = r
	return r
}

// ranges returns the positive ranges of rule c on field dim, or wild when
// the rule puts no positive condition on it. The result is read-only and
// valid until the next call: it is the rule's own IPv6 ranges, or the
// others converted into a buffer the builder reuses (a fresh slice per
// call was half of what a large index allocated).
func (b *builder) ranges(c int32, dim int, fam uint8) (rs []range6, wild bool) {
	r, sets := &b.rules[c], &b.sets[c]
	rs = b.scratch[:0]
	switch dim {
	case dimSrc, dimDst:
		s := &sets.src
		if dim == dimDst {
			s = &sets.dst
		}
		if s.any || !s.hasPos {
			return nil, true
		}
		if fam != 4 {
			return s.pos6, false
		}
		for _, p := range s.pos4 {
			rs = append(rs, range6{u128{0, uint64(p.lo)}, u128{0, uint64(p.hi)}})
		}
	case dimSport, dimDport:
		s := &sets.sport
		if dim == dimDport {
			s = &sets.dport
		}
		if s.any || !s.hasPos {
			return nil, true
		}
		for _, p := range s.pos {
			rs = append(rs, range6{u128{0, uint64(p.lo)}, u128{0, uint64(p.hi)}})
		}
	case dimICMPType:
		if r.typeMask == 0 {
			return nil, true
		}
		rs = append(rs, range6{u128{0, uint64(r.icmpType)}, u128{0, uint64(r.icmpType)}})
	}
	b.scratch = rs
	return rs, false
}

// rangeCount is the number of positive ranges rule c has on field dim (as
// ranges returns them), or -1 when it is wild there.
func (b *builder) rangeCount(c int32, dim int, fam uint8) int {
	sets := &b.sets[c]
	switch dim {
	case dimSrc, dimDst:
		s := &sets.src
		if dim == dimDst {
			s = &sets.dst
		}
		if s.any || !s.hasPos {
			return -1
		}
		if fam == 4 {
			return len(s.pos4)
		}
		return len(s.pos6)
	case dimSport, dimDport:
		s := &sets.sport
		if dim == dimDport {
			s = &sets.dport
		}
		if s.any || !s.hasPos {
			return -1
		}
		return len(s.pos)
	}
	if b.rules[c].typeMask == 0 {
		return -1
	}
	return 1
}

// split builds the subtree for cands, choosing the field whose split leaves
// the shortest longest list. used is the set of fields already split on
// above; budget bounds the list entries the subtree may hold.
func (b *builder) split(cands []int32, fam uint8, used uint8, budget *int) ref {
	if len(cands) <= leafSize {
		return b.leaf(cands)
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
		return b.leaf(cands)
	}
	*budget -= best.total
	lists := best.materialize(b, cands, fam, bestDim)
	var n node
	n.dim = int8(bestDim)
	wide := maxValue(bestDim, fam).hi != 0 // an IPv6 address
	for i, l := range lists {
		if i > 0 && equalInt32s(l, lists[i-1]) {
			continue // same rules as the interval before: widen that one
		}
		kid := b.split(l, fam, used|1<<bestDim, budget)
		if wide {
			n.starts6 = append(n.starts6, best.starts[i])
			n.kids6 = append(n.kids6, kid)
		} else {
			n.ivs = append(n.ivs, interval{uint32(best.starts[i].lo), kid})
		}
	}
	n.hint = buildHint(n.ivs)
	b.x.nodes = append(b.x.nodes, n)
	return ref(len(b.x.nodes) - 1)
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
	// First what costs no sort. Each range puts its rule in at least one
	// interval, and a rule's ranges are disjoint, so there are at least as
	// many intervals as the rule with the most ranges has, each holding
	// every rule that is wild here: a lower bound on the lists' total.
	nr, nw, most := 0, 0, 0
	for _, c := range cands {
		if k := b.rangeCount(c, dim, fam); k < 0 {
			nw++
		} else {
			nr, most = nr+k, max(most, k)
		}
	}
	if nw == len(cands) || nr+nw*most > budget || nr > b.work {
		return nil
	}
	b.work -= nr
	starts := make([]u128, 1, 1+2*nr)
	nwild := 0
	for _, c := range cands {
		rs, wild := b.ranges(c, dim, fam)
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
	sort.Slice(starts, func(i, j int) bool { return starts[i].less(starts[j]) })
	starts = dedupU128(starts)
	diff := make([]int, len(starts)+1)
	for _, c := range cands {
		rs, wild := b.ranges(c, dim, fam)
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
	for _, c := range cands {
		rs, wild := b.ranges(c, dim, fam)
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

// value32 is the packet's value on a field that fits in 32 bits.
func (k *pkey) value32(dim int8) uint32 {
	switch dim {
	case dimSrc:
		return k.src4
	case dimDst:
		return k.dst4
	case dimSport:
		return uint32(k.sport)
	case dimDport:
		return uint32(k.dport)
	}
	return uint32(k.icmpType)
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
	r := x.roots[(int(k.dir)*2+fi)*x.nslots+int(x.protoSlot[k.proto])]
	for r&leafBit == 0 {
		n := &x.nodes[r]
		if fi == 1 && n.dim <= dimDst {
			v := k.src6
			if n.dim == dimDst {
				v = k.dst6
			}
			r = n.kids6[findInterval(n.starts6, v)]
		} else {
			r = n.find(k.value32(n.dim))
		}
	}
	for _, i := range x.leaves[r&^leafBit:] {
		if i < 0 {
			break
		}
		if rules[i].matches(k) {
			return int(i)
		}
	}
	return -1
}
