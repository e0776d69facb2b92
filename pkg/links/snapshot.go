package links

import (
	"cmp"
	"net/netip"
	"slices"
)

// Link is one network interface as a Snapshot shows it.
type Link struct {
	// Index is the kernel's ifindex, the number a queued packet carries. A
	// link deleted and re-created under the same name gets a new one.
	Index int
	// Name is the interface's current name; renames follow.
	Name string
	// Up is the administrative state (IFF_UP, "ip link set X up"), not
	// whether a carrier is present.
	Up bool
	// Loopback is IFF_LOOPBACK.
	Loopback bool
	// Addrs are the interface's addresses with the prefix length they were
	// configured with (198.18.1.1/24, not 198.18.1.0/24), IPv4 before IPv6,
	// each family in address order. IPv6 link-local (fe80::/10) and
	// tentative addresses are included. For a point-to-point address with a
	// peer, it is the local address with the configured prefix length.
	// The slice is shared by every copy of the Link: read it, never write
	// to it.
	Addrs []netip.Prefix
}

// Snapshot is the set of links at one moment. It is immutable once
// published and safe for concurrent use; the zero value holds no links.
type Snapshot struct {
	links   []Link // sorted by Index
	byIndex map[int]int
	byName  map[string]int
}

// ByIndex returns the link with ifindex i.
func (s Snapshot) ByIndex(i int) (Link, bool) {
	n, ok := s.byIndex[i]
	if !ok {
		return Link{}, false
	}
	return s.links[n], true
}

// ByName returns the link named name.
func (s Snapshot) ByName(name string) (Link, bool) {
	n, ok := s.byName[name]
	if !ok {
		return Link{}, false
	}
	return s.links[n], true
}

// Links returns all links, sorted by index, in a slice the caller owns.
func (s Snapshot) Links() []Link {
	return slices.Clone(s.links)
}

// Len returns the number of links.
func (s Snapshot) Len() int { return len(s.links) }

// newSnapshot builds a Snapshot from links in any order, sorting them and
// each link's addresses.
//
// The kernel keeps names unique, but two links can share one here for a
// moment: notifications older than a dump (see the package documentation)
// may briefly revive a deleted link whose name a newer link now has. The
// higher index wins the name then, as the kernel hands out indexes in
// increasing order and the newer link is the live one.
func newSnapshot(links []Link) Snapshot {
	slices.SortFunc(links, func(a, b Link) int { return cmp.Compare(a.Index, b.Index) })
	s := Snapshot{
		links:   links,
		byIndex: make(map[int]int, len(links)),
		byName:  make(map[string]int, len(links)),
	}
	for i := range links {
		sortPrefixes(links[i].Addrs)
		links[i].Addrs = slices.Clip(links[i].Addrs)
		s.byIndex[links[i].Index] = i
		s.byName[links[i].Name] = i // ascending index: the higher one wins
	}
	return s
}

// sortPrefixes orders prefixes IPv4 first, then by address, then by length.
func sortPrefixes(ps []netip.Prefix) {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c // netip orders IPv4 before IPv6
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
}
