package conntrack

import (
	"net/netip"
	"testing"
	"time"
)

type removal struct {
	src     netip.Addr
	mark    uint8
	assured bool
}

// TestOnRemoveAndAssured: an entry committed with a mark reports its
// removal once, however it goes (expiry, Delete), with whether it was
// assured; Result.Assured marks the packet that completed the TCP
// handshake, once; entries without a mark report nothing.
func TestOnRemoveAndAssured(t *testing.T) {
	var got []removal
	tb := newTbl(t, Config{OnRemove: func(k *Key, mark uint8, assured bool) {
		got = append(got, removal{k.Src(), mark, assured})
	}})
	commit := func(s string, mark uint8) {
		p := pkt(s)
		r := tb.Track(p, tb.now())
		r.Mark = mark
		if r.Label != LabelNew || !tb.Commit(p, &r, tb.now()) {
			t.Fatalf("%s: %v", s, r.Label)
		}
	}
	commit("tcp 198.18.0.1:1000 > 198.18.0.2:22 S seq=100", 7)
	if r := tb.see("tcp 198.18.0.2:22 > 198.18.0.1:1000 SA seq=500 ack=101"); r.Assured || r.Mark != 7 {
		t.Errorf("SYN-ACK: assured %v mark %d, want not yet and 7", r.Assured, r.Mark)
	}
	if r := tb.see("tcp 198.18.0.1:1000 > 198.18.0.2:22 A seq=101 ack=501"); !r.Assured {
		t.Errorf("handshake's ACK: Assured false")
	}
	if r := tb.see("tcp 198.18.0.1:1000 > 198.18.0.2:22 PA seq=101 ack=501 len=4"); r.Assured {
		t.Errorf("data after the handshake: Assured again")
	}
	commit("udp 198.18.0.3:53 > 198.18.0.2:53", 9)
	commit("udp 198.18.0.4:53 > 198.18.0.2:53", 0)
	if n := tb.Delete(tb.now(), func(e *EntryInfo) bool { return e.Original.Src() == netip.MustParseAddr("198.18.0.1") }); n != 1 {
		t.Errorf("Delete removed %d, want 1", n)
	}
	if len(got) != 1 || got[0] != (removal{netip.MustParseAddr("198.18.0.1"), 7, true}) {
		t.Fatalf("after Delete: %+v", got)
	}
	if _, ok := tb.entry("tcp 198.18.0.1:1000 > 198.18.0.2:22 A seq=101 ack=501"); ok {
		t.Error("the deleted entry is still there")
	}
	tb.advance(10 * time.Minute)
	tb.Sweep(tb.now())
	if len(got) != 2 || got[1] != (removal{netip.MustParseAddr("198.18.0.3"), 9, false}) {
		t.Errorf("after expiry: %+v, want the marked UDP entry and not the unmarked one", got)
	}
}
