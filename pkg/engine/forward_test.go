package engine_test

import (
	"net/netip"
	"testing"

	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/rules"
)

// A router: lan0 (index 2) towards the client 198.18.1.0/24, wan0 (index
// 3) towards the server 198.18.2.0/24.
var routerIfs = []rules.Iface{
	{Index: 1, Name: "lo"},
	{Index: 2, Name: "lan0", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.1.1/24")}},
	{Index: 3, Name: "wan0", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.2.1/24")}},
}

var (
	lanToWan = rules.Where{Dir: rules.DirForward, In: 2, Out: 3}
	wanToLan = rules.Where{Dir: rules.DirForward, In: 3, Out: 2}
)

// The pf-style router ruleset of issue #12: a forwarded packet is filtered
// inbound on its input interface and outbound on its output interface and
// passes only if both pass.
const routerRules = `
antispoof for lan0
block in on wan0
pass in on lan0 proto tcp to port 80
pass out on wan0
block out on wan0 proto tcp to port 25
pass in on lan0 proto udp
`

func TestForwardNeedsBothDirections(t *testing.T) {
	rs := ruleset(t, routerRules).Bind(routerIfs)
	sl := engine.NewStateless(rs)
	st := engine.NewStateful(rs, newTable(rs))
	for _, tt := range []struct {
		name  string
		pkt   string
		where rules.Where
		want  string // verdict, deciding rule and its direction, the other rule
	}{
		{"client opens web", "tcp 198.18.1.2:40000 > 198.18.2.2:80 S", lanToWan, "pass rule 4 in, other rule 5"},
		{"server opens to client", "tcp 198.18.2.2:40000 > 198.18.1.2:80 S", wanToLan, "block rule 3 in, other none"},
		{"forged LAN source from outside", "tcp 198.18.1.77:40000 > 198.18.1.2:80 S", wanToLan, "block rule 1 in, other none"},
		{"in passes, out has no pass (default)", "udp 198.18.1.2:5000 > 198.18.3.2:53", rules.Where{Dir: rules.DirForward, In: 2, Out: 9}, "block none out, other rule 7"},
	} {
		for _, mode := range []string{"stateless", "stateful"} {
			var d engine.Decision
			p := pkt(t, tt.pkt)
			if mode == "stateless" {
				sl.DecideAt(&d, p, tt.where)
			} else {
				st.DecideAt(&d, p, tt.where, 1)
			}
			got := d.Verdict.String() + " " + ruleName(d.Rule) + " " + d.Dir.String() + ", other " + ruleName(d.Other)
			if got != tt.want {
				t.Errorf("%s (%s): %s, want %s", tt.name, mode, got, tt.want)
			}
		}
	}
	// Antispoof is rules 1-2; the web connection passes inbound by rule 4
	// and outbound by `pass out on wan0` (rule 5), before the port 25 block.
}

// TestForwardStateBothWays: a connection passed both ways gets one
// entry; its replies pass by state although no rule passes them in on
// wan0, and a `no state` rule on either evaluation keeps it stateless.
func TestForwardStateBothWays(t *testing.T) {
	rs := ruleset(t, "block in on wan0\npass in on lan0\npass out on wan0 proto tcp\npass out on wan0 proto udp no state\npass out on lan0\n").Bind(routerIfs)
	st := engine.NewStateful(rs, newTable(rs))
	var d engine.Decision
	st.DecideAt(&d, pkt(t, "tcp 198.18.1.2:40000 > 198.18.2.2:80 S seq=100"), lanToWan, 1)
	if d.Verdict != engine.Pass {
		t.Fatalf("SYN: %s", verdict(d))
	}
	st.DecideAt(&d, pkt(t, "tcp 198.18.2.2:80 > 198.18.1.2:40000 SA seq=500 ack=101"), wanToLan, 2)
	if d.Verdict != engine.Pass || d.Cause != engine.CauseState {
		t.Errorf("SYN-ACK: %s, want pass by state", verdict(d))
	}
	st.DecideAt(&d, pkt(t, "udp 198.18.1.2:5000 > 198.18.2.2:53"), lanToWan, 3)
	if d.Verdict != engine.Pass {
		t.Fatalf("UDP out: %s", verdict(d))
	}
	st.DecideAt(&d, pkt(t, "udp 198.18.2.2:53 > 198.18.1.2:5000"), wanToLan, 4)
	if d.Verdict != engine.Block {
		t.Errorf("UDP reply after a no-state pass: %s, want block (no entry, and block in on wan0)", verdict(d))
	}
}

// TestForwardWithoutDirections: rules that say neither in, out nor on
// give both evaluations the same rule (matched once).
func TestForwardWithoutDirections(t *testing.T) {
	rs := ruleset(t, "pass proto tcp to port 80 log\n").Bind(routerIfs)
	var d engine.Decision
	engine.NewStateless(rs).DecideAt(&d, pkt(t, "tcp 198.18.1.2:40000 > 198.18.2.2:80 S"), lanToWan)
	if d.Verdict != engine.Pass || d.Rule == nil || d.Other != d.Rule || d.Dir != rules.DirIn {
		t.Errorf("got %s, rule %v, other %v, dir %v", verdict(d), d.Rule, d.Other, d.Dir)
	}
	engine.NewStateless(rs).DecideAt(&d, pkt(t, "tcp 198.18.1.2:40000 > 198.18.2.2:81 S"), lanToWan)
	if d.Verdict != engine.Block || d.Rule != nil || d.Other != nil {
		t.Errorf("port 81: got %s, rule %v, other %v", verdict(d), d.Rule, d.Other)
	}
}

func ruleName(r *rules.Rule) string {
	if r == nil {
		return "none"
	}
	return "rule " + itoa(r.Index)
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// TestLogAllMarksTheConnection: a connection created by a `log (all)`
// rule carries the rule's tag to its later packets (established and
// related), so that all of them are logged; others carry none. After a
// reload that moves the rule, its connections name it by its new number.
func TestLogAllMarksTheConnection(t *testing.T) {
	rs := ruleset(t, "pass proto udp to port 53\npass proto tcp to port 80 log (all)\n")
	st := engine.NewStateful(rs, newTable(rs))
	steps := []struct {
		pkt  string
		want int
	}{
		{"tcp 198.18.1.2:40000 > 198.18.2.2:80 S seq=100", 2},
		{"tcp 198.18.2.2:80 > 198.18.1.2:40000 SA seq=500 ack=101", 2},
		{"icmp 198.18.9.1 > 198.18.1.2 type=3 code=4 [tcp 198.18.1.2:40000 > 198.18.2.2:80 A seq=101 ack=501]", 2},
		{"udp 198.18.1.2:5000 > 198.18.2.2:53", 0},
		{"udp 198.18.2.2:53 > 198.18.1.2:5000", 0},
	}
	for i, s := range steps {
		d := st.Decide(pkt(t, s.pkt), rules.DirUnknown, int64(i+1))
		got := 0
		if r := st.LogAllRule(&d); r != nil {
			got = r.Index
		}
		if d.Verdict != engine.Pass || got != s.want {
			t.Errorf("%s: %s, LogAll rule %d, want pass and %d", s.pkt, verdict(d), got, s.want)
		}
	}
	// A reload puts a rule before it: the connection's packets name the
	// rule by its new number; a changed rule is another rule.
	st.SetRules(ruleset(t, "block proto icmp\npass proto udp to port 53\npass proto tcp to port 80 log (all)\n"))
	d := st.Decide(pkt(t, "tcp 198.18.2.2:80 > 198.18.1.2:40000 A seq=501 ack=101"), rules.DirUnknown, 9)
	if r := st.LogAllRule(&d); r == nil || r.Index != 3 {
		t.Errorf("after the reload: LogAll rule %v, want rule 3", r)
	}
	st.SetRules(ruleset(t, "pass proto tcp to port 81 log (all)\npass\n"))
	d = st.Decide(pkt(t, "tcp 198.18.2.2:80 > 198.18.1.2:40000 A seq=501 ack=101"), rules.DirUnknown, 10)
	if r := st.LogAllRule(&d); r != nil {
		t.Errorf("the rule is gone, and its connection still logs as rule %d", r.Index)
	}
}

// TestRouterExample: rules/router.rules on a router whose eth0 is the LAN
// and eth1 the outside, as its comment describes.
func TestRouterExample(t *testing.T) {
	ifs := []rules.Iface{
		{Index: 1, Name: "lo", Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}},
		{Index: 2, Name: "eth0", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.1.1/24"), netip.MustParsePrefix("fd00:198:18::1:1/112")}},
		{Index: 3, Name: "eth1", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.2.1/24")}},
	}
	rs := ruleset(t, "@router.rules").Bind(ifs)
	out := rules.Where{Dir: rules.DirForward, In: 2, Out: 3}
	in := rules.Where{Dir: rules.DirForward, In: 3, Out: 2}
	for _, tt := range []struct {
		name, pkt string
		where     rules.Where
		want      string
	}{
		{"LAN out", "tcp 198.18.1.5:40000 > 198.18.2.2:443 S", out, "pass rule 7 in, other rule 9"},
		{"LAN out, IPv6", "tcp [fd00:198:18::1:5]:40000 > [fd00:198:18::2:2]:22 S", out, "pass rule 7 in, other rule 9"},
		{"LAN direct mail", "tcp 198.18.1.5:40000 > 198.18.2.2:25 S", out, "block rule 6 in, other none"},
		{"port forward", "tcp 198.18.3.2:40000 > 198.18.1.2:80 S", in, "pass rule 4 in, other rule 10"},
		{"port forward from the blocklist", "tcp 198.18.251.17:40000 > 198.18.1.2:80 S", in, "block rule 3 in, other none"},
		{"outside to another LAN port", "tcp 198.18.3.2:40000 > 198.18.1.2:22 S", in, "block rule 5 in, other none"},
		{"outside to another LAN host", "tcp 198.18.3.2:40000 > 198.18.1.3:80 S", in, "block rule 5 in, other none"},
		{"forged LAN source from outside", "tcp 198.18.1.77:40000 > 198.18.1.2:80 S", in, "block rule 1 in, other none"},
		{"the router's address from outside", "tcp 198.18.1.1:40000 > 198.18.1.2:80 S", in, "block rule 1 in, other none"},
		{"the router's address from the LAN", "tcp 198.18.1.1:40000 > 198.18.2.2:80 S", out, "block rule 2 in, other none"},
		{"LAN host with a foreign source", "tcp 198.18.7.7:40000 > 198.18.2.2:80 S", out, "block rule 8 in, other none"},
	} {
		var d engine.Decision
		engine.NewStateless(rs).DecideAt(&d, pkt(t, tt.pkt), tt.where)
		got := d.Verdict.String() + " " + ruleName(d.Rule) + " " + d.Dir.String() + ", other " + ruleName(d.Other)
		if got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}
