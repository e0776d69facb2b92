package table

import (
	"net/netip"
	"slices"

	"github.com/gaissmai/bart"
)

// Prefix sets: the prefixes shorter than one address, one family's worth,
// kept in a hash set per length while the family has few lengths, and in
// bart once it has many.
//
// A blocklist holds few lengths: single addresses, /24s, a few /16s. With
// a hash set per length, a lookup probes the host set and then each
// length's set for the address cut to that length, longest first, and
// never walks a tree. In a 1M-entry table spread over the address space,
// a bart hit walks three or four nodes, each a cache miss (~130 ns for a
// spread-out /24 hit); a probe reads one slot, usually one cache line
// (~25 ns). A miss pays one probe a length, which is why the number of
// lengths is bounded: past maxLens, the family's prefixes go into one
// bart table, whose cost does not grow with the lengths it holds.
//
// The keys are the address's top bits: an IPv4 prefix of length l is the
// address (a big-endian uint32) shifted right by 32-l, an IPv6 one of
// length l <= 64 its high 64 bits shifted right by 64-l; the length is
// the set's. IPv6 prefixes longer than /64 (and shorter than /128, a
// host) are rare in blocklists and would need 128-bit keys: a family with
// one keeps its prefixes in bart.
//
// A family in bart stays in bart when deletes bring it back to few
// lengths, until Replace (or a reload) rebuilds it: moving back and forth
// costs a pass over all its prefixes, and an operator who adds and
// deletes one odd prefix would pay it on every change.

// maxLens is the most prefix lengths a family keeps in hash sets.
const maxLens = 4

// lenSet holds the prefixes of one length as keys: the address's top bits
// shifted right by shift, that is width-bits (width: 32 for IPv4, 64 for
// IPv6).
type lenSet[K uint32 | uint64] struct {
	set   intSet[K]
	bits  int
	shift uint
}

// prefixSets are one family's prefixes (hosts excluded). Either nets is
// nil and sets[:n] hold them, one set a length, longest first, none empty;
// or nets holds them all and n is 0. The zero value is empty. Its sets
// follow the rules of the host sets: never written once published, copied
// by the mutations that change them.
type prefixSets[K uint32 | uint64] struct {
	sets [maxLens]lenSet[K]
	n    int
	nets *bart.Lite
}

// fam describes a family to the code that makes prefixes from keys.
type fam[K uint32 | uint64] struct {
	width  int
	prefix func(k K, bits int) netip.Prefix
}

var (
	fam4 = fam[uint32]{32, func(k uint32, bits int) netip.Prefix {
		return netip.PrefixFrom(addr4(k<<(32-bits)), bits)
	}}
	fam6 = fam[uint64]{64, func(k uint64, bits int) netip.Prefix {
		return netip.PrefixFrom(addr6(key6{hi: k << (64 - bits)}), bits)
	}}
)

// has reports whether a set holds top, the address's top bits (IPv4: the
// address; IPv6: its high half). It does not look in nets.
func (p *prefixSets[K]) has(top K) bool {
	for i := range p.n {
		l := &p.sets[i]
		if l.set.has(top >> l.shift) {
			return true
		}
	}
	return false
}

// longest returns the length of the longest set entry holding top.
func (p *prefixSets[K]) longest(top K) (int, bool) {
	for i := range p.n {
		l := &p.sets[i]
		if l.set.has(top >> l.shift) {
			return l.bits, true
		}
	}
	return 0, false
}

func (p *prefixSets[K]) find(bits int) int {
	for i := range p.n {
		if p.sets[i].bits == bits {
			return i
		}
	}
	return -1
}

func (p *prefixSets[K]) size() int {
	n := 0
	for i := range p.n {
		n += p.sets[i].set.n
	}
	if p.nets != nil {
		n += p.nets.Size()
	}
	return n
}

// get reports whether the prefix of length bits with key k is an entry.
func (p *prefixSets[K]) get(f fam[K], k K, bits int) bool {
	if p.nets != nil {
		return p.nets.Get(f.prefix(k, bits))
	}
	if i := p.find(bits); i >= 0 {
		return p.sets[i].set.has(k)
	}
	return false
}

// each calls yield with every entry.
func (p *prefixSets[K]) each(f fam[K], yield func(netip.Prefix)) {
	for i := range p.n {
		l := &p.sets[i]
		if l.set.zero {
			yield(f.prefix(0, l.bits))
		}
		for _, k := range l.set.slots {
			if k != 0 {
				yield(f.prefix(k, l.bits))
			}
		}
	}
	if p.nets != nil {
		for q := range p.nets.All() {
			yield(q)
		}
	}
}

// stage is one family's prefixes of a mutation or a build, as keys by
// length (0 to 31 for IPv4, 0 to 64 for IPv6).
type stage[K uint32 | uint64] [65][]K

func (st *stage[K]) count() int {
	n := 0
	for _, ks := range st {
		n += len(ks)
	}
	return n
}

// keep sorts and dedupes every length's keys and keeps those for which
// want(key, length) is true; it returns how many are left.
func (st *stage[K]) keep(want func(k K, bits int) bool) int {
	n := 0
	for bits, ks := range st {
		if len(ks) == 0 {
			continue
		}
		slices.Sort(ks)
		ks = slices.Compact(ks)
		ks = slices.DeleteFunc(ks, func(k K) bool { return !want(k, bits) })
		st[bits] = ks
		n += len(ks)
	}
	return n
}

// add puts st's keys and the prefixes long (which only bart holds: IPv6
// longer than /64) into p, which must be unshared down to its sets'
// headers (a copy of a published value is); it copies each set it
// changes. st is consumed: each length's keys are dropped once inserted
// (after a call of built), which keeps the peak of a build low.
func (p *prefixSets[K]) add(f fam[K], st *stage[K], long []netip.Prefix, built func()) {
	lens := p.n
	for bits, ks := range st {
		if len(ks) > 0 && p.find(bits) < 0 {
			lens++
		}
	}
	if p.nets == nil && len(long) == 0 && lens <= maxLens {
		for bits, ks := range st {
			if len(ks) == 0 {
				continue
			}
			i := p.find(bits)
			if i < 0 {
				i = p.insertLen(f, bits, len(ks))
			} else {
				p.sets[i].set = p.sets[i].set.clone(len(ks))
			}
			for _, k := range ks {
				p.sets[i].set.add(k)
			}
			built()
			st[bits] = nil
		}
		return
	}
	more := new(bart.Lite)
	for bits, ks := range st {
		for _, k := range ks {
			more.Insert(f.prefix(k, bits))
		}
	}
	for _, q := range long {
		more.Insert(q)
	}
	built()
	*st = stage[K]{}
	if p.nets != nil {
		p.nets = p.nets.UnionPersist(more)
		return
	}
	// From sets to bart: once, when the family passes maxLens lengths.
	p.each(f, more.Insert)
	*p = prefixSets[K]{nets: more}
}

// insertLen makes an empty set for bits, with room for n keys, in its
// place among p's sets (longest first), and returns its index.
// Precondition: p has fewer than maxLens sets, none for bits.
func (p *prefixSets[K]) insertLen(f fam[K], bits, n int) int {
	i := 0
	for i < p.n && p.sets[i].bits > bits {
		i++
	}
	copy(p.sets[i+1:p.n+1], p.sets[i:p.n])
	p.n++
	p.sets[i] = lenSet[K]{bits: bits, shift: uint(f.width - bits)}
	p.sets[i].set.init(n)
	return i
}

// remove deletes st's keys and the prefixes long, all entries of p, from
// p, unshared down to its sets' headers; it copies each set it changes
// and drops the sets it empties.
func (p *prefixSets[K]) remove(f fam[K], st *stage[K], long []netip.Prefix) {
	if p.nets == nil {
		for bits, ks := range st {
			if len(ks) == 0 {
				continue
			}
			i := p.find(bits)
			c := p.sets[i].set.clone(0)
			for _, k := range ks {
				c.remove(k)
			}
			c.shrink()
			if c.n > 0 {
				p.sets[i].set = c
				continue
			}
			copy(p.sets[i:], p.sets[i+1:p.n])
			p.n--
			p.sets[p.n] = lenSet[K]{}
		}
		return
	}
	var gone []netip.Prefix
	for bits, ks := range st {
		for _, k := range ks {
			gone = append(gone, f.prefix(k, bits))
		}
	}
	gone = append(gone, long...)
	if len(gone)*deleteCloneRatio < p.nets.Size() {
		for _, q := range gone {
			p.nets = p.nets.DeletePersist(q)
		}
	} else {
		p.nets = p.nets.Clone()
		for _, q := range gone {
			p.nets.Delete(q)
		}
	}
	if p.nets.Size() == 0 {
		p.nets = nil
	}
}
