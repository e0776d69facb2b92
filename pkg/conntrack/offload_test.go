package conntrack

import (
	"testing"
	"time"
)

// TestRefreshForget: Refresh gives a live entry, found by either tuple,
// the time left it is told, so that it outlives its own timeout without a
// packet; Forget removes it as deleted, with a DESTROY event; neither
// finds what is not there.
func TestRefreshForget(t *testing.T) {
	tb := newTbl(t, Config{})
	p := pkt("udp 198.18.0.1:5000 > 198.18.0.2:53")
	r := tb.Track(p, tb.now())
	if !tb.Commit(p, &r, tb.now()) {
		t.Fatal("commit")
	}
	k := KeyOf(p)
	sub := tb.Subscribe(16, nil)
	defer sub.Close()
	if !tb.Refresh(k.Reply(), tb.now(), time.Hour) {
		t.Fatal("Refresh by the reply tuple found nothing")
	}
	tb.advance(30 * time.Minute) // beyond UDP's 30 s
	if e, ok := tb.Get(k, tb.now()); !ok || e.Timeout != 30*time.Minute {
		t.Fatalf("after 30 minutes: %+v %v, want 30m left", e, ok)
	}
	if !tb.Forget(k, tb.now()) {
		t.Fatal("Forget found nothing")
	}
	if _, ok := tb.Get(k, tb.now()); ok {
		t.Error("forgotten entry still there")
	}
	if st := tb.Stats(); st.Deleted != 1 || st.Entries != 0 {
		t.Errorf("stats %+v, want 1 deleted, 0 entries", st)
	}
	select {
	case ev := <-sub.Events():
		if ev.Type != EventDestroy {
			t.Errorf("event %v, want DESTROY", ev.Type)
		}
	default:
		t.Error("no DESTROY event")
	}
	if tb.Refresh(k, tb.now(), time.Hour) || tb.Forget(k, tb.now()) {
		t.Error("Refresh or Forget found a removed entry")
	}
}

// TestPickUpAfterOffload: a TCP connection that went on elsewhere while
// this table saw none of its packets (offloaded to the kernel) comes back
// with sequence numbers far beyond the entry's window: without PickUp
// they are invalid; after it, the entry learns the edges again from the
// packets and tracks strictly once both directions have been seen.
func TestPickUpAfterOffload(t *testing.T) {
	tb := newTbl(t, Config{})
	p := pkt("tcp 198.18.0.1:1000 > 198.18.0.2:80 S seq=100")
	r := tb.Track(p, tb.now())
	if !tb.Commit(p, &r, tb.now()) {
		t.Fatal("commit")
	}
	tb.want("tcp 198.18.0.2:80 > 198.18.0.1:1000 SA seq=500 ack=101", LabelEstablished, true)
	tb.want("tcp 198.18.0.1:1000 > 198.18.0.2:80 A seq=101 ack=501", LabelEstablished, false)
	// 1 GB later in each direction.
	const later = "tcp 198.18.0.1:1000 > 198.18.0.2:80 PA seq=1000000101 ack=1000000501 len=10"
	tb.wantInvalid(later, ReasonTCP)
	if !tb.PickUp(KeyOf(p), tb.now()) {
		t.Fatal("PickUp found nothing")
	}
	tb.want(later, LabelEstablished, false)
	tb.want("tcp 198.18.0.2:80 > 198.18.0.1:1000 A seq=1000000501 ack=1000000111", LabelEstablished, true)
	tb.want("tcp 198.18.0.1:1000 > 198.18.0.2:80 PA seq=1000000111 ack=1000000501 len=10", LabelEstablished, false)
	if st := tb.Stats(); st.TakenOver != 1 || st.PickedUp != 1 {
		t.Errorf("stats: taken over %d, picked up %d; want 1 and 1", st.TakenOver, st.PickedUp)
	}
	// Strict again: far out of window is invalid.
	tb.wantInvalid("tcp 198.18.0.1:1000 > 198.18.0.2:80 PA seq=3000000000 ack=1000000501 len=10", ReasonTCP)
}
