package engine_test

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/rules"
)

// countRules: four rules a ping, a DNS query and a web request tell apart.
const countRules = `set default block
pass proto icmp no state label "ping"
pass proto udp to any port 53 no state label "dns"
pass proto tcp to any port 80 label "web"
block proto tcp label "tcp"
`

// want is a rule's counters with the evaluations left out when -1.
type want struct{ evals, packets, bytes, states int }

func checkCounts(t *testing.T, s engine.Snapshot, w []want) {
	t.Helper()
	if len(s.Counts) != len(w) {
		t.Fatalf("%d rules counted, want %d", len(s.Counts), len(w))
	}
	for i, c := range s.Counts {
		g := want{int(c.Evaluations), int(c.Packets), int(c.Bytes), int(c.States)}
		if w[i].evals < 0 {
			g.evals = -1
		}
		if g != w[i] {
			t.Errorf("rule %d (%s): got %+v, want %+v", i+1, s.Rules.Rules[i].String(), g, w[i])
		}
	}
}

// TestCountersStateless: each packet counts for the rule that decided it;
// a rule's evaluations are the packets no earlier rule decided; the
// default's packets count for no rule.
func TestCountersStateless(t *testing.T) {
	rs := ruleset(t, countRules)
	e := engine.NewStateless(rs)
	c := engine.NewCounters(rs, 1)
	for _, line := range []string{
		"icmp 198.18.0.1 > 198.18.0.2 type=8 id=1 seq=1",
		"icmp 198.18.0.1 > 198.18.0.2 type=8 id=1 seq=2",
		"udp 198.18.0.1:5353 > 198.18.0.2:53 len=30",
		"tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1",
		"tcp 198.18.0.1:40000 > 198.18.0.2:22 S seq=1",
		"udp 198.18.0.1:5353 > 198.18.0.2:54 len=30", // default
	} {
		p := pkt(t, line)
		var d engine.Decision
		e.DecideInto(&d, p, rules.DirIn)
		c.Count(0, &d, rules.DirIn, int(p.IPLen))
	}
	// Packet sizes: ICMP echo 28, UDP 20+8+30, TCP SYN 40.
	checkCounts(t, c.Snapshot(), []want{
		{6, 2, 56, 0},
		{4, 1, 58, 0},
		{3, 1, 40, 0}, // stateless: no states
		{2, 1, 40, 0},
	})
}

// TestCountersStates: the stateful engine's entries count for the rule
// that passed the new connection; established packets count for no rule.
func TestCountersStates(t *testing.T) {
	rs := ruleset(t, countRules)
	e := engine.NewStateful(rs, conntrack.New(conntrack.Config{}))
	c := engine.NewCounters(rs, 1)
	for _, line := range []string{
		"tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000",
		"tcp 198.18.0.2:80 > 198.18.0.1:40000 SA seq=5000 ack=1001", // established
		"tcp 198.18.0.1:40000 > 198.18.0.2:80 A seq=1001 ack=5001",  // established
		"tcp 198.18.0.1:40001 > 198.18.0.2:80 S seq=1000",
		"icmp 198.18.0.1 > 198.18.0.2 type=8 id=1 seq=1", // no state
		"icmp 198.18.0.1 > 198.18.0.2 type=8 id=1 seq=2", // no state: new again
	} {
		p := pkt(t, line)
		var d engine.Decision
		e.DecideInto(&d, p, rules.DirIn, 1)
		c.Count(0, &d, rules.DirIn, int(p.IPLen))
	}
	checkCounts(t, c.Snapshot(), []want{
		{4, 2, 56, 0},
		{2, 0, 0, 0},
		{2, 2, 80, 2},
		{0, 0, 0, 0},
	})
}

// TestCountersForwarded: a forwarded packet evaluated inbound and
// outbound counts for both rules; with no directional rule, once.
func TestCountersForwarded(t *testing.T) {
	rs := ruleset(t, `pass in proto udp no state label "in"
pass out proto udp label "out"
pass proto icmp label "both"
block out proto tcp label "tcp-out"
pass in proto tcp label "tcp-in"
`)
	e := engine.NewStateful(rs, conntrack.New(conntrack.Config{}))
	c := engine.NewCounters(rs, 1)
	fwd := rules.Where{Dir: rules.DirForward}
	for _, line := range []string{
		"udp 198.18.1.2:5000 > 198.18.2.2:53 len=30", // in, then out; no state (the in rule says so)
		"icmp 198.18.1.2 > 198.18.2.2 type=8 id=1 seq=1",
		"tcp 198.18.1.2:40000 > 198.18.2.2:80 S seq=1", // passed in, blocked out
	} {
		p := pkt(t, line)
		var d engine.Decision
		e.DecideAt(&d, p, fwd, 1)
		c.Count(0, &d, rules.DirForward, int(p.IPLen))
	}
	// 6 evaluations: 2 per packet. The ICMP packet stops at rule 3 twice.
	checkCounts(t, c.Snapshot(), []want{
		{6, 1, 58, 0},
		{5, 1, 58, 0},
		{4, 2, 56, 1},
		{2, 1, 40, 0},
		{1, 1, 40, 0},
	})

	flat := ruleset(t, "pass proto icmp label \"all\"\n")
	e.SetRules(flat)
	c.SetRules(flat)
	p := pkt(t, "icmp 198.18.1.2 > 198.18.2.2 type=8 id=2 seq=1")
	var d engine.Decision
	e.DecideAt(&d, p, fwd, 1)
	c.Count(0, &d, rules.DirForward, int(p.IPLen))
	checkCounts(t, c.Snapshot(), []want{{1, 1, 28, 1}})
}

// TestCountersNoAllocs: counting a decision allocates nothing.
func TestCountersNoAllocs(t *testing.T) {
	rs := ruleset(t, countRules)
	e := engine.NewStateless(rs)
	c := engine.NewCounters(rs, 4)
	p := pkt(t, "udp 198.18.0.1:5353 > 198.18.0.2:53 len=30")
	var d engine.Decision
	e.DecideInto(&d, p, rules.DirIn)
	if n := testing.AllocsPerRun(1000, func() { c.Count(2, &d, rules.DirIn, 50) }); n != 0 {
		t.Errorf("Count: %v allocations, want 0", n)
	}
}

// TestCountersWorkers: workers count concurrently into their own lanes;
// a read sums them (run with -race).
func TestCountersWorkers(t *testing.T) {
	rs := ruleset(t, countRules)
	e := engine.NewStateless(rs)
	const workers, per = 4, 5000
	c := engine.NewCounters(rs, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			p := pkt(t, "udp 198.18.0.1:5353 > 198.18.0.2:53 len=30")
			var d engine.Decision
			for range per {
				e.DecideInto(&d, p, rules.DirIn)
				c.Count(w, &d, rules.DirIn, 50)
			}
		})
	}
	// A reader meanwhile.
	for range 10 {
		c.Snapshot()
		c.ByLabel()
	}
	wg.Wait()
	checkCounts(t, c.Snapshot(), []want{
		{workers * per, 0, 0, 0},
		{workers * per, workers * per, workers * per * 50, 0},
		{0, 0, 0, 0},
		{0, 0, 0, 0},
	})
}

// TestCountersReload: a reload keeps the counts of the rules that did not
// change (wherever they moved, by their text and place among equal
// rules) and starts changed and new ones at 0; a decision made with the
// old ruleset and counted after the swap still counts; the label totals
// never go back.
func TestCountersReload(t *testing.T) {
	old := ruleset(t, countRules)
	e := engine.NewStateless(old)
	c := engine.NewCounters(old, 2)
	count := func(w int, line string) engine.Decision {
		p := pkt(t, line)
		var d engine.Decision
		e.DecideInto(&d, p, rules.DirIn)
		c.Count(w, &d, rules.DirIn, int(p.IPLen))
		return d
	}
	ping := "icmp 198.18.0.1 > 198.18.0.2 type=8 id=1 seq=1"
	dns := "udp 198.18.0.1:5353 > 198.18.0.2:53 len=30"
	web := "tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1"
	count(0, ping)
	count(1, ping)
	count(0, dns)
	count(1, web)
	inFlight := engine.Decision{}
	e.DecideInto(&inFlight, pkt(t, ping), rules.DirIn)

	// The web rule changes, a rule comes in first, the dns rule moves.
	nu := ruleset(t, `set default block
pass proto tcp to any port 443 label "tls"
pass proto icmp no state label "ping"
pass proto tcp to any port 80 keep state label "web"
block proto tcp label "tcp"
pass proto udp to any port 53 no state label "dns"
`)
	c.SetRules(nu)
	e.SetRules(nu)
	c.Count(0, &inFlight, rules.DirIn, 28) // decided by the old ruleset
	count(0, ping)
	s := c.Snapshot()
	if s.Rules != nu {
		t.Fatal("the snapshot is not of the new ruleset")
	}
	// "web" said keep state, which is the default: its canonical text is
	// the same, so it keeps its count.
	checkCounts(t, s, []want{
		{-1, 0, 0, 0},
		{-1, 4, 112, 0},
		{-1, 1, 40, 0},
		{-1, 0, 0, 0},
		{-1, 1, 58, 0},
	})
	changed := ruleset(t, `set default block
pass proto tcp to any port 443 label "tls"
pass proto icmp no state label "ping"
pass proto tcp to any port 8080 label "web"
block proto tcp label "tcp"
`)
	c.SetRules(changed)
	e.SetRules(changed)
	checkCounts(t, c.Snapshot(), []want{
		{-1, 0, 0, 0},
		{-1, 4, 112, 0},
		{-1, 0, 0, 0},
		{-1, 0, 0, 0},
	})
	byLabel := c.ByLabel()
	if got := byLabel["web"].Packets; got != 1 {
		t.Errorf("label web: %d packets after its rule changed, want the 1 it had", got)
	}
	if got := byLabel["dns"].Packets; got != 1 {
		t.Errorf("label dns: %d packets after its rule went, want the 1 it had", got)
	}
	// A decision two rulesets old when counted is lost, and says so.
	c.SetRules(old)
	c.Count(0, &inFlight, rules.DirIn, 28)
	if s := c.Snapshot(); s.Lost != 0 {
		t.Errorf("%d lost; the old ruleset is the current one again", s.Lost)
	}
	c.SetRules(changed)
	c.SetRules(nu)
	var d engine.Decision
	engine.NewStateless(changed).DecideInto(&d, pkt(t, ping), rules.DirIn)
	c.SetRules(old)
	c.Count(0, &d, rules.DirIn, 28)
	if s := c.Snapshot(); s.Lost != 1 {
		t.Errorf("%d lost, want 1", s.Lost)
	}
}

// TestCountersRebind: binding the rules to the interfaces again (an
// address change) keeps every count, antispoof rules' included.
func TestCountersRebind(t *testing.T) {
	raw := ruleset(t, `antispoof for eth0 label "spoof"
pass proto icmp label "ping"
`)
	ifs := func(a string) []rules.Iface {
		return []rules.Iface{{Index: 2, Name: "eth0", Addrs: []netip.Prefix{netip.MustParsePrefix(a)}}}
	}
	rs := raw.Bind(ifs("198.18.1.1/24"))
	e := engine.NewStateless(rs)
	c := engine.NewCounters(rs, 1)
	for _, line := range []string{
		"icmp 198.18.1.7 > 198.18.1.1 type=8 id=1 seq=1", // spoofed: from eth0's net, not on eth0
		"icmp 198.18.2.7 > 198.18.1.1 type=8 id=1 seq=1",
	} {
		p := pkt(t, line)
		var d engine.Decision
		e.DecideAt(&d, p, rules.Where{Dir: rules.DirIn, In: 3})
		c.Count(0, &d, rules.DirIn, int(p.IPLen))
	}
	before := c.Snapshot().Counts
	var spoofed uint64
	for _, n := range before {
		spoofed += n.Packets
	}
	if spoofed != 2 {
		t.Fatalf("counted %d packets, want 2: %+v", spoofed, before)
	}
	rs2 := raw.Bind(ifs("198.18.5.1/24"))
	c.SetRules(rs2)
	e.SetRules(rs2)
	after := c.Snapshot()
	if after.Rules != rs2 {
		t.Error("the snapshot is not of the rebound ruleset")
	}
	for i := range before {
		if before[i] != after.Counts[i] {
			t.Errorf("rule %d: %+v before the new addresses, %+v after", i+1, before[i], after.Counts[i])
		}
	}
}

// BenchmarkCount is the per-packet cost of counting a decision: a
// forwarded packet passed by two rules (the most work Count does) and a
// packet of a known connection (the least).
func BenchmarkCount(b *testing.B) {
	rs := ruleset(b, `pass in proto udp label "in"
pass out proto udp label "out"
`)
	e := engine.NewStateful(rs, conntrack.New(conntrack.Config{}))
	c := engine.NewCounters(rs, 4)
	p := pkt(b, "udp 198.18.1.2:5000 > 198.18.2.2:53 len=30")
	var fwd engine.Decision
	e.DecideAt(&fwd, p, rules.Where{Dir: rules.DirForward}, 1)
	if fwd.Rule == nil || fwd.Other == nil {
		b.Fatalf("decision %+v, want two rules", fwd)
	}
	b.Run("forward-two-rules", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Count(1, &fwd, rules.DirForward, 50)
		}
	})
	var one engine.Decision
	engine.NewStateless(rs).DecideInto(&one, p, rules.DirIn)
	b.Run("one-rule", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Count(1, &one, rules.DirIn, 50)
		}
	})
	est := engine.Decision{Verdict: engine.Pass, Cause: engine.CauseState}
	b.Run("established", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Count(1, &est, rules.DirIn, 50)
		}
	})
	// All workers at once: no lane shares a cache line with another's.
	b.Run("parallel-one-rule", func(b *testing.B) {
		b.ReportAllocs()
		var next int
		var mu sync.Mutex
		b.RunParallel(func(pb *testing.PB) {
			mu.Lock()
			w := next % 4
			next++
			mu.Unlock()
			for pb.Next() {
				c.Count(w, &one, rules.DirIn, 50)
			}
		})
	})
}
