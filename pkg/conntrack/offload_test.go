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
