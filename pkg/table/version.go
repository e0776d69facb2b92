package table

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/gaissmai/bart"
)

// version is one state of a table. Once stored in Table.cur it is never
// modified: a mutation copies the struct, replaces the parts it changes
// with changed copies, and stores the new struct.
//
// The single addresses (IPv4 /32, IPv6 /128) are in the host sets, the
// shorter prefixes in nets. A lookup probes the host set of the address's
// family and goes on to bart only when nets holds a prefix of that
// family, so a table of hosts only never walks a tree. An entry is in
// exactly one of the three.
type version struct {
	h4 hosts4
	h6 hosts6
	// nets holds the prefixes shorter than one address. Never nil.
	nets *bart.Lite
	// nets4 and nets6 say whether nets holds any IPv4, IPv6 prefix.
	nets4, nets6 bool
}

// Contains is the lookup of Table.ContainsShard, without counting.
func (v *version) Contains(a netip.Addr) bool {
	switch {
	case a.Is4():
		return v.h4.has(key4(a)) || v.nets4 && v.nets.Contains(a)
	case a.Is6():
		return v.h6.has(key6Of(a)) || v.nets6 && v.nets.Contains(a)
	}
	return false
}

// hasHost reports whether a (valid) is a single-address entry.
func (v *version) hasHost(a netip.Addr) bool {
	if a.Is4() {
		return v.h4.has(key4(a))
	}
	return v.h6.has(key6Of(a))
}

// Get reports whether p (valid, masked) is an entry.
func (v *version) Get(p netip.Prefix) bool {
	if p.IsSingleIP() {
		return v.hasHost(p.Addr())
	}
	return v.nets.Get(p)
}

func (v *version) len() int { return v.h4.n + v.h6.n + v.nets.Size() }

func (v *version) setNets() {
	v.nets4, v.nets6 = v.nets.Size4() > 0, v.nets.Size6() > 0
}

// prefixes returns the entries, IPv4 first, each family in address order
// and, at one address, shorter prefixes first: the hosts, sorted, merged
// into bart's sorted walk.
func (v *version) prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, v.len())
	hs4 := v.h4.sorted()
	for p := range v.nets.AllSorted4() {
		for len(hs4) > 0 && hs4[0] < key4(p.Addr()) {
			out = append(out, netip.PrefixFrom(addr4(hs4[0]), 32))
			hs4 = hs4[1:]
		}
		out = append(out, p)
	}
	for _, k := range hs4 {
		out = append(out, netip.PrefixFrom(addr4(k), 32))
	}
	hs6 := v.h6.sorted()
	for p := range v.nets.AllSorted6() {
		for len(hs6) > 0 && cmpKey6(hs6[0], key6Of(p.Addr())) < 0 {
			out = append(out, netip.PrefixFrom(addr6(hs6[0]), 128))
			hs6 = hs6[1:]
		}
		out = append(out, p)
	}
	for _, k := range hs6 {
		out = append(out, netip.PrefixFrom(addr6(k), 128))
	}
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

// batch is the entries of a mutation, split by kind.
type batch struct {
	h4 []uint32
	h6 []key6
}

// split puts the single addresses of ps (valid) into b and hands every
// other entry, masked, to net.
func (b *batch) split(ps []netip.Prefix, net func(netip.Prefix)) {
	for _, p := range ps {
		switch a := p.Addr(); {
		case !p.IsSingleIP():
			net(p.Masked())
		case a.Is4():
			b.h4 = append(b.h4, key4(a))
		default:
			b.h6 = append(b.h6, key6Of(a))
		}
	}
}

// dedupe sorts the single addresses and drops repeats.
func (b *batch) dedupe() {
	slices.Sort(b.h4)
	b.h4 = slices.Compact(b.h4)
	slices.SortFunc(b.h6, cmpKey6)
	b.h6 = slices.Compact(b.h6)
}
