package engine_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/engine"
)

const limitRules = "set local 198.18.0.2\n" +
	"set limit states 4\n" +
	"set timeout tcp.established 1m\n" +
	"pass in proto tcp to 198.18.0.2 port 80\n"

// handshake opens a connection from client port sport and checks that
// every packet passes; the ACK that completes the handshake makes the
// entry assured (never evicted early).
func handshake(t *testing.T, st *engine.Stateful, sport int, now int64) {
	t.Helper()
	rs := st.Rules()
	for _, line := range []string{
		fmt.Sprintf("tcp 198.18.0.1:%d > 198.18.0.2:80 S seq=1000", sport),
		fmt.Sprintf("tcp 198.18.0.2:80 > 198.18.0.1:%d SA seq=5000 ack=1001", sport),
		fmt.Sprintf("tcp 198.18.0.1:%d > 198.18.0.2:80 A seq=1001 ack=5001", sport),
	} {
		p := pkt(t, line)
		if d := st.Decide(p, dirOf(rs, p), now); d.Verdict != engine.Pass {
			t.Fatalf("%s: %s", line, verdict(d))
		}
	}
}

func syn(sport int) string {
	return fmt.Sprintf("tcp 198.18.0.1:%d > 198.18.0.2:80 S seq=1000", sport)
}

// TestTableFull: with `set limit states 4` and four established (assured)
// connections, nothing can be evicted: a fifth connection's SYN, which the
// rules pass, is dropped as the kernel drops it, while the established
// connections keep passing. Once their entries time out, new connections
// get in again.
func TestTableFull(t *testing.T) {
	rs := ruleset(t, limitRules)
	st := engine.NewStateful(rs, newTable(rs))
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	for i := range 4 {
		handshake(t, st, 40000+i, now)
	}
	if n := st.CT.Len(); n != 4 {
		t.Fatalf("%d entries after 4 connections", n)
	}

	for i := range 3 {
		p := pkt(t, syn(41000+i))
		d := st.Decide(p, dirOf(rs, p), now)
		if d.Verdict != engine.Block || d.Cause != engine.CauseTableFull || d.Reason() != "conntrack: table full" || d.Label() != "new" {
			t.Errorf("SYN %d into a full table: %s (ct %s), want block conntrack: table full (ct new)", i, verdict(d), d.Label())
		}
		// Stateless, the same SYN passes: the comparison says why.
		sd := engine.NewStateless(rs).Decide(p, dirOf(rs, p))
		if got := engine.Explain(sd, d); engine.Compare(sd, d) != engine.OnlyStatelessPasses || got != "state table full" {
			t.Errorf("Explain = %q", got)
		}
	}
	stats := st.CT.Stats()
	if stats.Refused != 3 || stats.Evicted != 0 || st.CT.Len() != 4 {
		t.Errorf("stats %+v, len %d; want 3 refused, none evicted, 4 entries", stats, st.CT.Len())
	}

	// The established connections are not disturbed.
	p := pkt(t, "tcp 198.18.0.1:40002 > 198.18.0.2:80 PA seq=1001 ack=5001 len=10")
	if d := st.Decide(p, dirOf(rs, p), now); d.Verdict != engine.Pass || d.Label() != "established" {
		t.Errorf("data on an established connection: %s (ct %s)", verdict(d), d.Label())
	}

	// After the established timeout (1m) the entries are dead: a new
	// connection takes the place of one.
	now += int64(2 * time.Minute)
	p = pkt(t, syn(42000))
	if d := st.Decide(p, dirOf(rs, p), now); d.Verdict != engine.Pass || d.Label() != "new" {
		t.Errorf("SYN after the old entries expired: %s (ct %s), want pass, new", verdict(d), d.Label())
	}
	if n := st.CT.Len(); n > 4 {
		t.Errorf("%d entries, limit 4", n)
	}
}

// TestTableFullEvictsUnassured: connections that never completed their
// handshake (a SYN flood) are not assured; when the table is full, a new
// connection evicts one of them near its own hash slot, as the kernel's
// early drop does, or is refused when none is near. Either way the table
// never grows past the limit, and each new SYN is accounted for exactly
// once.
func TestTableFullEvictsUnassured(t *testing.T) {
	rs := ruleset(t, limitRules)
	st := engine.NewStateful(rs, newTable(rs))
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	for i := range 4 {
		p := pkt(t, syn(30000+i))
		if d := st.Decide(p, dirOf(rs, p), now); d.Verdict != engine.Pass || d.Label() != "new" {
			t.Fatalf("SYN %d: %s", i, verdict(d))
		}
	}
	passed := 0
	for i := range 50 {
		before := st.CT.Stats()
		p := pkt(t, syn(31000+i))
		d := st.Decide(p, dirOf(rs, p), now)
		after := st.CT.Stats()
		evicted, refused := after.Evicted-before.Evicted, after.Refused-before.Refused
		switch {
		case d.Verdict == engine.Pass && d.Label() == "new" && evicted == 1 && refused == 0:
			passed++
		case d.Verdict == engine.Block && d.Cause == engine.CauseTableFull && evicted == 0 && refused == 1:
		default:
			t.Errorf("SYN %d: %s (ct %s), %d evicted, %d refused: want pass with one eviction or table full with one refusal",
				i, verdict(d), d.Label(), evicted, refused)
		}
		if n := st.CT.Len(); n != 4 {
			t.Fatalf("SYN %d: %d entries, limit 4", i, n)
		}
	}
	// Early drop looks at the slots near the new connection's: with the
	// four entries spread over the index, some new connections find one.
	t.Logf("%d of 50 evicted", passed)
	if passed == 0 {
		t.Error("no SYN evicted an unassured entry")
	}
}
