package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/statewall/statewall/internal/pkttest"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/nfq"
	"github.com/statewall/statewall/pkg/rules"
)

// counterRules: a labelled rule for pings, one for DNS, two without a
// label (which add up under label="").
const counterRules = `set default block
pass proto icmp icmp-type echo-request no state label "ping"
pass proto udp to any port 53 no state label "dns"
pass proto tcp to any port 22
pass proto tcp to any port 80
`

// counterDaemon is a daemon that is not running, with two queues, over
// the rules text.
func counterDaemon(t *testing.T, text string) (*Daemon, string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "counters.rules")
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{RulesFile: f, Clock: &manualClock{}, Queues: [2]uint16{0, 1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d, f
}

// feed hands n copies of the packet line to the packet path on queue q
// (input hook).
func feed(t *testing.T, d *Daemon, q uint16, n int, line string) {
	t.Helper()
	b := pkttest.MustBytes(t, line)
	for range n {
		d.handle(&nfq.Packet{Queue: q, Hook: nfq.HookInput, Payload: b, Length: uint32(len(b))})
	}
}

func ruleStat(t *testing.T, rc *RuleCounters, n int) RuleStat {
	t.Helper()
	if n > len(rc.Rules) {
		t.Fatalf("no rule %d in %+v", n, rc.Rules)
	}
	return rc.Rules[n-1]
}

// TestRuleCountersPacketPath: the packet path counts every packet for
// the rule that decided it, from both queues at once (run with -race),
// the stateful engine's entries as states; `statewall rules` gets the
// rules in canonical form with their counters, and the metrics by label.
func TestRuleCountersPacketPath(t *testing.T) {
	d, _ := counterDaemon(t, counterRules)
	ping := "icmp 198.18.0.1 > 198.18.0.2 type=8 id=1 seq=1" // 28 bytes
	dns := "udp 198.18.0.1:5353 > 198.18.0.2:53 len=30"      // 58 bytes
	var wg sync.WaitGroup
	for q := range uint16(2) {
		wg.Go(func() {
			feed(t, d, q, 100, ping)
			feed(t, d, q, 50, dns)
		})
	}
	for range 5 {
		d.RuleCounters()
		scrapeOnce(t, d.m.handler())
	}
	wg.Wait()
	feed(t, d, 0, 1, "tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1")
	feed(t, d, 0, 1, "tcp 198.18.0.2:80 > 198.18.0.1:40000 SA seq=9 ack=2") // established: no rule
	feed(t, d, 1, 3, "udp 198.18.0.1:5353 > 198.18.0.2:54 len=30")          // default

	rc := d.RuleCounters()
	for _, w := range []RuleStat{
		{Number: 1, Line: 2, Rule: `pass proto icmp icmp-type echo-request no state label "ping"`, Label: "ping"},
		{Number: 2, Line: 3, Rule: `pass proto udp to any port 53 no state label "dns"`, Label: "dns"},
		{Number: 3, Line: 4, Rule: `pass proto tcp to any port 22`},
		{Number: 4, Line: 5, Rule: `pass proto tcp to any port 80`},
	} {
		g := ruleStat(t, rc, w.Number)
		g.RuleCount = w.RuleCount
		if g != w {
			t.Errorf("rule %d: got %+v, want %+v", w.Number, g, w)
		}
	}
	// Evaluations: 200 + 100 + 1 + 3 consultations.
	for i, w := range [][4]uint64{{304, 200, 5600, 0}, {104, 100, 5800, 0}, {4, 0, 0, 0}, {4, 1, 40, 1}} {
		c := ruleStat(t, rc, i+1).RuleCount
		if g := [4]uint64{c.Evaluations, c.Packets, c.Bytes, c.States}; g != w {
			t.Errorf("rule %d: evaluations, packets, bytes, states %v, want %v", i+1, g, w)
		}
	}
	m := scrapeOnce(t, d.m.handler())
	for _, w := range []string{
		`statewall_rule_packets_total{label="ping"} 200`,
		`statewall_rule_bytes_total{label="ping"} 5600`,
		`statewall_rule_packets_total{label="dns"} 100`,
		`statewall_rule_packets_total{label=""} 1`,
		`statewall_rule_states_total{label=""} 1`,
	} {
		if !strings.Contains(m, w+"\n") {
			t.Errorf("metrics lack %s", w)
		}
	}
}

// TestRuleCountersReload: a reload keeps the counts of the rules it did
// not change and starts the changed one at 0; the label's metric keeps
// what the old rule counted.
func TestRuleCountersReload(t *testing.T) {
	d, f := counterDaemon(t, counterRules)
	feed(t, d, 0, 7, "icmp 198.18.0.1 > 198.18.0.2 type=8 id=1 seq=1")
	feed(t, d, 1, 5, "udp 198.18.0.1:5353 > 198.18.0.2:53 len=30")
	text := strings.Replace(counterRules, "port 53 no state", "port { 53, 853 } no state", 1)
	text = "pass proto tcp to any port 443 label \"tls\"\n" + text
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	feed(t, d, 1, 2, "udp 198.18.0.1:5353 > 198.18.0.2:53 len=30")
	rc := d.RuleCounters()
	for i, w := range []struct {
		label   string
		packets uint64
	}{{"tls", 0}, {"ping", 7}, {"dns", 2}} {
		if g := ruleStat(t, rc, i+1); g.Label != w.label || g.Packets != w.packets {
			t.Errorf("rule %d after the reload: %q with %d packets, want %q with %d", i+1, g.Label, g.Packets, w.label, w.packets)
		}
	}
	if m := scrapeOnce(t, d.m.handler()); !strings.Contains(m, `statewall_rule_packets_total{label="dns"} 7`+"\n") {
		t.Errorf("the dns label's packets went back at the reload:\n%s", m)
	}
}

// TestRuleCountersNoAllocs: counting on the packet path allocates
// nothing, and neither does the whole packet path for a packet a rule
// decides.
func TestRuleCountersNoAllocs(t *testing.T) {
	d, _ := counterDaemon(t, counterRules)
	b := pkttest.MustBytes(t, "udp 198.18.0.1:5353 > 198.18.0.2:53 len=30")
	p := &nfq.Packet{Queue: 1, Hook: nfq.HookInput, Payload: b, Length: uint32(len(b))}
	d.handle(p)
	if n := testing.AllocsPerRun(1000, func() { d.handle(p) }); n != 0 {
		t.Errorf("handle: %v allocations, want 0", n)
	}
	var dec engine.Decision
	d.stateful.DecideAt(&dec, &d.workers[1].pkt, where(p), 0)
	if n := testing.AllocsPerRun(1000, func() { d.countDecision(1, &dec, rules.DirIn, len(b)) }); n != 0 {
		t.Errorf("countDecision: %v allocations, want 0", n)
	}
}
