package links

import (
	"net/netip"
	"slices"
)

// linkInfo is what one link notification or dump entry says about a link.
type linkInfo struct {
	index    int
	name     string
	up       bool
	loopback bool
}

// addrKey identifies one address of one link as the kernel does: the local
// address with its prefix length, and the peer for a point-to-point
// address (the invalid Addr when there is none).
type addrKey struct {
	local netip.Prefix
	peer  netip.Addr
}

// addrInfo is what one address notification or dump entry says.
type addrInfo struct {
	index int
	key   addrKey
}

// table is the Watcher's view, built from a dump and kept current by
// notifications. It is not safe for concurrent use: only the Watcher's
// goroutine (or Start, before that exists) touches it.
type table struct {
	links map[int]linkInfo
	// addrs is keyed by ifindex, apart from links: an address notification
	// may name a link whose notification is still ahead of it.
	addrs map[int]map[addrKey]struct{}
}

func newTable() *table {
	return &table{links: make(map[int]linkInfo), addrs: make(map[int]map[addrKey]struct{})}
}

// setLink records a new or changed link and reports whether anything
// changed.
func (t *table) setLink(l linkInfo) bool {
	if old, ok := t.links[l.index]; ok && old == l {
		return false
	}
	t.links[l.index] = l
	return true
}

// delLink forgets a link and its addresses. The kernel announces the
// addresses' removal too, but not necessarily before the link's.
func (t *table) delLink(index int) bool {
	_, ok := t.links[index]
	_, hasAddrs := t.addrs[index]
	delete(t.links, index)
	delete(t.addrs, index)
	return ok || hasAddrs
}

func (t *table) setAddr(a addrInfo) bool {
	m := t.addrs[a.index]
	if m == nil {
		m = make(map[addrKey]struct{})
		t.addrs[a.index] = m
	}
	if _, ok := m[a.key]; ok {
		return false
	}
	m[a.key] = struct{}{}
	return true
}

func (t *table) delAddr(a addrInfo) bool {
	m := t.addrs[a.index]
	if _, ok := m[a.key]; !ok {
		return false
	}
	delete(m, a.key)
	if len(m) == 0 {
		delete(t.addrs, a.index)
	}
	return true
}

// snapshot builds a Snapshot of the table. Addresses of an ifindex with no
// link are left out until the link shows up.
func (t *table) snapshot() Snapshot {
	links := make([]Link, 0, len(t.links))
	for _, l := range t.links {
		var addrs []netip.Prefix
		for k := range t.addrs[l.index] {
			// Two keys differing only in the peer give one prefix.
			if !slices.Contains(addrs, k.local) {
				addrs = append(addrs, k.local)
			}
		}
		links = append(links, Link{Index: l.index, Name: l.name, Up: l.up, Loopback: l.loopback, Addrs: addrs})
	}
	return newSnapshot(links)
}
