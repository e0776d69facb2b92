package table

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
)

// version is one state of a table. Once stored in Table.cur it is never
// modified: a mutation copies the struct, replaces the parts it changes
// with changed copies, and stores the new struct.
//
// The single addresses (IPv4 /32, IPv6 /128) are in the host sets, the
// shorter prefixes in p4 and p6: a hash set per length, or bart when a
// family has many lengths (prefixes.go). A lookup probes the host set of
// the address's family, then that family's prefix sets, longest first,
// or its bart table. An entry is in exactly one place.
type version struct {
	h4 set32
	h6 set128
	p4 prefixSets[uint32]
	p6 prefixSets[uint64]
	f4 filter4 // over h4 and p4 (filter.go)
}

// Contains is the lookup of Table.ContainsShard, without counting.
func (v *version) Contains(a netip.Addr) bool {
	switch {
	case a.Is4():
		k := key4(a)
		if !v.f4.mayHave(k) {
			return false
		}
		return v.h4.has(k) || v.p4.has(k) || v.p4.nets != nil && v.p4.nets.Contains(a)
	case a.Is6():
		k := key6Of(a)
		return v.h6.has(k) || v.p6.has(k.hi) || v.p6.nets != nil && v.p6.nets.Contains(a)
	}
	return false
}

// lookup returns the longest entry that contains a (valid, no zone).
func (v *version) lookup(a netip.Addr) (netip.Prefix, bool) {
	if a.Is4() {
		k := key4(a)
		if v.h4.has(k) {
			return netip.PrefixFrom(a, 32), true
		}
		if bits, ok := v.p4.longest(k); ok {
			return netip.PrefixFrom(a, bits).Masked(), true
		}
		if v.p4.nets != nil {
			return v.p4.nets.LookupPrefixLPM(netip.PrefixFrom(a, 32))
		}
		return netip.Prefix{}, false
	}
	k := key6Of(a)
	if v.h6.has(k) {
		return netip.PrefixFrom(a, 128), true
	}
	if bits, ok := v.p6.longest(k.hi); ok {
		return netip.PrefixFrom(a, bits).Masked(), true
	}
	if v.p6.nets != nil {
		return v.p6.nets.LookupPrefixLPM(netip.PrefixFrom(a, 128))
	}
	return netip.Prefix{}, false
}

// Get reports whether p (valid, masked) is an entry.
func (v *version) Get(p netip.Prefix) bool {
	a, bits := p.Addr(), p.Bits()
	if a.Is4() {
		k := key4(a)
		if bits == 32 {
			return v.h4.has(k)
		}
		return v.p4.get(fam4, k>>(32-bits), bits)
	}
	k := key6Of(a)
	switch {
	case bits == 128:
		return v.h6.has(k)
	case bits <= 64:
		return v.p6.get(fam6, k.hi>>(64-bits), bits)
	}
	return v.p6.nets != nil && v.p6.nets.Get(p)
}

func (v *version) len() int { return v.h4.n + v.h6.n + v.p4.size() + v.p6.size() }

// prefixes returns the entries, IPv4 first, each family in address order
// and, at one address, shorter prefixes first.
func (v *version) prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, v.len())
	if v.h4.zero {
		out = append(out, netip.PrefixFrom(addr4(0), 32))
	}
	for _, k := range v.h4.slots {
		if k != 0 {
			out = append(out, netip.PrefixFrom(addr4(k), 32))
		}
	}
	if v.h6.zero {
		out = append(out, netip.PrefixFrom(addr6(key6{}), 128))
	}
	for _, k := range v.h6.slots {
		if k != (key6{}) {
			out = append(out, netip.PrefixFrom(addr6(k), 128))
		}
	}
	appendTo := func(p netip.Prefix) { out = append(out, p) }
	v.p4.each(fam4, appendTo)
	v.p6.each(fam6, appendTo)
	slices.SortFunc(out, func(p, q netip.Prefix) int {
		if c := p.Addr().Compare(q.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(p.Bits(), q.Bits())
	})
	return out
}

func key4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func addr4(k uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], k)
	return netip.AddrFrom4(b)
}

func key6Of(a netip.Addr) key6 {
	b := a.As16()
	return key6{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func addr6(k key6) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	return netip.AddrFrom16(b)
}

func cmpKey6(a, b key6) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

// batch is the entries of a mutation or a build, split by where they go,
// as keys: 4 to 16 bytes an entry, against a netip.Prefix's 32.
type batch struct {
	h4    []uint32
	h6    []key6
	p4    stage[uint32]
	p6    stage[uint64]
	long6 []netip.Prefix // IPv6 longer than /64, shorter than /128
	// built, if set, is called by version each time it has built a part
	// and before it drops that part's keys, when the heap is fullest
	// (for BenchmarkLoadPeak).
	built func()
}

// add puts p (valid) into b, masked.
func (b *batch) add(p netip.Prefix) {
	a, bits := p.Addr(), p.Bits()
	if a.Is4() {
		k := key4(a)
		if bits == 32 {
			b.h4 = append(b.h4, k)
		} else {
			b.p4[bits] = append(b.p4[bits], k>>(32-bits))
		}
		return
	}
	k := key6Of(a)
	switch {
	case bits == 128:
		b.h6 = append(b.h6, k)
	case bits <= 64:
		b.p6[bits] = append(b.p6[bits], k.hi>>(64-bits))
	default:
		b.long6 = append(b.long6, p.Masked())
	}
}

// keep sorts and dedupes b's entries and keeps those for which want is
// true (v tells whether each is in the current version); it returns
// how many are left.
func (b *batch) keep(v *version, want bool) int {
	slices.Sort(b.h4)
	b.h4 = slices.Compact(b.h4)
	b.h4 = slices.DeleteFunc(b.h4, func(k uint32) bool { return v.h4.has(k) != want })
	slices.SortFunc(b.h6, cmpKey6)
	b.h6 = slices.Compact(b.h6)
	b.h6 = slices.DeleteFunc(b.h6, func(k key6) bool { return v.h6.has(k) != want })
	slices.SortFunc(b.long6, netip.Prefix.Compare)
	b.long6 = slices.Compact(b.long6)
	b.long6 = slices.DeleteFunc(b.long6, func(p netip.Prefix) bool {
		return (v.p6.nets != nil && v.p6.nets.Get(p)) != want
	})
	n := len(b.h4) + len(b.h6) + len(b.long6)
	n += b.p4.keep(func(k uint32, bits int) bool { return v.p4.get(fam4, k, bits) == want })
	n += b.p6.keep(func(k uint64, bits int) bool { return v.p6.get(fam6, k, bits) == want })
	return n
}

// version builds a new, unshared version of b's entries. It consumes b,
// dropping each part once it is in, so that a build holds little more
// than the version it makes.
func (b *batch) version() *version {
	v := new(version)
	if len(b.h4) > 0 {
		v.h4.init(len(b.h4))
		for _, k := range b.h4 {
			v.h4.add(k)
		}
		b.step()
		b.h4 = nil
	}
	if len(b.h6) > 0 {
		v.h6.init(len(b.h6))
		for _, k := range b.h6 {
			v.h6.add(k)
		}
		b.step()
		b.h6 = nil
	}
	v.p4.add(fam4, &b.p4, nil, b.step)
	v.p6.add(fam6, &b.p6, b.long6, b.step)
	b.long6 = nil
	v.f4 = v.filter4()
	return v
}

func (b *batch) step() {
	if b.built != nil {
		b.built()
	}
}
