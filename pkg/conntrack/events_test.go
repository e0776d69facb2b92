package conntrack

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// evLine is an event in a test's words:
//
//	[UPDATE] tcp ESTABLISHED 198.18.0.1:40000 > 198.18.0.2:80 replied assured
func evLine(ev Event) string {
	e := ev.Entry
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s %s %v:%d > %v:%d", ev.Type, e.Proto(), e.StateName(),
		e.Original.Src(), e.Original.SrcPort(), e.Original.Dst(), e.Original.DstPort())
	if e.SeenReply {
		b.WriteString(" replied")
	}
	if e.Assured {
		b.WriteString(" assured")
	}
	return b.String()
}

// drain returns the events queued on sub, in order, without waiting.
func drain(sub *Subscription) []string {
	var out []string
	for {
		select {
		case ev := <-sub.Events():
			out = append(out, evLine(ev))
		default:
			return out
		}
	}
}

func wantEvents(t *testing.T, sub *Subscription, what string, want ...string) {
	t.Helper()
	got := drain(sub)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s: events\n\t%s\nwant\n\t%s", what, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// TestEventsTCPLifetime: a TCP connection's events, as conntrack -E shows
// them: NEW at its first packet's Commit, UPDATE for each state change
// (SYN_RECV with the reply seen, ESTABLISHED and assured, FIN_WAIT...),
// none for a packet that changes nothing, DESTROY when it is deleted.
func TestEventsTCPLifetime(t *testing.T) {
	tb := newTbl(t, Config{})
	sub := tb.Subscribe(16, nil)
	defer sub.Close()
	const c = "198.18.0.1:40000 > 198.18.0.2:80"
	tb.see(cSyn)
	wantEvents(t, sub, "SYN", "[NEW] tcp SYN_SENT "+c)
	tb.see(sSynAck)
	wantEvents(t, sub, "SYN-ACK", "[UPDATE] tcp SYN_RECV "+c+" replied")
	tb.see(cAck)
	wantEvents(t, sub, "ACK", "[UPDATE] tcp ESTABLISHED "+c+" replied assured")
	tb.see(cData)
	tb.see(sData)
	wantEvents(t, sub, "data")
	tb.see("tcp 198.18.0.1:40000 > 198.18.0.2:80 FA seq=1101 ack=5501 win=8192")
	wantEvents(t, sub, "FIN", "[UPDATE] tcp FIN_WAIT "+c+" replied assured")
	if n := tb.Delete(tb.now(), func(e *EntryInfo) bool { return e.Original.DstPort() == 80 }); n != 1 {
		t.Fatalf("Delete: %d", n)
	}
	wantEvents(t, sub, "Delete", "[DESTROY] tcp FIN_WAIT "+c+" replied assured")
	// The deleted connection's next packet is new: a mid-stream ACK
	// can pick it up again only if the rules let it.
	if r := tb.Track(pkt(cData), tb.now()); r.Label != LabelNew || !r.Pending() {
		t.Errorf("after Delete: %v (%s), want new and pending", r.Label, r.ReasonString())
	}
	wantEvents(t, sub, "Track without Commit")
}

// TestEventsUDPAndExpiry: a UDP flow is NEW, UPDATE when the reply comes
// (REPLIED) and when it becomes a stream (ASSURED); its DESTROY for the
// timeout comes when the entry is reaped (Sweep), with Timeout 0.
func TestEventsUDPAndExpiry(t *testing.T) {
	tb := newTbl(t, Config{})
	sub := tb.Subscribe(16, nil)
	defer sub.Close()
	const f = "198.18.0.1:5000 > 198.18.0.2:5001"
	tb.see("udp 198.18.0.1:5000 > 198.18.0.2:5001")
	tb.see("udp 198.18.0.2:5001 > 198.18.0.1:5000")
	tb.advance(3 * time.Second)
	tb.see("udp 198.18.0.1:5000 > 198.18.0.2:5001")
	tb.see("udp 198.18.0.1:5000 > 198.18.0.2:5001")
	wantEvents(t, sub, "flow",
		"[NEW] udp UNREPLIED "+f,
		"[UPDATE] udp REPLIED "+f+" replied",
		"[UPDATE] udp ASSURED "+f+" replied assured")
	tb.advance(119 * time.Second)
	tb.Sweep(tb.now())
	wantEvents(t, sub, "before the deadline")
	tb.advance(time.Second)
	wantEvents(t, sub, "expired, not reaped yet")
	if n := tb.Sweep(tb.now()); n != 1 {
		t.Fatalf("Sweep reaped %d", n)
	}
	select {
	case ev := <-sub.Events():
		if got := evLine(ev); got != "[DESTROY] udp ASSURED "+f+" replied assured" || ev.Entry.Timeout != 0 || ev.Entry.Packets != [2]uint64{3, 1} {
			t.Errorf("expiry: %s timeout %v packets %v", got, ev.Entry.Timeout, ev.Entry.Packets)
		}
	default:
		t.Fatal("no DESTROY after Sweep reaped the entry")
	}
}

// TestEventsReopenAndKill: an RST closes an established connection
// (UPDATE to CLOSE); a SYN reopening it destroys the old entry and commits
// a new one; an RST answering that SYN kills the entry (DESTROY); a SYN
// finding an expired entry reaps it (DESTROY) before its NEW.
func TestEventsReopenAndKill(t *testing.T) {
	tb := newTbl(t, Config{})
	sub := tb.Subscribe(32, nil)
	defer sub.Close()
	const c = "198.18.0.1:40000 > 198.18.0.2:80"
	tb.handshake()
	drain(sub)
	tb.see("tcp 198.18.0.1:40000 > 198.18.0.2:80 RA seq=1001 ack=5001 win=8192")
	wantEvents(t, sub, "RST", "[UPDATE] tcp CLOSE "+c+" replied assured")
	tb.see(cSyn)
	wantEvents(t, sub, "SYN on CLOSE", "[DESTROY] tcp CLOSE "+c+" replied assured", "[NEW] tcp SYN_SENT "+c)
	tb.see("tcp 198.18.0.2:80 > 198.18.0.1:40000 RA seq=0 ack=1001 win=0")
	wantEvents(t, sub, "RST answering the SYN", "[DESTROY] tcp CLOSE "+c+" replied")
	tb.see(cSyn)
	tb.see(sSynAck)
	drain(sub)
	tb.advance(2 * time.Minute) // SYN_RECV's 60 s are over
	tb.see(cSyn)
	wantEvents(t, sub, "SYN after expiry", "[DESTROY] tcp SYN_RECV "+c+" replied", "[NEW] tcp SYN_SENT "+c)
}

// TestEventsMatch: a subscription's match picks its events; the others
// never reach its queue (nor count as dropped).
func TestEventsMatch(t *testing.T) {
	tb := newTbl(t, Config{})
	dns := tb.Subscribe(2, func(e *EntryInfo) bool { return e.Original.DstPort() == 53 })
	defer dns.Close()
	all := tb.Subscribe(64, nil)
	defer all.Close()
	for i := range 10 {
		tb.see(fmt.Sprintf("udp 198.18.0.1:%d > 198.18.0.2:80", 1000+i))
	}
	tb.see("udp 198.18.0.1:999 > 198.18.0.2:53")
	wantEvents(t, dns, "match", "[NEW] udp UNREPLIED 198.18.0.1:999 > 198.18.0.2:53")
	if got := len(drain(all)); got != 11 || dns.Dropped() != 0 || all.Dropped() != 0 {
		t.Errorf("all: %d events, dropped %d/%d", got, dns.Dropped(), all.Dropped())
	}
}

// TestEventsFullQueueDrops: nobody reads a subscription of 4: the packets
// are tracked all the same, never waiting, and the events past 4 are
// dropped and counted. Close stops the events, and a closed table costs
// its packets nothing again.
func TestEventsFullQueueDrops(t *testing.T) {
	tb := newTbl(t, Config{})
	sub := tb.Subscribe(4, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 {
			tb.see(fmt.Sprintf("udp 198.18.0.1:%d > 198.18.0.2:53", 1000+i))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("tracking blocked on a full event queue")
	}
	if got := len(drain(sub)); got != 4 || sub.Dropped() != 96 {
		t.Errorf("queued %d, dropped %d; want 4 and 96", got, sub.Dropped())
	}
	if tb.Subscribers() != 1 {
		t.Errorf("Subscribers %d", tb.Subscribers())
	}
	sub.Close()
	sub.Close()
	tb.see("udp 198.18.0.1:1 > 198.18.0.2:53")
	if got := len(drain(sub)); got != 0 || tb.Subscribers() != 0 {
		t.Errorf("after Close: %d events, %d subscribers", got, tb.Subscribers())
	}
}

// TestEventsBesideOnRemove: OnRemove (source tracking's hook for marked
// entries) still sees every removal of a marked entry when a subscriber
// also gets its DESTROY.
func TestEventsBesideOnRemove(t *testing.T) {
	var removed []netip.Addr
	tb := newTbl(t, Config{OnRemove: func(k *Key, mark uint8, assured bool) { removed = append(removed, k.Src()) }})
	sub := tb.Subscribe(8, nil)
	defer sub.Close()
	p := pkt("udp 198.18.0.3:53 > 198.18.0.2:53")
	r := tb.Track(p, tb.now())
	r.Mark = 9
	tb.Commit(p, &r, tb.now())
	tb.advance(time.Minute)
	tb.Sweep(tb.now())
	wantEvents(t, sub, "marked entry", "[NEW] udp UNREPLIED 198.18.0.3:53 > 198.18.0.2:53", "[DESTROY] udp UNREPLIED 198.18.0.3:53 > 198.18.0.2:53")
	if len(removed) != 1 || removed[0] != netip.MustParseAddr("198.18.0.3") {
		t.Errorf("OnRemove: %v", removed)
	}
}

// TestEventsNoAllocs: the packet path allocates nothing, with or without
// a subscriber, for established packets that change nothing and for ones
// that make an UPDATE; a new connection's Commit neither.
func TestEventsNoAllocs(t *testing.T) {
	for _, subscribed := range []bool{false, true} {
		t.Run(fmt.Sprintf("subscribed=%v", subscribed), func(t *testing.T) {
			tb := newTbl(t, Config{})
			var sub *Subscription
			if subscribed {
				sub = tb.Subscribe(1, nil) // full at once: drops are free too
				defer sub.Close()
			}
			tb.handshake()
			data, reply := pkt(cData), pkt(sData)
			if n := testing.AllocsPerRun(1000, func() {
				tb.Track(data, tb.now())
				tb.Track(reply, tb.now())
			}); n != 0 {
				t.Errorf("established: %v allocs", n)
			}
			// A UDP flow's reply makes an UPDATE (REPLIED); Kill
			// (a DESTROY) puts it back to new each round.
			q, a := pkt("udp 198.18.0.1:5000 > 198.18.0.2:53"), pkt("udp 198.18.0.2:53 > 198.18.0.1:5000")
			if n := testing.AllocsPerRun(1000, func() {
				r := tb.Track(q, tb.now())
				tb.Commit(q, &r, tb.now())
				tb.Track(a, tb.now())
				tb.Kill(q, tb.now())
			}); n != 0 {
				t.Errorf("new, update, destroy: %v allocs", n)
			}
			if subscribed && sub.Dropped() == 0 {
				t.Error("no event was dropped")
			}
		})
	}
}

// TestEventsConcurrent: packets on many goroutines, subscribers coming and
// going, and a reader; for the race detector.
func TestEventsConcurrent(t *testing.T) {
	tb := newTbl(t, Config{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	reader := tb.Subscribe(64, nil)
	wg.Go(func() {
		for {
			select {
			case <-reader.Events():
			case <-stop:
				return
			}
		}
	})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				tb.Subscribe(1, func(e *EntryInfo) bool { return e.Assured }).Close()
			}
		}
	})
	var pw sync.WaitGroup
	for g := range 4 {
		pw.Go(func() {
			for i := range 500 {
				tb.see(fmt.Sprintf("udp 198.18.0.%d:%d > 198.18.0.2:53", g+1, 1000+i))
				tb.see(fmt.Sprintf("udp 198.18.0.2:53 > 198.18.0.%d:%d", g+1, 1000+i))
				if i%100 == 0 {
					tb.Sweep(tb.now())
				}
			}
		})
	}
	pw.Wait()
	close(stop)
	wg.Wait()
	reader.Close()
}
