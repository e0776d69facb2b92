package links

import (
	"net/netip"
	"slices"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func addr(index int, p string) addrInfo {
	return addrInfo{index: index, key: addrKey{local: pfx(p)}}
}

// TestStaleNotificationsConverge replays what Start sees when eth1 is
// deleted and re-created during the dump: the dump already has the new
// eth1 (index 7), and the notifications queued since the subscription
// still describe the old one (index 5). Applied in order after the dump,
// they must leave the dump's state.
func TestStaleNotificationsConverge(t *testing.T) {
	tb := newTable()
	tb.setLink(linkInfo{index: 1, name: "lo", up: true, loopback: true})
	tb.setLink(linkInfo{index: 7, name: "eth1", up: true})
	tb.setAddr(addr(7, "198.18.1.1/24"))

	// Queued before the dump, older than it.
	tb.setLink(linkInfo{index: 5, name: "eth1", up: true})
	tb.setAddr(addr(5, "198.18.9.1/24"))
	mid := tb.snapshot()
	if l, _ := mid.ByName("eth1"); l.Index != 7 {
		t.Errorf("while old and new eth1 both exist, ByName(eth1) = index %d, want the newer 7", l.Index)
	}
	tb.delAddr(addr(5, "198.18.9.1/24"))
	tb.delLink(5)
	tb.setLink(linkInfo{index: 7, name: "eth1", up: true})
	tb.setAddr(addr(7, "198.18.1.1/24"))

	s := tb.snapshot()
	if _, ok := s.ByIndex(5); ok {
		t.Error("the deleted index 5 is still there")
	}
	l, ok := s.ByName("eth1")
	if !ok || l.Index != 7 || !slices.Equal(l.Addrs, []netip.Prefix{pfx("198.18.1.1/24")}) {
		t.Errorf("ByName(eth1) = %+v, %v; want index 7 with 198.18.1.1/24", l, ok)
	}
}

func TestTableChanges(t *testing.T) {
	tb := newTable()
	if !tb.setLink(linkInfo{index: 2, name: "d0"}) {
		t.Error("a new link is no change")
	}
	if tb.setLink(linkInfo{index: 2, name: "d0"}) {
		t.Error("the same link again is a change")
	}
	if !tb.setLink(linkInfo{index: 2, name: "d0", up: true}) {
		t.Error("link up is no change")
	}
	if !tb.setAddr(addr(2, "198.18.0.1/24")) || tb.setAddr(addr(2, "198.18.0.1/24")) {
		t.Error("setAddr: wrong change report")
	}
	if tb.delAddr(addr(2, "198.18.0.2/24")) {
		t.Error("deleting an unknown address is a change")
	}
	if !tb.delLink(2) || tb.delLink(2) {
		t.Error("delLink: wrong change report")
	}
	if len(tb.addrs) != 0 {
		t.Errorf("delLink left addresses: %v", tb.addrs)
	}
}

// TestAddressBeforeLink: an address of an ifindex not yet known stays out
// of the Snapshot until its link arrives, then shows.
func TestAddressBeforeLink(t *testing.T) {
	tb := newTable()
	tb.setAddr(addr(3, "198.18.3.1/24"))
	if s := tb.snapshot(); s.Len() != 0 {
		t.Fatalf("links without a link notification: %v", s.Links())
	}
	tb.setLink(linkInfo{index: 3, name: "d3"})
	if l, _ := tb.snapshot().ByIndex(3); !slices.Equal(l.Addrs, []netip.Prefix{pfx("198.18.3.1/24")}) {
		t.Errorf("Addrs = %v", l.Addrs)
	}
}

func TestSnapshotOrder(t *testing.T) {
	tb := newTable()
	for _, l := range []linkInfo{{index: 9, name: "c"}, {index: 1, name: "lo"}, {index: 4, name: "b"}} {
		tb.setLink(l)
	}
	for _, p := range []string{"fd00:198:18::1/64", "198.18.1.1/24", "fe80::1/64", "198.18.0.1/24", "198.18.0.1/25"} {
		tb.setAddr(addr(4, p))
	}
	// A point-to-point address differing only in its peer is one prefix.
	tb.setAddr(addrInfo{index: 4, key: addrKey{local: pfx("198.18.0.1/24"), peer: netip.MustParseAddr("198.18.0.2")}})
	s := tb.snapshot()
	var idx []int
	for _, l := range s.Links() {
		idx = append(idx, l.Index)
	}
	if !slices.Equal(idx, []int{1, 4, 9}) {
		t.Errorf("Links() indexes = %v, want sorted", idx)
	}
	l, _ := s.ByName("b")
	want := []netip.Prefix{pfx("198.18.0.1/24"), pfx("198.18.0.1/25"), pfx("198.18.1.1/24"), pfx("fd00:198:18::1/64"), pfx("fe80::1/64")}
	if !slices.Equal(l.Addrs, want) {
		t.Errorf("Addrs = %v, want %v", l.Addrs, want)
	}
	// The caller owns what Links returns.
	ls := s.Links()
	ls[0].Name = "changed"
	if l, _ := s.ByIndex(1); l.Name != "lo" {
		t.Error("changing Links() changed the Snapshot")
	}
}

func TestZeroSnapshot(t *testing.T) {
	var s Snapshot
	if _, ok := s.ByIndex(1); ok {
		t.Error("zero Snapshot has index 1")
	}
	if _, ok := s.ByName("lo"); ok {
		t.Error("zero Snapshot has lo")
	}
	if len(s.Links()) != 0 || s.Len() != 0 {
		t.Error("zero Snapshot has links")
	}
}

func TestConfigDefaults(t *testing.T) {
	var c Config
	if c.coalesce() != defaultCoalesce || c.readBuffer() != defaultReadBuffer {
		t.Errorf("zero Config: coalesce %v, buffer %d", c.coalesce(), c.readBuffer())
	}
	if (Config{Coalesce: -1}).coalesce() != 0 {
		t.Error("negative Coalesce should disable coalescing")
	}
}
