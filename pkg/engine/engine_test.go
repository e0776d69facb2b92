package engine_test

import (
	"strings"
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/rules"
)

// step is one packet of a conversation and what each engine must say.
// A wanted verdict is "pass REASON" or "block REASON", where "{TEXT}" in
// the reason stands for the rule written on the line that starts with TEXT.
// ct is the stateful engine's conntrack label.
type step struct {
	pkt                 string
	stateless, stateful string
	ct                  string
	// reload, when set, replaces the ruleset of both engines by this one
	// (and the step has no packet).
	reload string
	// entries, when >= 0, is the number of conntrack entries after the
	// packet; -1 (or absent via the table's default) leaves it unchecked.
	entries int
}

// s is a step without an entry count check.
func s(p, stateless, stateful, ct string) step {
	return step{pkt: p, stateless: stateless, stateful: stateful, ct: ct, entries: -1}
}

func TestDecide(t *testing.T) {
	const (
		cli   = "198.18.0.1"
		srv   = "198.18.0.2" // webserver.rules: set local 198.18.0.2
		est   = "pass conntrack: established"
		httpR = "{pass in  proto tcp to 198.18.0.2 port}" // webserver.rules' service rule
	)
	for _, tc := range []struct {
		name  string
		rules string // rule text, or @file in rules/
		steps []step
	}{{
		name:  "webserver: replies pass stateful, block stateless",
		rules: "@webserver.rules",
		steps: []step{
			// A client fetches a page: the rule passes its packets in
			// both modes; the server's answers match no rule (stateless
			// blocks them) but are the connection's replies (stateful
			// passes them).
			s("tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000", "pass "+httpR, "pass "+httpR, "new"),
			s("tcp 198.18.0.2:80 > 198.18.0.1:40000 SA seq=5000 ack=1001", "block default", est, "established"),
			s("tcp 198.18.0.1:40000 > 198.18.0.2:80 A seq=1001 ack=5001", "pass "+httpR, est, "established"),
			s("tcp 198.18.0.1:40000 > 198.18.0.2:80 PA seq=1001 ack=5001 len=20", "pass "+httpR, est, "established"),
			s("tcp 198.18.0.2:80 > 198.18.0.1:40000 PA seq=5001 ack=1021 len=100", "block default", est, "established"),
			s("tcp 198.18.0.2:80 > 198.18.0.1:40000 FA seq=5101 ack=1021", "block default", est, "established"),
			s("tcp 198.18.0.1:40000 > 198.18.0.2:80 FA seq=1021 ack=5102", "pass "+httpR, est, "established"),
			s("tcp 198.18.0.2:80 > 198.18.0.1:40000 A seq=5102 ack=1022", "block default", est, "established"),
			// The host's own DNS and HTTPS calls: the answers come in
			// from port 53 and 443, which no rule passes in.
			s("udp 198.18.0.2:33333 > 192.0.2.53:53 len=30", "pass {pass out proto udp}", "pass {pass out proto udp}", "new"),
			s("udp 192.0.2.53:53 > 198.18.0.2:33333 len=60", "block default", est, "established"),
			s("tcp 198.18.0.2:40001 > 203.0.113.5:443 S seq=77", "pass {pass out proto tcp}", "pass {pass out proto tcp}", "new"),
			s("tcp 203.0.113.5:443 > 198.18.0.2:40001 SA seq=900 ack=78", "block default", est, "established"),
			// A router's ICMP error about that connection is related to
			// it; stateless, only echo requests pass.
			s("icmp 192.0.2.1 > 198.18.0.2 type=3 code=4 [tcp 198.18.0.2:40001 > 203.0.113.5:443 A seq=78 ack=901]",
				"block default", "pass conntrack: related", "related"),
			// Ping in: the echo reply goes out as established.
			s("icmp 198.18.0.1 > 198.18.0.2 type=8 id=7 seq=1", "pass {pass proto icmp}", "pass {pass proto icmp}", "new"),
			s("icmp 198.18.0.2 > 198.18.0.1 type=0 id=7 seq=1", "block default", est, "established"),
		},
	}, {
		// An ACK scan, or a connection the firewall never saw open: the
		// service rule matches every TCP packet to port 80 stateless.
		// Stateful, conntrack would pick the connection up (new), but a
		// pass rule without flags opens connections only with a SYN.
		name:  "ACK with no connection",
		rules: "@webserver.rules",
		steps: []step{
			s("tcp 198.18.0.1:41000 > 198.18.0.2:80 A seq=1 ack=1", "pass "+httpR, "block default", "new"),
			// The server's RST answering it: no connection.
			s("tcp 198.18.0.2:80 > 198.18.0.1:41000 R seq=1", "block default", "block conntrack: invalid (no conntrack for RST)", "invalid"),
			{pkt: "tcp 198.18.0.1:41000 > 198.18.0.2:80 A seq=1 ack=1", stateless: "pass " + httpR, stateful: "block default", ct: "new", entries: 0},
		},
	}, {
		name: "flags any picks connections up mid-stream",
		rules: "set local 198.18.0.2\n" +
			"pass in proto tcp to 198.18.0.2 port 80 flags any\n",
		steps: []step{
			s("tcp 198.18.0.1:41000 > 198.18.0.2:80 A seq=1 ack=1", "pass {pass in}", "pass {pass in}", "new"),
			s("tcp 198.18.0.2:80 > 198.18.0.1:41000 A seq=1 ack=1", "block default", est, "established"),
		},
	}, {
		name:  "SYN+FIN is invalid",
		rules: "@webserver.rules",
		steps: []step{
			{pkt: "tcp 198.18.0.1:42000 > 198.18.0.2:80 SF seq=1", stateless: "pass " + httpR,
				stateful: "block conntrack: invalid (invalid flags: SYN+FIN)", ct: "invalid", entries: 0},
			// No flag word: no flags at all, a NULL scan.
			s("tcp 198.18.0.1:42000 > 198.18.0.2:22 seq=1", "pass "+httpR, "block conntrack: invalid (invalid flags: NULL)", "invalid"),
		},
	}, {
		name: "set invalid pass",
		rules: "set local 198.18.0.2\n" +
			"set invalid pass\n" +
			"pass in proto tcp to 198.18.0.2 port 80\n",
		steps: []step{
			// Invalid to conntrack, passed by the setting, not tracked.
			{pkt: "tcp 198.18.0.1:42000 > 198.18.0.2:80 SF seq=1", stateless: "pass {pass in}",
				stateful: "pass conntrack: invalid (invalid flags: SYN+FIN)", ct: "invalid", entries: 0},
			// A packet cut inside its TCP header cannot be matched: both
			// modes give it the `set invalid` verdict.
			s("tcp 198.18.0.1:42000 > 198.18.0.2:80 S seq=1 cut=30", "pass malformed packet", "pass malformed packet", "invalid"),
		},
	}, {
		name: "malformed packets get set invalid in both modes",
		rules: "set local 198.18.0.2\n" +
			"pass in proto tcp to 198.18.0.2\n",
		steps: []step{
			// The address rule would pass the packet if its header could
			// be read; it cannot, so `set invalid` (block) decides.
			s("tcp 198.18.0.1:42000 > 198.18.0.2:80 S seq=1 cut=30", "block malformed packet", "block malformed packet", "invalid"),
		},
	}, {
		name: "no state creates no entry",
		rules: "set local 198.18.0.2\n" +
			"pass out proto udp to any port 53 no state\n" +
			"pass in proto tcp to 198.18.0.2 port 80 no state\n" +
			"pass in proto udp from any port 123 no state\n",
		steps: []step{
			{pkt: "udp 198.18.0.2:33333 > 192.0.2.53:53", stateless: "pass {pass out}", stateful: "pass {pass out}", ct: "new", entries: 0},
			// No entry, so the answer is new, and no rule passes it.
			{pkt: "udp 192.0.2.53:53 > 198.18.0.2:33333", stateless: "block default", stateful: "block default", ct: "new", entries: 0},
			{pkt: "tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000", stateless: "pass {pass in proto tcp}", stateful: "pass {pass in proto tcp}", ct: "new", entries: 0},
			// A SYN/ACK with no connection is invalid to conntrack.
			s("tcp 198.18.0.2:80 > 198.18.0.1:40000 SA seq=5000 ack=1001", "block default", "block conntrack: invalid (SYN/ACK without SYN)", "invalid"),
			// A reply that a rule of its own passes: new each time.
			{pkt: "udp 198.18.0.2:123 > 192.0.2.123:123", stateless: "block default", stateful: "block default", ct: "new", entries: 0},
			{pkt: "udp 192.0.2.123:123 > 198.18.0.2:123", stateless: "pass {pass in proto udp}", stateful: "pass {pass in proto udp}", ct: "new", entries: 0},
		},
	}, {
		// A reload swaps the rules and keeps the connections: a
		// connection opened under the old rules keeps passing as
		// established, though the new rules would block its SYN.
		name: "reload keeps connection state",
		rules: "set local 198.18.0.2\n" +
			"pass in proto tcp to 198.18.0.2 port 80\n",
		steps: []step{
			s("tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000", "pass {pass in}", "pass {pass in}", "new"),
			s("tcp 198.18.0.2:80 > 198.18.0.1:40000 SA seq=5000 ack=1001", "block default", est, "established"),
			{pkt: "tcp 198.18.0.1:40000 > 198.18.0.2:80 A seq=1001 ack=5001", stateless: "pass {pass in}", stateful: est, ct: "established", entries: 1},
			{reload: "set local 198.18.0.2\n" +
				"# web service closed\n" +
				"block in proto tcp to 198.18.0.2 port 80\n"},
			s("tcp 198.18.0.1:40000 > 198.18.0.2:80 PA seq=1001 ack=5001 len=20", "block {block in}", est, "established"),
			s("tcp 198.18.0.2:80 > 198.18.0.1:40000 PA seq=5001 ack=1021 len=100", "block default", est, "established"),
			// A new connection meets the new rules.
			{pkt: "tcp 198.18.0.1:40001 > 198.18.0.2:80 S seq=3000", stateless: "block {block in}", stateful: "block {block in}", ct: "new", entries: 1},
		},
	}, {
		name: "IPv6",
		rules: "set local fd00:198:18::2\n" +
			"pass in proto tcp to fd00:198:18::2 port 80\n" +
			"pass proto icmp6 icmp-type echo-request\n",
		steps: []step{
			s("tcp [fd00:198:18::1]:40000 > [fd00:198:18::2]:80 S seq=1", "pass {pass in}", "pass {pass in}", "new"),
			s("tcp [fd00:198:18::2]:80 > [fd00:198:18::1]:40000 SA seq=9 ack=2", "block default", est, "established"),
			s("icmp6 fd00:198:18::1 > fd00:198:18::2 type=128 id=3 seq=1", "pass {pass proto icmp6}", "pass {pass proto icmp6}", "new"),
			s("icmp6 fd00:198:18::2 > fd00:198:18::1 type=129 id=3 seq=1", "block default", est, "established"),
			// Neighbour discovery is not tracked: the rules decide.
			s("icmp6 fd00:198:18::1 > fd00:198:18::2 type=135", "block default", "block untracked, default", "untracked"),
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			rs := ruleset(t, tc.rules)
			src := ruleSource(t, tc.rules)
			sl := engine.NewStateless(rs)
			st := engine.NewStateful(rs, newTable(rs))
			now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
			// Every other step decides with DecideInto into the previous
			// step's decisions, as replay and the daemon reuse theirs:
			// nothing of the old decision may survive. fresh, a second
			// stateful engine fed the same packets through Decide, says
			// what each decision must be, field for field.
			var reusedSL, reusedST engine.Decision
			fresh := engine.NewStateful(rs, newTable(rs))
			for i, s := range tc.steps {
				if s.reload != "" {
					rs, src = ruleset(t, s.reload), s.reload
					sl.SetRules(rs)
					st.SetRules(rs)
					fresh.SetRules(rs)
					if sl.Rules() != rs || st.Rules() != rs {
						t.Fatal("Rules() is not the ruleset just set")
					}
					continue
				}
				now += int64(time.Millisecond)
				p := pkt(t, s.pkt)
				dir := dirOf(rs, p)
				var gotSL, gotST engine.Decision
				if i%2 == 1 {
					sl.DecideInto(&reusedSL, p, dir)
					st.DecideInto(&reusedST, p, dir, now)
					gotSL, gotST = reusedSL, reusedST
				} else {
					gotSL, gotST = sl.Decide(p, dir), st.Decide(p, dir, now)
					reusedSL, reusedST = gotSL, gotST
				}
				if want := sl.Decide(p, dir); gotSL != want {
					t.Errorf("step %d: %s: stateless DecideInto gave %+v, Decide %+v", i, s.pkt, gotSL, want)
				}
				if want := fresh.Decide(p, dir, now); gotST != want {
					t.Errorf("step %d: %s: stateful DecideInto gave %+v, Decide %+v", i, s.pkt, gotST, want)
				}
				if want := expandRule(t, rs, src, s.stateless); verdict(gotSL) != want {
					t.Errorf("step %d: %s\n\tstateless: %s\n\twant:      %s", i, s.pkt, verdict(gotSL), want)
				}
				if want := expandRule(t, rs, src, s.stateful); verdict(gotST) != want || gotST.Label() != s.ct {
					t.Errorf("step %d: %s\n\tstateful: %s (ct %s)\n\twant:     %s (ct %s)", i, s.pkt, verdict(gotST), gotST.Label(), want, s.ct)
				}
				if s.entries >= 0 && st.CT.Len() != s.entries {
					t.Errorf("step %d: %s: %d conntrack entries, want %d", i, s.pkt, st.CT.Len(), s.entries)
				}
			}
		})
	}
}

// TestDecisionReason: what a report prints for each cause.
func TestDecisionReason(t *testing.T) {
	rs := ruleset(t, "pass proto udp\n"+
		"# ssh from the admin network\n"+
		"block proto tcp to any port 22 label \"no-ssh\"\n")
	for _, tc := range []struct {
		d    engine.Decision
		want string
	}{
		{engine.Decision{Cause: engine.CauseRule, Rule: &rs.Rules[0]}, `rule 1 (line 1)`},
		{engine.Decision{Cause: engine.CauseRule, Rule: &rs.Rules[1]}, `rule 2 (line 3) "no-ssh"`},
		{engine.Decision{Cause: engine.CauseDefault}, "default"},
		{engine.Decision{Cause: engine.CauseMalformed}, "malformed packet"},
		{engine.Decision{Cause: engine.CauseNotIP, Verdict: engine.Pass}, "not IP"},
		{engine.Decision{Cause: engine.CauseTableFull}, "conntrack: table full"},
		{engine.FragmentDropped("overlapping fragments"), "defrag: overlapping fragments"},
		{engine.Decision{Cause: engine.CauseUntracked}, "untracked, default"},
		{engine.Decision{Cause: engine.CauseUntracked, Rule: &rs.Rules[0]}, "untracked, rule 1 (line 1)"},
	} {
		if got := tc.d.Reason(); got != tc.want {
			t.Errorf("Reason() = %q, want %q", got, tc.want)
		}
	}
	if l := engine.FragmentDropped("x").Label(); l != "invalid" {
		t.Errorf("a dropped fragment's label is %q, want invalid", l)
	}
	if l := (engine.Decision{Cause: engine.CauseNotIP}).Label(); l != "untracked" {
		t.Errorf("a frame without IP: label %q, want untracked", l)
	}
	if l := (engine.Decision{Cause: engine.CauseRule}).Label(); l != "" {
		t.Errorf("a stateless decision: label %q, want none", l)
	}
}

// TestNotIP: frames without IP are not the IP filter's business: they pass
// in both modes, whatever the rules, as netfilter never sees them.
func TestNotIP(t *testing.T) {
	rs := ruleset(t, "set default block\nset invalid block\n")
	arp := make([]byte, 42)
	for i := range 12 {
		arp[i] = 0xff
	}
	arp[12], arp[13] = 0x08, 0x06 // EtherType ARP
	var p packet.Packet
	p.Decode(arp, packet.LinkEthernet)
	if p.Kind != packet.KindNotIP {
		t.Fatalf("kind %v", p.Kind)
	}
	for _, d := range []engine.Decision{
		engine.NewStateless(rs).Decide(&p, 0),
		engine.NewStateful(rs, newTable(rs)).Decide(&p, 0, 1),
	} {
		if d.Verdict != engine.Pass || d.Reason() != "not IP" || d.Label() != "untracked" {
			t.Errorf("ARP: %s ct %q, want pass not IP, untracked", verdict(d), d.Label())
		}
	}
}

// TestFieldBuiltPacket: a packet whose fields are set by hand has no bytes
// (Data is nil); its checksum cannot be checked and counts as good, so
// conntrack tracks it like a captured one.
func TestFieldBuiltPacket(t *testing.T) {
	p := pkt(t, "udp 198.18.0.2:5353 > 192.0.2.53:53 len=10")
	q := *p
	q.Data = nil
	if !q.L4ChecksumOK() {
		t.Fatal("L4ChecksumOK is false for a packet without bytes")
	}
	rs := ruleset(t, "pass proto udp to any port 53\n")
	st := engine.NewStateful(rs, newTable(rs))
	if d := st.Decide(&q, 0, 1); d.Verdict != engine.Pass || d.Label() != "new" || st.CT.Len() != 1 {
		t.Errorf("query without bytes: %s ct %s, %d entries; want pass, new, 1 entry", verdict(d), d.Label(), st.CT.Len())
	}
	// A wrong checksum in real bytes is invalid to conntrack.
	bad := pkt(t, "udp 198.18.0.2:5354 > 192.0.2.53:53 len=10")
	bad.Data[len(bad.Data)-1] ^= 0xff
	if bad.L4ChecksumOK() {
		t.Fatal("corrupted packet: checksum still good")
	}
	if d := st.Decide(bad, 0, 2); d.Verdict != engine.Block || !strings.Contains(d.Reason(), "checksum") || d.Label() != "invalid" {
		t.Errorf("bad checksum: %s ct %s, want block, invalid (bad checksum)", verdict(d), d.Label())
	}
}

// TestSetRulesWhileDeciding: a reload swaps the ruleset while other
// goroutines decide packets (the daemon's queue readers); each packet sees
// one ruleset or the other, and the established connection passes
// throughout, whichever ruleset is in force. Run with -race.
func TestSetRulesWhileDeciding(t *testing.T) {
	open := ruleset(t, "set local 198.18.0.2\npass in proto tcp to 198.18.0.2 port 80\n")
	closed := ruleset(t, "set local 198.18.0.2\nblock in proto tcp to 198.18.0.2 port 80\n")
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	sl, st := engine.NewStateless(open), engine.NewStateful(open, newTable(open))
	for _, line := range []string{
		"tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000",
		"tcp 198.18.0.2:80 > 198.18.0.1:40000 SA seq=5000 ack=1001",
		"tcp 198.18.0.1:40000 > 198.18.0.2:80 A seq=1001 ack=5001",
	} {
		p := pkt(t, line)
		if d := st.Decide(p, dirOf(open, p), now); d.Verdict != engine.Pass {
			t.Fatalf("%s: %s", line, verdict(d))
		}
	}
	data := pkt(t, "tcp 198.18.0.1:40000 > 198.18.0.2:80 A seq=1001 ack=5001").Data

	done := make(chan struct{})
	errs := make(chan string, 4)
	for range 4 {
		go func() {
			var p packet.Packet
			for {
				select {
				case <-done:
					errs <- ""
					return
				default:
				}
				p.Decode(data, packet.LinkIP)
				if d := st.Decide(&p, rules.DirIn, now); d.Verdict != engine.Pass || d.Label() != "established" {
					errs <- "stateful: " + verdict(d)
					return
				}
				// Stateless follows the ruleset in force: the rule of
				// one or the other, never a mix.
				if d := sl.Decide(&p, rules.DirIn); d.Rule == nil || (d.Rule != &open.Rules[0] && d.Rule != &closed.Rules[0]) ||
					(d.Verdict == engine.Pass) != (d.Rule == &open.Rules[0]) {
					errs <- "stateless: " + verdict(d)
					return
				}
			}
		}()
	}
	for i := range 200 {
		rs := open
		if i%2 == 0 {
			rs = closed
		}
		sl.SetRules(rs)
		st.SetRules(rs)
	}
	close(done)
	for range 4 {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
}
