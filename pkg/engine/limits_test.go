package engine_test

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/rules"
)

// addTable is a run-time table the test can see into (pkg/table's role).
type addTable struct {
	mu sync.Mutex
	m  map[netip.Addr]bool
}

func (t *addTable) Contains(a netip.Addr) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[a]
}

func (t *addTable) Add(ps []netip.Prefix) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range ps {
		t.m[p.Addr()] = true
	}
	return len(ps), nil
}

func limitedEngine(t *testing.T, src string) (*engine.Stateful, map[string]*addTable) {
	t.Helper()
	tables := map[string]*addTable{}
	rs, err := rules.ParseWith("test.rules", []byte(src), rules.ParseOptions{Tables: func(d *rules.TableDef) (rules.Lookup, error) {
		at := &addTable{m: map[netip.Addr]bool{}}
		tables[d.Name] = at
		return at, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return engine.NewStatefulTable(rs, conntrack.Config{Timeouts: rs.Timeouts, Limit: rs.LimitStates, Seed: 1}), tables
}

// handshake opens a TCP connection from client port sport; it returns
// the decision of each of its three packets.
func openTCP(t *testing.T, st *engine.Stateful, client string, sport int, now int64) [3]engine.Decision {
	t.Helper()
	c := client + ":" + itoa(sport)
	var ds [3]engine.Decision
	ds[0] = st.Decide(pkt(t, "tcp "+c+" > 198.18.2.2:22 S seq=100"), rules.DirIn, now)
	ds[1] = st.Decide(pkt(t, "tcp 198.18.2.2:22 > "+c+" SA seq=500 ack=101"), rules.DirOut, now)
	ds[2] = st.Decide(pkt(t, "tcp "+c+" > 198.18.2.2:22 A seq=101 ack=501"), rules.DirIn, now)
	return ds
}

func TestMaxSrcStates(t *testing.T) {
	st, _ := limitedEngine(t, "pass in proto tcp to port 22 keep state (max-src-states 2, max 3)\npass out\n")
	for i, tt := range []struct {
		src  string
		want string
	}{
		{"198.18.1.2", "pass rule 1 (line 1)"},
		{"198.18.1.2", "pass rule 1 (line 1)"},
		{"198.18.1.2", "block rule 1 (line 1): max-src-states reached"},
		{"198.18.1.3", "pass rule 1 (line 1)"},
		{"198.18.1.4", "block rule 1 (line 1): max reached"},
	} {
		d := st.Decide(pkt(t, "tcp "+tt.src+":"+itoa(1000+i)+" > 198.18.2.2:22 S seq=1"), rules.DirIn, 1)
		if got := verdict(d); got != tt.want {
			t.Errorf("SYN %d from %s: %s, want %s", i, tt.src, got, tt.want)
		}
	}
	// A state that goes makes room again.
	st.CT.Delete(2, func(e *conntrack.EntryInfo) bool { return e.Original.SrcPort() == 1000 })
	if d := st.Decide(pkt(t, "tcp 198.18.1.2:2000 > 198.18.2.2:22 S seq=1"), rules.DirIn, 3); d.Verdict != engine.Pass {
		t.Errorf("after one of its states went: %s", verdict(d))
	}
	if d := st.Decide(pkt(t, "udp 198.18.1.2:2000 > 198.18.2.2:53"), rules.DirIn, 3); d.Cause != engine.CauseDefault {
		t.Errorf("other traffic: %s", verdict(d))
	}
}

// TestMaxSrcConnOverload: the connection that completes a handshake
// beyond max-src-conn is killed, its source goes into the overload table
// and its other states are flushed; another source is untouched.
func TestMaxSrcConnOverload(t *testing.T) {
	st, tables := limitedEngine(t, "table <bf> persist\nblock in from <bf>\npass in proto tcp to port 22 keep state (max-src-conn 2, overload <bf> flush)\npass out\n")
	openTCP(t, st, "198.18.1.9", 5000, 1) // another source
	for i := 0; i < 2; i++ {
		if ds := openTCP(t, st, "198.18.1.2", 1000+i, 1); ds[2].Verdict != engine.Pass {
			t.Fatalf("connection %d: %s", i, verdict(ds[2]))
		}
	}
	ds := openTCP(t, st, "198.18.1.2", 1002, 2)
	if got := verdict(ds[2]); got != "block overload: max-src-conn exceeded" {
		t.Errorf("third handshake: %s", got)
	}
	if !tables["bf"].Contains(netip.MustParseAddr("198.18.1.2")) {
		t.Error("the source is not in <bf>")
	}
	n := 0
	st.CT.Walk(3, func(e conntrack.EntryInfo) bool {
		if e.Original.Src() == netip.MustParseAddr("198.18.1.2") {
			n++
		}
		return true
	})
	if n != 0 {
		t.Errorf("%d states of the overloaded source left after flush", n)
	}
	if d := st.Decide(pkt(t, "tcp 198.18.1.9:5000 > 198.18.2.2:22 A seq=101 ack=501"), rules.DirIn, 3); d.Verdict != engine.Pass || d.Cause != engine.CauseState {
		t.Errorf("the other source's connection: %s", verdict(d))
	}
	if d := st.Decide(pkt(t, "tcp 198.18.1.2:1003 > 198.18.2.2:22 S seq=1"), rules.DirIn, 3); verdict(d) != "block rule 1 (line 2)" {
		t.Errorf("the overloaded source's next SYN: %s", verdict(d))
	}
}

func TestMaxSrcConnRate(t *testing.T) {
	st, _ := limitedEngine(t, "pass in proto tcp to port 22 keep state (max-src-conn-rate 3/10)\npass out\n")
	sec := int64(time.Second)
	for i := 0; i < 3; i++ {
		if ds := openTCP(t, st, "198.18.1.2", 1000+i, sec); ds[2].Verdict != engine.Pass {
			t.Fatalf("connection %d: %s", i, verdict(ds[2]))
		}
	}
	if ds := openTCP(t, st, "198.18.1.2", 1003, sec); verdict(ds[2]) != "block overload: max-src-conn-rate exceeded" {
		t.Errorf("fourth within 10 s: %s", verdict(ds[2]))
	}
	if ds := openTCP(t, st, "198.18.1.2", 1004, 30*sec); ds[2].Verdict != engine.Pass {
		t.Errorf("after the rate decayed: %s", verdict(ds[2]))
	}
}

// TestLimitsStatelessSaysSo: where a tracking option decided, the
// comparison says that stateless mode has no states to count.
func TestLimitsStatelessSaysSo(t *testing.T) {
	st, _ := limitedEngine(t, "pass in proto udp keep state (max 1)\n")
	sl := engine.NewStateless(st.Rules())
	st.Decide(pkt(t, "udp 198.18.1.2:1 > 198.18.2.2:53"), rules.DirIn, 1)
	p := pkt(t, "udp 198.18.1.3:1 > 198.18.2.2:53")
	sf := st.Decide(p, rules.DirIn, 1)
	s := sl.Decide(p, rules.DirIn)
	if got := engine.Explain(s, sf); got != "stateful tracking option (max): stateless mode has no states to count; stateless rule 1 (line 1)" {
		t.Errorf("Explain: %q", got)
	}
}

// TestPickupAfterRestart: while SetPickup's time runs, a pass rule with
// the default flags S/SA picks a mid-stream connection up (liberally, as
// the kernel's loose tracking) and counts it; afterwards it wants a SYN.
func TestPickupAfterRestart(t *testing.T) {
	rs := ruleset(t, "pass out proto tcp\npass in proto tcp to port 22\n")
	st := engine.NewStatefulTable(rs, conntrack.Config{Seed: 1})
	mid := "tcp 198.18.1.2:40000 > 198.18.2.2:22 A seq=1000 ack=2000"
	if d := st.Decide(pkt(t, mid), rules.DirIn, 1); d.Verdict != engine.Block {
		t.Errorf("without pickup: %s", verdict(d))
	}
	st.SetPickup(100)
	if d := st.Decide(pkt(t, mid), rules.DirIn, 2); d.Verdict != engine.Pass || st.Pickups() != 1 {
		t.Errorf("during pickup: %s, %d pickups", verdict(d), st.Pickups())
	}
	if d := st.Decide(pkt(t, "tcp 198.18.2.2:22 > 198.18.1.2:40000 A seq=2000 ack=1000"), rules.DirOut, 3); d.Cause != engine.CauseState {
		t.Errorf("the picked-up connection's reply: %s", verdict(d))
	}
	if d := st.Decide(pkt(t, "tcp 198.18.1.2:40001 > 198.18.2.2:22 A seq=1 ack=1"), rules.DirIn, 200); d.Verdict != engine.Block {
		t.Errorf("after the pickup time: %s", verdict(d))
	}
}
