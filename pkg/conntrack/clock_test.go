package conntrack

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

// The table's clock never goes back, and whether an entry is alive depends
// only on its deadline and that clock: never on the hash seed, which
// decides where entries sit and so which ones the incremental sweep, early
// drop and index growth happen to look at.

// step is one packet of a scenario, at its own time.
type step struct {
	at  time.Duration // from the scenario's start
	pkt string
}

// labels runs the scenario on a fresh table with the given seed and
// returns each packet's label and reason.
func labels(cfg Config, seed uint64, steps []step) []string {
	cfg.Seed = seed
	t := New(cfg)
	start := int64(1_600_000_000) * int64(time.Second)
	out := make([]string, len(steps))
	for i, s := range steps {
		now := start + int64(s.at)
		p := pkt(s.pkt)
		r := t.Track(p, now)
		if r.Label == LabelNew {
			t.Commit(p, &r, now)
		}
		out[i] = r.Label.String() + " (" + r.ReasonString() + ")"
	}
	return out
}

// sameForEverySeed runs the scenario under many seeds and fails unless
// every packet gets one label under all of them; it returns those labels.
func sameForEverySeed(t *testing.T, cfg Config, steps []step) []string {
	t.Helper()
	want := labels(cfg, 1, steps)
	for seed := uint64(2); seed <= 64; seed++ {
		got := labels(cfg, seed, steps)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("seed %d, packet %d (%s at %v): %s; seed 1: %s", seed, i, steps[i].pkt, steps[i].at, got[i], want[i])
			}
		}
	}
	return want
}

// TestClockStepsOneLabelForEverySeed: a capture whose IPv6 packets were
// restamped years after its IPv4 packets, the two interleaved, so that the
// clock jumps forward and back at every other packet. Before the clock was
// made monotonic, the "future" packets' lookups reaped, by the incremental
// sweep, some of the IPv4 connections (which ones depended on the seed),
// and their next "past" packet was established under one seed and new
// under another.
func TestClockStepsOneLabelForEverySeed(t *testing.T) {
	const years6 = 6 * 365 * 24 * time.Hour
	var steps []step
	const conns = 1000
	// The IPv4 conversations start, and are answered, in the past.
	for i := range conns {
		at := time.Duration(i) * time.Millisecond
		steps = append(steps,
			step{at, fmt.Sprintf("udp 198.18.0.1:%d > 198.18.0.2:53", 10000+i)},
			step{at + time.Microsecond, fmt.Sprintf("udp 198.18.0.2:53 > 198.18.0.1:%d", 10000+i)})
	}
	// Then the two families interleave: an IPv6 packet six years on,
	// an IPv4 packet back in the past, and so on.
	for i := range conns {
		at := time.Second + time.Duration(i)*time.Millisecond
		steps = append(steps,
			step{years6 + at, fmt.Sprintf("udp [fd00:198:18::1]:%d > [fd00:198:18::2]:443", 20000+i)},
			step{at, fmt.Sprintf("udp 198.18.0.1:%d > 198.18.0.2:53", 10000+i)})
	}
	// And the clock steps back for good: the IPv6 flows answer in the past.
	for i := range conns {
		at := 2*time.Second + time.Duration(i)*time.Millisecond
		steps = append(steps, step{at, fmt.Sprintf("udp [fd00:198:18::2]:443 > [fd00:198:18::1]:%d", 20000+i)})
	}
	// Few shards, so that the incremental sweep (every 32 packets of a
	// shard) runs often.
	got := sameForEverySeed(t, Config{Shards: 2}, steps)

	// What the labels are: every packet is decided at the latest time
	// seen. The first IPv6 packet moved the clock six years on, where
	// every IPv4 entry had expired: their later packets start new
	// connections (the first IPv4 one too, decided after that jump). The
	// IPv6 flows' answers, stamped in the past, are decided at the
	// latest time, where their entries are alive: established.
	for i := range conns {
		if s := got[2*i+1]; s != "established (reply)" {
			t.Errorf("IPv4 answer %d: %s, want established (reply)", i, s)
		}
		if s := got[2*conns+2*i+1]; s != "new (new connection)" {
			t.Errorf("IPv4 packet %d after the jump: %s, want new (new connection)", i, s)
		}
		if s := got[4*conns+i]; s != "established (reply)" {
			t.Errorf("IPv6 answer %d, stamped before its query: %s, want established (reply)", i, s)
		}
	}
}

// TestClockNeverGoesBack: a packet stamped before the latest one is
// decided at the latest time; the entry it made keeps the timeout counted
// from there, and listings see the same clock.
func TestClockNeverGoesBack(t *testing.T) {
	tb := newTbl(t, Config{})
	tb.clock = clock(time.Hour)
	tb.want(dnsQuery, LabelNew, false)
	if got := tb.Now(); got != int64(time.Hour) {
		t.Fatalf("Now %v, want 1h", time.Duration(got))
	}
	// An hour back: the clock stays; the entry is there with its 30 s.
	tb.clock = 0
	e, ok := tb.entry(dnsQuery)
	if !ok || e.Timeout != 30*time.Second {
		t.Fatalf("after a step back: entry %v timeout %v, want alive with 30s", ok, e.Timeout)
	}
	tb.want(dnsAnswer, LabelEstablished, true)
	if tb.Now() != int64(time.Hour) {
		t.Errorf("Now %v after a step back, want 1h", time.Duration(tb.Now()))
	}
	// Forward again past the deadline counted from 1h (1h + 30 s, the
	// answer refreshed it to 30 s from 1h too).
	tb.clock = clock(time.Hour + 31*time.Second)
	if _, ok := tb.entry(dnsQuery); ok {
		t.Error("entry alive 31 s after its last packet")
	}
	// Back again: what expired stays expired.
	tb.clock = clock(time.Hour)
	tb.want(dnsAnswer, LabelNew, false)
	if n := tb.Live(0); n != 1 {
		t.Errorf("Live %d, want 1 (the answer's new entry)", n)
	}
}

// TestFullTableReapsBeforeEvicting: at the limit, expired entries make the
// room, wherever they sit; a live entry is evicted early only when no entry
// has expired anywhere, and a connection is refused only when live entries
// fill the table. Before, early drop scanned 32 entries near the new
// connection's slot and dropped the first unassured one it met, or refused,
// while expired entries elsewhere (which ones: the seed's choice) still
// counted against the limit.
func TestFullTableReapsBeforeEvicting(t *testing.T) {
	cfg := Config{Limit: 256, Shards: 64}
	var steps []step
	// 128 old flows, assured (answered, then a packet after 2 s: a UDP
	// stream, 120 s), and 128 younger ones, assured too.
	for gen, at := range []time.Duration{0, 100 * time.Second} {
		for j, d := range []time.Duration{0, time.Millisecond, 3 * time.Second} {
			for i := range 128 {
				s := fmt.Sprintf("udp 198.18.%d.%d:5000 > 198.18.0.2:53", 1+gen, i)
				if j == 1 {
					s = fmt.Sprintf("udp 198.18.0.2:53 > 198.18.%d.%d:5000", 1+gen, i)
				}
				steps = append(steps, step{at + d, s})
			}
		}
	}
	// The old flows expire at 123 s. At 130 s, 128 new flows: each must
	// take an expired entry's place.
	newFlows := len(steps)
	for i := range 128 {
		steps = append(steps, step{130 * time.Second, fmt.Sprintf("udp 198.18.3.%d:5000 > 198.18.0.2:53", i)})
	}
	// The young assured flows all live on: no live entry was dropped
	// while expired ones held the room. (Had the new flows found no
	// expired entry anywhere, early drop would have taken unassured
	// live ones near each: which ones, the seed decides, as in the
	// kernel.)
	young := len(steps)
	for i := range 128 {
		steps = append(steps, step{132 * time.Second, fmt.Sprintf("udp 198.18.0.2:53 > 198.18.2.%d:5000", i)})
	}
	got := sameForEverySeed(t, cfg, steps)
	for i := newFlows; i < newFlows+128; i++ {
		if got[i] != "new (new connection)" {
			t.Errorf("%s: %s, want new (new connection)", steps[i].pkt, got[i])
		}
	}
	for i := young; i < len(steps); i++ {
		if got[i] != "established (reply)" {
			t.Errorf("%s: %s, want established (reply): a live assured flow was dropped", steps[i].pkt, got[i])
		}
	}
	// And the counts: the old entries expired, no live entry was
	// evicted, nothing was refused.
	cfg.Seed = 7
	tb := New(cfg)
	start := int64(1_600_000_000) * int64(time.Second)
	for _, s := range steps {
		p := pkt(s.pkt)
		r := tb.Track(p, start+int64(s.at))
		if r.Label == LabelNew {
			tb.Commit(p, &r, start+int64(s.at))
		}
	}
	if st := tb.Stats(); st.Expired != 128 || st.Evicted != 0 || st.Refused != 0 || tb.Live(0) != 256 {
		t.Errorf("Live %d, stats %+v: want 128 expired, 0 evicted, 0 refused, 256 live", tb.Live(0), st)
	}
	checkSoonest(t, tb)
}

// TestLiveCountsNoExpiredEntry: Live (what status and metrics show) and the
// listing agree, whether or not the sweep reached the expired entries.
func TestLiveCountsNoExpiredEntry(t *testing.T) {
	tb := newTbl(t, Config{})
	for i := range 100 {
		tb.want(fmt.Sprintf("udp 198.18.0.1:%d > 198.18.0.2:53", 1000+i), LabelNew, false)
	}
	tb.advance(20 * time.Second)
	for i := range 10 {
		tb.want(fmt.Sprintf("udp 198.18.0.1:%d > 198.18.0.2:53", 2000+i), LabelNew, false)
	}
	tb.advance(15 * time.Second) // the first 100 have expired, unreaped
	listed := 0
	tb.Walk(tb.now(), func(EntryInfo) bool { listed++; return true })
	if n := tb.Live(tb.now()); n != 10 || listed != 10 {
		t.Errorf("Live %d, listed %d, want 10 and 10", n, listed)
	}
	if st := tb.Stats(); st.Entries != 10 || st.Expired != 100 {
		t.Errorf("after Live: stats %+v, want 10 entries, 100 expired", st)
	}
	checkSoonest(t, tb.Table)
}

// TestDeadlineBoundsUnderChurn: random traffic of every timeout, with the
// clock stepping back now and then; the deadline bounds that reapExpired
// trusts must hold after every packet, or an expired entry would escape it.
func TestDeadlineBoundsUnderChurn(t *testing.T) {
	tb := newTbl(t, Config{Limit: 300, Shards: 8, Timeouts: Timeouts{Generic: 10 * time.Second, UDP: 3 * time.Second}})
	for i := range 20000 {
		switch {
		case i%97 == 0:
			tb.clock -= clock(5 * time.Second)
		default:
			tb.advance(time.Duration(i%13) * 100 * time.Millisecond)
		}
		switch i % 3 {
		case 0:
			tb.see(fmt.Sprintf("udp 198.18.0.%d:%d > 198.18.0.2:53", i%7, 1000+i%500))
		case 1:
			tb.see(fmt.Sprintf("udp 198.18.0.2:53 > 198.18.0.%d:%d", i%7, 1000+(i*7)%500))
		default:
			tb.see(fmt.Sprintf("gre 198.18.1.%d > 198.18.0.2", i%200))
		}
		if i%500 == 0 {
			checkSoonest(t, tb.Table)
		}
	}
	checkSoonest(t, tb.Table)
	tb.Sweep(tb.now())
	checkBalance(t, tb.Table)
}

// checkSoonest checks the deadline bounds: each shard's is at most the
// soonest deadline of its entries, and the table's at most every shard's.
func checkSoonest(t *testing.T, tb *Table) {
	t.Helper()
	var all []int64
	for i := range tb.shards {
		s := &tb.shards[i]
		s.mu.Lock()
		m := int64(math.MaxInt64)
		for _, sl := range s.slots {
			if sl != 0 {
				m = min(m, s.at(sl&refMask-1).expires)
			}
		}
		b := s.soonest.Load()
		s.mu.Unlock()
		if b > m {
			t.Fatalf("shard %d: bound %d above its soonest deadline %d", i, b, m)
		}
		all = append(all, b)
	}
	if b := tb.soonest.Load(); b > slices.Min(all) {
		t.Fatalf("table bound %d above a shard's %d", b, slices.Min(all))
	}
}
