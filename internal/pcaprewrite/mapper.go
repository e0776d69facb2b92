package pcaprewrite

import (
	"fmt"
	"net/netip"
)

// The test ranges. Nothing outside them is ever written by this package.
var (
	IPv4Range = netip.MustParsePrefix("198.18.0.0/15")
	IPv6Range = netip.MustParsePrefix("fd00:198:18::/64")

	// ReservedIPv4 and ReservedIPv6 are never handed out by the Mapper, so a
	// tool (the kernel oracle's sentinel packets) can use them without
	// colliding with a rewritten capture address.
	ReservedIPv4 = netip.MustParsePrefix("198.19.255.0/24")
	ReservedIPv6 = netip.MustParsePrefix("fd00:198:18:0:ffff::/80")
)

// InRange reports whether a is inside one of the two test ranges.
func InRange(a netip.Addr) bool {
	if a.Is4() {
		return IPv4Range.Contains(a)
	}
	return a.Is6() && !a.Is4In6() && IPv6Range.Contains(a)
}

// Mapper hands out test-range addresses in order of first appearance:
// IPv4 198.18.0.1, 198.18.0.2, ... (a last octet of 0 or 255 is skipped so no
// rewritten address looks like a network or broadcast address; 198.19.255.0/24
// is reserved), IPv6 fd00:198:18::1, ::2, ... Every distinct original address
// gets its own new address; the map is one-to-one. IPv4 fields map to IPv4,
// IPv6 fields (including IPv4-mapped ::ffff:a.b.c.d) map to IPv6.
type Mapper struct {
	m      map[netip.Addr]netip.Addr
	next4  uint32 // offset into 198.18.0.0/15 of the last IPv4 handed out
	next6  uint64 // interface id of the last IPv6 handed out
	failed error
}

// NewMapper returns an empty Mapper.
func NewMapper() *Mapper { return &Mapper{m: make(map[netip.Addr]netip.Addr)} }

// Map returns the test-range address for a (allocating one on first sight).
// If the range is exhausted it returns the unspecified address of the family
// and remembers the error (see Err); callers must not inject then.
func (mp *Mapper) Map(a netip.Addr) netip.Addr {
	if n, ok := mp.m[a]; ok {
		return n
	}
	var n netip.Addr
	if a.Is4() {
		for {
			mp.next4++
			if mp.next4 >= 1<<17 {
				mp.failed = fmt.Errorf("pcaprewrite: more distinct IPv4 addresses than 198.18.0.0/15 holds")
				return netip.IPv4Unspecified()
			}
			v := 198<<24 | 18<<16 | mp.next4
			b := [4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
			if b[3] == 0 || b[3] == 255 {
				continue
			}
			n = netip.AddrFrom4(b)
			if ReservedIPv4.Contains(n) {
				mp.failed = fmt.Errorf("pcaprewrite: more distinct IPv4 addresses than 198.18.0.0/15 holds")
				return netip.IPv4Unspecified()
			}
			break
		}
	} else {
		mp.next6++
		if mp.next6 >= 0xffff<<48 {
			mp.failed = fmt.Errorf("pcaprewrite: IPv6 range exhausted")
			return netip.IPv6Unspecified()
		}
		b := IPv6Range.Addr().As16()
		for i := 0; i < 8; i++ {
			b[15-i] = byte(mp.next6 >> (8 * i))
		}
		n = netip.AddrFrom16(b)
	}
	mp.m[a] = n
	return n
}

// Err reports range exhaustion.
func (mp *Mapper) Err() error { return mp.failed }

// Table returns a copy of the mapping original → rewritten.
func (mp *Mapper) Table() map[netip.Addr]netip.Addr {
	c := make(map[netip.Addr]netip.Addr, len(mp.m))
	for k, v := range mp.m {
		c[k] = v
	}
	return c
}

// map4 rewrites the IPv4 address at b[off:off+4] in place if it is fully
// present. It reports whether it was present.
func (mp *Mapper) map4(b []byte, off int) bool {
	if off < 0 || off+4 > len(b) {
		return false
	}
	a := netip.AddrFrom4([4]byte(b[off : off+4]))
	n := mp.Map(a).As4()
	copy(b[off:], n[:])
	return true
}

// map16 rewrites the IPv6 address at b[off:off+16] in place if present.
func (mp *Mapper) map16(b []byte, off int) bool {
	if off < 0 || off+16 > len(b) {
		return false
	}
	a := netip.AddrFrom16([16]byte(b[off : off+16]))
	n := mp.Map(a).As16()
	copy(b[off:], n[:])
	return true
}
