package srctrack

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// at is the caller's clock in tests: seconds since an arbitrary start.
func at(sec float64) int64 { return int64(sec * float64(time.Second)) }

func newTracker(t testing.TB, cfg Config, tag uint8, l Limits) *Tracker {
	t.Helper()
	tr := New(cfg)
	if err := tr.SetLimits(tag, l); err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestRefusalString(t *testing.T) {
	for r, want := range map[Refusal]string{
		None: "none", Max: "max", MaxSrcNodes: "max-src-nodes",
		MaxSrcStates: "max-src-states", SrcNodesLimit: "src-nodes-limit", 9: "Refusal(9)",
	} {
		if got := r.String(); got != want {
			t.Errorf("Refusal(%d) = %q, want %q", r, got, want)
		}
	}
	for e, want := range map[Exceeded]string{
		0: "none", ExceededConn: "max-src-conn", ExceededRate: "max-src-conn-rate",
		ExceededConn | ExceededRate: "max-src-conn,max-src-conn-rate",
	} {
		if got := e.String(); got != want {
			t.Errorf("Exceeded(%d) = %q, want %q", e, got, want)
		}
	}
}

// step is one Acquire at time 0 and what it should answer.
type step struct {
	src  string
	want Refusal
}

// TestLimitsRefuseAtN: each limit lets N states through and refuses the
// next one, with the reason pf gives.
func TestLimitsRefuseAtN(t *testing.T) {
	const a, b, c = "198.18.0.1", "198.18.0.2", "198.18.0.3"
	tests := []struct {
		name  string
		cfg   Config
		l     Limits
		steps []step
	}{
		{"max 3", Config{}, Limits{Max: 3},
			[]step{{a, None}, {b, None}, {a, None}, {c, Max}, {a, Max}}},
		{"max-src-states 2", Config{}, Limits{MaxSrcStates: 2},
			[]step{{a, None}, {a, None}, {a, MaxSrcStates}, {b, None}, {b, None}, {b, MaxSrcStates}}},
		{"max-src-nodes 2", Config{}, Limits{MaxSrcNodes: 2},
			[]step{{a, None}, {b, None}, {a, None}, {b, None}, {c, MaxSrcNodes}}},
		{"src-nodes limit 2", Config{Limit: 2}, Limits{SourceTrack: true},
			[]step{{a, None}, {b, None}, {a, None}, {c, SrcNodesLimit}}},
		{"max 1", Config{}, Limits{Max: 1},
			[]step{{a, None}, {a, Max}}},
		{"max before max-src-states", Config{}, Limits{Max: 2, MaxSrcStates: 2},
			[]step{{a, None}, {a, None}, {a, Max}}},
		{"max-src-states 1", Config{}, Limits{MaxSrcStates: 1},
			[]step{{a, None}, {a, MaxSrcStates}, {b, None}}},
		{"v4 and v6 are two sources", Config{}, Limits{MaxSrcStates: 1},
			[]step{{"198.18.0.1", None}, {"::ffff:198.18.0.1", None}, {"2001:db8::1", None}, {"::ffff:198.18.0.1", MaxSrcStates}}},
		{"no limits", Config{}, Limits{},
			[]step{{a, None}, {a, None}, {a, None}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(t, tt.cfg, 1, tt.l)
			var want Stats
			for i, s := range tt.steps {
				ok, why := tr.Acquire(1, ip(s.src), 0)
				if ok != (s.want == None) || why != s.want {
					t.Fatalf("step %d: Acquire(%s) = %v, %v; want %v", i, s.src, ok, why, s.want)
				}
				want.Refused[s.want]++
			}
			want.Refused[None] = 0
			if got := tr.Stats().Refused; got != want.Refused {
				t.Errorf("Stats().Refused = %v, want %v", got, want.Refused)
			}
		})
	}
}

// TestReleaseBringsRoomBack: at each limit, releasing one state makes room
// for exactly one more.
func TestReleaseBringsRoomBack(t *testing.T) {
	a, b, c, d := ip("198.18.0.1"), ip("198.18.0.2"), ip("198.18.0.3"), ip("198.18.0.4")
	tests := []struct {
		name     string
		cfg      Config
		l        Limits
		fill     []netip.Addr
		release  netip.Addr
		next     netip.Addr // refused, then let in after the release
		again    netip.Addr // refused after that
		refusal  Refusal
		nodesNow int
	}{
		{"max", Config{}, Limits{Max: 2}, []netip.Addr{a, b}, a, c, d, Max, 0},
		{"max-src-states", Config{}, Limits{MaxSrcStates: 2}, []netip.Addr{a, a}, a, a, a, MaxSrcStates, 1},
		{"max-src-nodes", Config{}, Limits{MaxSrcNodes: 2}, []netip.Addr{a, b}, a, c, d, MaxSrcNodes, 2},
		{"src-nodes limit", Config{Limit: 2}, Limits{SourceTrack: true}, []netip.Addr{a, b}, b, c, d, SrcNodesLimit, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(t, tt.cfg, 7, tt.l)
			for _, s := range tt.fill {
				if ok, why := tr.Acquire(7, s, 0); !ok {
					t.Fatalf("fill %v: %v", s, why)
				}
			}
			if _, why := tr.Acquire(7, tt.next, at(1)); why != tt.refusal {
				t.Fatalf("full: Acquire = %v, want %v", why, tt.refusal)
			}
			tr.Release(7, tt.release, false, at(2))
			if ok, why := tr.Acquire(7, tt.next, at(3)); !ok {
				t.Fatalf("after Release: Acquire refused: %v", why)
			}
			if _, why := tr.Acquire(7, tt.again, at(4)); why != tt.refusal {
				t.Fatalf("full again: Acquire = %v, want %v", why, tt.refusal)
			}
			if got := tr.Rule(7); got.States != len(tt.fill) || got.Nodes != tt.nodesNow {
				t.Errorf("Rule = %+v, want %d states, %d nodes", got, len(tt.fill), tt.nodesNow)
			}
		})
	}
}

// TestSrcTrackKeepsNode: with src.track 10s the node stays 10s after its
// last state and then goes, by Expire.
func TestSrcTrackKeepsNode(t *testing.T) {
	tr := newTracker(t, Config{Timeout: 10 * time.Second}, 1, Limits{MaxSrcStates: 5})
	a := ip("198.18.0.1")
	tr.Acquire(1, a, at(0))
	tr.Acquire(1, a, at(0))
	tr.Release(1, a, false, at(1))
	tr.Release(1, a, false, at(2)) // last state: expires at 12
	if n := tr.Expire(at(11.9)); n != 0 {
		t.Fatalf("Expire(11.9) = %d, want 0", n)
	}
	var got []SourceInfo
	tr.Sources(at(5), func(si SourceInfo) bool { got = append(got, si); return true })
	if len(got) != 1 || got[0].States != 0 || got[0].Expires != at(12) || got[0].Created != 0 {
		t.Fatalf("Sources = %+v, want one idle node expiring at 12s", got)
	}
	if n := tr.Expire(at(12)); n != 1 {
		t.Fatalf("Expire(12) = %d, want 1", n)
	}
	if s := tr.Stats(); s.Nodes != 0 || s.Inserted != 1 || s.Expired != 1 {
		t.Errorf("Stats = %+v", s)
	}
}

// TestSrcTrackLazy: an idle node past its time goes without Expire: it is
// renewed when its source comes back, and swept when a new source meets
// max-src-nodes.
func TestSrcTrackLazy(t *testing.T) {
	tr := newTracker(t, Config{Timeout: 10 * time.Second}, 1, Limits{MaxSrcNodes: 1})
	a, b := ip("198.18.0.1"), ip("198.18.0.2")
	tr.Acquire(1, a, at(0))
	tr.Release(1, a, false, at(1)) // idle until 11

	if _, why := tr.Acquire(1, b, at(5)); why != MaxSrcNodes {
		t.Fatalf("b at 5s: %v, want max-src-nodes: the idle node still counts", why)
	}
	if ok, why := tr.Acquire(1, b, at(11)); !ok {
		t.Fatalf("b at 11s: refused %v; a's node should have been swept", why)
	}
	tr.Release(1, b, false, at(12)) // idle until 22

	// b comes back after its node ran out: renewed in place.
	if ok, _ := tr.Acquire(1, b, at(30)); !ok {
		t.Fatal("b at 30s refused")
	}
	var got []SourceInfo
	tr.Sources(at(30), func(si SourceInfo) bool { got = append(got, si); return true })
	if len(got) != 1 || got[0].Addr != b || got[0].Created != at(30) || got[0].Expires != 0 {
		t.Fatalf("Sources = %+v, want b renewed at 30s", got)
	}
	// An expired idle node is not listed even before it is swept.
	tr.Release(1, b, false, at(31))
	n := 0
	tr.Sources(at(41), func(SourceInfo) bool { n++; return true })
	if n != 0 {
		t.Errorf("Sources at 41s listed %d nodes, want 0", n)
	}
	if s := tr.Stats(); s.Inserted != 3 || s.Expired != 2 || s.Nodes != 1 {
		t.Errorf("Stats = %+v, want 3 inserted, 2 expired, 1 node", s)
	}
}

// TestSrcTrackZero: pf's default src.track 0: the node goes with its last
// state, and a rule's own src.track overrides the global one.
func TestSrcTrackZero(t *testing.T) {
	tr := newTracker(t, Config{}, 1, Limits{MaxSrcStates: 5})
	if err := tr.SetLimits(2, Limits{MaxSrcStates: 5, SrcTrack: time.Second}); err != nil {
		t.Fatal(err)
	}
	a := ip("2001:db8::1")
	tr.Acquire(1, a, 0)
	tr.Acquire(2, a, 0)
	tr.Release(1, a, false, at(1))
	tr.Release(2, a, false, at(1))
	if r := tr.Rule(1); r.Nodes != 0 {
		t.Errorf("rule 1 (src.track 0): %d nodes after the last state, want 0", r.Nodes)
	}
	if r := tr.Rule(2); r.Nodes != 1 {
		t.Errorf("rule 2 (src.track 1s): %d nodes, want 1", r.Nodes)
	}
	if n := tr.Expire(at(2)); n != 1 {
		t.Errorf("Expire = %d, want 1", n)
	}
}

// TestGlobalLimit: set limit src-nodes counts the nodes of every rule.
func TestGlobalLimit(t *testing.T) {
	tr := newTracker(t, Config{Limit: 3}, 1, Limits{MaxSrcStates: 10})
	if err := tr.SetLimits(2, Limits{MaxSrcConn: 10}); err != nil {
		t.Fatal(err)
	}
	a, b := ip("198.18.0.1"), ip("198.18.0.2")
	for _, c := range []struct {
		tag  uint8
		src  netip.Addr
		want Refusal
	}{{1, a, None}, {2, a, None}, {1, b, None}, {2, b, SrcNodesLimit}, {1, a, None}} {
		if _, why := tr.Acquire(c.tag, c.src, 0); why != c.want {
			t.Fatalf("Acquire(%d, %v) = %v, want %v", c.tag, c.src, why, c.want)
		}
	}
	tr.Release(2, a, false, 0)
	if ok, why := tr.Acquire(2, b, 0); !ok {
		t.Fatalf("after release: %v", why)
	}
	if s := tr.Stats(); s.Nodes != 3 || s.Refused[SrcNodesLimit] != 1 {
		t.Errorf("Stats = %+v", s)
	}
}

// TestMaxSrcConn: the N+1st completed handshake exceeds; the connection
// stays counted until its state is released.
func TestMaxSrcConn(t *testing.T) {
	tr := newTracker(t, Config{}, 3, Limits{MaxSrcConn: 2, Overload: true})
	a, b := ip("198.18.0.1"), ip("198.18.0.2")
	for range 4 {
		tr.Acquire(3, a, 0)
	}
	tr.Acquire(3, b, 0)
	for i, want := range []Exceeded{0, 0, ExceededConn} {
		if got := tr.Established(3, a, at(float64(i))); got != want {
			t.Fatalf("Established #%d = %v, want %v", i+1, got, want)
		}
	}
	if got := tr.Established(3, b, 0); got != 0 {
		t.Fatalf("other source: %v", got)
	}
	// The caller kills the exceeding state.
	tr.Release(3, a, true, at(3))
	if got := tr.Established(3, a, at(4)); got != ExceededConn {
		t.Fatalf("third at once again: %v, want max-src-conn", got)
	}
	tr.Release(3, a, true, at(5))
	tr.Release(3, a, true, at(5)) // one of the two that passed closes
	if got := tr.Established(3, a, at(6)); got != 0 {
		t.Fatalf("after a close: %v, want room for one", got)
	}
	s := tr.Stats()
	if s.ConnLimit != 2 || s.Overloads != 2 || s.ConnRateLimit != 0 || s.Mismatches != 0 {
		t.Errorf("Stats = %+v", s)
	}
}

// TestConnRate: max-src-conn-rate 3/10s with pf's moving average.
func TestConnRate(t *testing.T) {
	tests := []struct {
		name string
		at   []float64 // times of Established
		want []Exceeded
	}{
		{"3 at once pass, the 4th exceeds", []float64{0, 0, 0, 0},
			[]Exceeded{0, 0, 0, ExceededRate}},
		{"3 within 2s pass, a 4th then exceeds", []float64{0, 1, 2, 2},
			[]Exceeded{0, 0, 0, ExceededRate}}, // 1000, 1900, 2710, 3710
		{"half a period halves the count", []float64{0, 0, 0, 0, 5, 5},
			[]Exceeded{0, 0, 0, ExceededRate, 0, ExceededRate}}, // 4000 -> 2000+1000, 4000
		{"a full quiet period resets", []float64{0, 0, 0, 0, 10, 10, 10, 10},
			[]Exceeded{0, 0, 0, ExceededRate, 0, 0, 0, ExceededRate}},
		{"lenient in between, as pf", []float64{0, 0, 0, 9},
			[]Exceeded{0, 0, 0, 0}}, // 3000*0.1 + 1000
		{"out of order times count as no time", []float64{5, 5, 5, 4},
			[]Exceeded{0, 0, 0, ExceededRate}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(t, Config{}, 1, Limits{ConnRate: 3, ConnRatePer: 10 * time.Second})
			a := ip("198.18.0.9")
			for i, sec := range tt.at {
				tr.Acquire(1, a, at(sec))
				if got := tr.Established(1, a, at(sec)); got != tt.want[i] {
					t.Fatalf("connection %d at %vs: %v, want %v", i+1, sec, got, tt.want[i])
				}
			}
		})
	}
}

// TestConnRateListing: Sources shows the decayed count, as pfctl -sS.
func TestConnRateListing(t *testing.T) {
	tr := newTracker(t, Config{}, 1, Limits{ConnRate: 3, ConnRatePer: 10 * time.Second, MaxSrcConn: 9})
	a := ip("198.18.0.9")
	for range 2 {
		tr.Acquire(1, a, 0)
		tr.Established(1, a, 0)
	}
	var got SourceInfo
	tr.Sources(at(5), func(si SourceInfo) bool { got = si; return false })
	want := SourceInfo{Tag: 1, Addr: a, States: 2, Conns: 2, Rate: 1, RatePer: 10 * time.Second}
	if got != want {
		t.Errorf("Sources = %+v, want %+v", got, want)
	}
}

// TestSources lists every node once, with its own address family.
func TestSources(t *testing.T) {
	tr := newTracker(t, Config{}, 1, Limits{SourceTrack: true})
	if err := tr.SetLimits(2, Limits{MaxSrcStates: 3}); err != nil {
		t.Fatal(err)
	}
	want := map[SourceInfo]bool{}
	for i, c := range []struct {
		tag uint8
		src string
		n   int
	}{{1, "198.18.0.1", 2}, {1, "::ffff:198.18.0.1", 1}, {2, "198.18.0.1", 1}, {2, "2001:db8::7", 3}} {
		for range c.n {
			tr.Acquire(c.tag, ip(c.src), at(float64(i)))
		}
		want[SourceInfo{Tag: c.tag, Addr: ip(c.src), States: c.n, Created: at(float64(i))}] = true
	}
	got := map[SourceInfo]bool{}
	tr.Sources(at(9), func(si SourceInfo) bool {
		if got[si] {
			t.Errorf("listed twice: %+v", si)
		}
		got[si] = true
		return true
	})
	if len(got) != len(want) {
		t.Errorf("listed %d sources, want %d", len(got), len(want))
	}
	for si := range want {
		if !got[si] {
			t.Errorf("not listed: %+v", si)
		}
	}
	n := 0
	tr.Sources(0, func(SourceInfo) bool { n++; return n < 2 })
	if n != 2 {
		t.Errorf("fn returned false at 2, called %d times", n)
	}
}

// TestForget: a removed rule's idle nodes go at once, the others with
// their last state, src.track or not.
func TestForget(t *testing.T) {
	tr := newTracker(t, Config{Timeout: time.Hour}, 4, Limits{MaxSrcStates: 5})
	a, b := ip("198.18.0.1"), ip("198.18.0.2")
	tr.Acquire(4, a, 0)
	tr.Acquire(4, b, 0)
	tr.Release(4, a, false, at(1)) // idle for an hour
	tr.Forget(4)
	if r := tr.Rule(4); !r.Forgotten || r.States != 1 || r.Nodes != 1 {
		t.Fatalf("after Forget: %+v, want b's node only", r)
	}
	tr.Release(4, b, false, at(2))
	if r := tr.Rule(4); r.States != 0 || r.Nodes != 0 {
		t.Fatalf("after the last state: %+v, want nothing left", r)
	}
	if s := tr.Stats(); s.Nodes != 0 || s.Mismatches != 0 {
		t.Errorf("Stats = %+v", s)
	}
	if err := tr.SetLimits(4, Limits{Max: 1}); err != nil {
		t.Fatal(err)
	}
	if tr.Rule(4).Forgotten {
		t.Error("SetLimits did not undo Forget")
	}
}

// TestSetLimitsKeepsCounts: a reload keeps the tag's states and nodes, and
// the new limits apply to them at once.
func TestSetLimitsKeepsCounts(t *testing.T) {
	tr := newTracker(t, Config{}, 1, Limits{Max: 10, MaxSrcStates: 10})
	a := ip("198.18.0.1")
	for range 3 {
		tr.Acquire(1, a, 0)
	}
	if err := tr.SetLimits(1, Limits{Max: 3, MaxSrcStates: 10}); err != nil {
		t.Fatal(err)
	}
	if _, why := tr.Acquire(1, a, 0); why != Max {
		t.Fatalf("after reload to max 3: %v, want max", why)
	}
	if r := tr.Rule(1); r.States != 3 || r.Nodes != 1 || r.Limits.Max != 3 {
		t.Errorf("Rule = %+v", r)
	}
	// A reload that drops source tracking still releases the nodes.
	if err := tr.SetLimits(1, Limits{Max: 3}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		tr.Release(1, a, false, 0)
	}
	if s := tr.Stats(); s.Nodes != 0 || s.Mismatches != 0 {
		t.Errorf("Stats = %+v, want no node left, no mismatch", s)
	}
}

func TestSetLimitsInvalid(t *testing.T) {
	tr := New(Config{})
	for _, l := range []Limits{
		{Max: -1}, {MaxSrcConn: -2}, {ConnRate: 5}, {ConnRatePer: time.Second},
		{ConnRate: 5, ConnRatePer: -time.Second}, {SrcTrack: -1},
	} {
		if err := tr.SetLimits(1, l); !errors.Is(err, ErrInvalidLimits) {
			t.Errorf("SetLimits(%+v) = %v, want ErrInvalidLimits", l, err)
		}
	}
}

// TestTagZero: tag 0 is no rule: nothing is limited or counted.
func TestTagZero(t *testing.T) {
	tr := New(Config{Limit: 1})
	if err := tr.SetLimits(0, Limits{Max: 1}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if ok, _ := tr.Acquire(0, ip("198.18.0.1"), 0); !ok {
			t.Fatal("tag 0 refused")
		}
	}
	tr.Established(0, ip("198.18.0.1"), 0)
	tr.Release(0, ip("198.18.0.1"), true, 0)
	if s := tr.Stats(); s != (Stats{}) {
		t.Errorf("Stats = %+v, want zero", s)
	}
}

// TestMismatches: releases the tracker has no count for are counted, and
// no count goes below zero.
func TestMismatches(t *testing.T) {
	tr := newTracker(t, Config{}, 1, Limits{Max: 2, MaxSrcStates: 2})
	a := ip("198.18.0.1")
	tr.Release(1, a, false, 0) // no Acquire: rule count and node
	tr.Acquire(1, a, 0)
	tr.Release(1, a, true, 0) // established without Established
	if s := tr.Stats(); s.Mismatches != 3 {
		t.Errorf("Mismatches = %d, want 3", s.Mismatches)
	}
	for range 2 {
		if ok, why := tr.Acquire(1, a, 0); !ok {
			t.Fatalf("counts went below zero and back: %v", why)
		}
	}
	if _, why := tr.Acquire(1, a, 0); why != Max {
		t.Errorf("third: %v, want max", why)
	}
}

// TestConcurrent: many goroutines acquire, establish and release states of
// a few sources under every limit at once. No limit is ever passed, and
// every count returns to zero with no node left.
func TestConcurrent(t *testing.T) {
	const (
		workers = 16
		rounds  = 3000
		max     = 24
		perSrc  = 5
		nodes   = 6
	)
	tr := newTracker(t, Config{Limit: 13, Timeout: time.Millisecond}, 1,
		Limits{Max: max, MaxSrcStates: perSrc, MaxSrcNodes: nodes, MaxSrcConn: 3, ConnRate: 100, ConnRatePer: time.Second})
	if err := tr.SetLimits(2, Limits{MaxSrcStates: perSrc}); err != nil {
		t.Fatal(err)
	}
	srcs := []netip.Addr{ip("198.18.0.1"), ip("198.18.0.2"), ip("2001:db8::1"), ip("::ffff:198.18.0.1"),
		ip("198.18.0.3"), ip("198.18.0.4"), ip("2001:db8::2"), ip("198.18.0.5")}
	var held atomic.Int64             // states of tag 1 held by the workers
	var perSrcHeld [2][8]atomic.Int64 // by tag-1 and source
	var clock atomic.Int64            // a shared clock that the workers advance
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			type st struct {
				tag uint8
				i   int
				est bool
			}
			var mine []st
			for range rounds {
				now := clock.Add(int64(time.Microsecond))
				if len(mine) > 0 && rng.IntN(2) == 0 {
					j := rng.IntN(len(mine))
					s := mine[j]
					mine[j] = mine[len(mine)-1]
					mine = mine[:len(mine)-1]
					if s.tag == 1 {
						held.Add(-1)
					}
					perSrcHeld[s.tag-1][s.i].Add(-1)
					tr.Release(s.tag, srcs[s.i], s.est, now)
					continue
				}
				tag := uint8(1 + rng.IntN(2))
				i := rng.IntN(len(srcs))
				if ok, _ := tr.Acquire(tag, srcs[i], now); !ok {
					continue
				}
				if tag == 1 {
					if h := held.Add(1); h > max {
						t.Errorf("%d states held, max %d", h, max)
					}
				}
				if h := perSrcHeld[tag-1][i].Add(1); h > perSrc {
					t.Errorf("%d states of tag %d from %v, max-src-states %d", h, tag, srcs[i], perSrc)
				}
				s := st{tag: tag, i: i}
				if rng.IntN(2) == 0 {
					tr.Established(tag, srcs[i], now)
					s.est = true
				}
				mine = append(mine, s)
			}
			now := clock.Load()
			for _, s := range mine {
				if s.tag == 1 {
					held.Add(-1)
				}
				perSrcHeld[s.tag-1][s.i].Add(-1)
				tr.Release(s.tag, srcs[s.i], s.est, now)
			}
		}()
	}
	wg.Wait()
	tr.Expire(clock.Load() + int64(time.Second))
	for tag := uint8(1); tag <= 2; tag++ {
		if r := tr.Rule(tag); r.States != 0 || r.Nodes != 0 {
			t.Errorf("rule %d: %+v, want nothing left", tag, r)
		}
	}
	s := tr.Stats()
	if s.Nodes != 0 || s.Mismatches != 0 || s.Inserted != s.Expired {
		t.Errorf("Stats = %+v: nodes leaked or miscounted", s)
	}
	for i := range tr.shards {
		if n := len(tr.shards[i].nodes); n != 0 {
			t.Errorf("shard %d keeps %d nodes", i, n)
		}
	}
	t.Logf("%+v", s)
}

// TestNoAllocs: the per-state calls allocate nothing in steady state, a
// new source included once its shard's map has its size.
func TestNoAllocs(t *testing.T) {
	tr := newTracker(t, Config{Timeout: time.Second}, 1,
		Limits{Max: 100, MaxSrcStates: 10, MaxSrcNodes: 100, MaxSrcConn: 5, ConnRate: 10, ConnRatePer: time.Second})
	a6 := ip("2001:db8::1")
	var now int64
	tests := []struct {
		name string
		fn   func()
	}{
		{"Acquire+Release", func() {
			now++
			tr.Acquire(1, a6, now)
			tr.Release(1, a6, false, now)
		}},
		{"Acquire+Established+Release", func() {
			now++
			tr.Acquire(1, a6, now)
			tr.Established(1, a6, now)
			tr.Release(1, a6, true, now)
		}},
		{"refused", func() {
			for range 11 {
				tr.Acquire(1, a6, now)
			}
			for range 10 {
				tr.Release(1, a6, false, now)
			}
		}},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(1000, tt.fn); n != 0 {
			t.Errorf("%s: %v allocations, want 0", tt.name, n)
		}
	}

	// New sources that come and go (src.track 0): the map reuses the
	// slots of the ones that went.
	tr0 := newTracker(t, Config{}, 1, Limits{MaxSrcStates: 1})
	i := uint32(0)
	newSource := func() {
		i++
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		tr0.Acquire(1, a, 0)
		tr0.Release(1, a, false, 0)
	}
	if n := testing.AllocsPerRun(10000, newSource); n != 0 {
		t.Errorf("new source: %v allocations, want 0", n)
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	lim := Limits{Max: 1000, MaxSrcStates: 100, MaxSrcNodes: 1000}
	b.Run("same-source", func(b *testing.B) {
		tr := newTracker(b, Config{}, 1, lim)
		a := ip("198.18.0.1")
		b.ReportAllocs()
		for i := range b.N {
			tr.Acquire(1, a, int64(i))
			tr.Release(1, a, false, int64(i))
		}
	})
	b.Run("node-kept", func(b *testing.B) {
		// The source keeps one state, so its node stays: the common case
		// of a busy client.
		tr := newTracker(b, Config{}, 1, lim)
		a := ip("198.18.0.1")
		tr.Acquire(1, a, 0)
		b.ReportAllocs()
		for i := range b.N {
			tr.Acquire(1, a, int64(i))
			tr.Release(1, a, false, int64(i))
		}
	})
	b.Run("max-only", func(b *testing.B) {
		tr := newTracker(b, Config{}, 1, Limits{Max: 1000})
		a := ip("198.18.0.1")
		b.ReportAllocs()
		for i := range b.N {
			tr.Acquire(1, a, int64(i))
			tr.Release(1, a, false, int64(i))
		}
	})
	b.Run("new-source", func(b *testing.B) {
		tr := newTracker(b, Config{}, 1, lim)
		b.ReportAllocs()
		for i := range b.N {
			a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			tr.Acquire(1, a, int64(i))
			tr.Release(1, a, false, int64(i))
		}
	})
	b.Run("parallel", func(b *testing.B) {
		tr := newTracker(b, Config{}, 1, Limits{MaxSrcStates: 100})
		var seq atomic.Uint32
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			n := seq.Add(1)
			a := netip.AddrFrom4([4]byte{10, 0, byte(n >> 8), byte(n)})
			var now int64
			for pb.Next() {
				now++
				tr.Acquire(1, a, now)
				tr.Release(1, a, false, now)
			}
		})
	})
}
