package rules

import (
	"testing"
)

// Each row: a ruleset, a packet, its direction, and the rule that must
// match (1-based; 0 means none, so the default applies).
var matchTests = []struct {
	name  string
	rules string
	pkt   string
	dir   Dir
	want  int
}{
	// Direction.
	{"in rule, in packet", "pass in proto tcp", "tcp 198.18.0.1:1234 > 198.18.0.2:80 S", DirIn, 1},
	{"in rule, out packet", "pass in proto tcp", "tcp 198.18.0.1:1234 > 198.18.0.2:80 S", DirOut, 0},
	{"in rule, unknown direction", "pass in proto tcp", "tcp 198.18.0.1:1234 > 198.18.0.2:80 S", DirUnknown, 0},
	{"no direction matches unknown", "pass proto tcp", "tcp 198.18.0.1:1234 > 198.18.0.2:80 S", DirUnknown, 1},
	{"no direction matches out", "pass proto tcp", "tcp 198.18.0.1:1234 > 198.18.0.2:80 S", DirOut, 1},
	{"first match wins", "block in proto tcp to any port 80\npass in proto tcp", "tcp 198.18.0.1:1234 > 198.18.0.2:80 S", DirIn, 1},
	{"first match wins, skip", "block in proto tcp to any port 81\npass in proto tcp", "tcp 198.18.0.1:1234 > 198.18.0.2:80 S", DirIn, 2},
	{"empty rule matches all", "pass", "gre 198.18.0.1 > 198.18.0.2", DirIn, 1},

	// Families.
	{"inet drops v6", "pass inet", "udp [fd00:198:18::1]:53 > [fd00:198:18::2]:53", DirIn, 0},
	{"inet6 takes v6", "pass inet6", "udp [fd00:198:18::1]:53 > [fd00:198:18::2]:53", DirIn, 1},
	{"v4 address implies inet", "pass from !198.18.0.1", "udp [fd00:198:18::1]:53 > [fd00:198:18::2]:53", DirIn, 0},
	{"proto icmp implies inet", "pass proto icmp", "icmp6 fd00:198:18::1 > fd00:198:18::2 type=128", DirIn, 0},
	{"mixed list matches both", "pass to { 198.18.0.2, fd00:198:18::2 }", "udp [fd00:198:18::1]:53 > [fd00:198:18::2]:53", DirIn, 1},

	// Addresses.
	{"prefix in", "pass from 198.18.0.0/24", "udp 198.18.0.77:53 > 198.18.1.1:53", DirIn, 1},
	{"prefix out", "pass from 198.18.0.0/24", "udp 198.18.1.77:53 > 198.18.1.1:53", DirIn, 0},
	{"host bits are masked", "pass from 198.18.0.99/24", "udp 198.18.0.1:53 > 198.18.1.1:53", DirIn, 1},
	{"negation", "pass to !198.18.0.2", "udp 198.18.0.1:53 > 198.18.0.2:53", DirIn, 0},
	{"negation other", "pass to !198.18.0.2", "udp 198.18.0.1:53 > 198.18.0.3:53", DirIn, 1},
	{"list", "pass to { 198.18.0.2, 198.18.0.3 }", "udp 198.18.0.1:53 > 198.18.0.3:53", DirIn, 1},
	{"list with exception", "pass to { 198.18.0.0/24, !198.18.0.3 }", "udp 198.18.0.1:53 > 198.18.0.3:53", DirIn, 0},
	{"list with exception, rest", "pass to { 198.18.0.0/24, !198.18.0.3 }", "udp 198.18.0.1:53 > 198.18.0.4:53", DirIn, 1},
	{"negations only: neither", "pass to { !198.18.0.2, !198.18.0.3 }", "udp 198.18.0.1:53 > 198.18.0.3:53", DirIn, 0},
	{"negations only: other", "pass to { !198.18.0.2, !198.18.0.3 }", "udp 198.18.0.1:53 > 198.18.0.4:53", DirIn, 1},
	{"negated list", "pass to !{ 198.18.0.2, 198.18.0.3 }", "udp 198.18.0.1:53 > 198.18.0.2:53", DirIn, 0},
	{"define", "define lan = { 198.18.1.0/24, fd00:198:18::/64 }\npass from $lan", "udp [fd00:198:18::5]:53 > [fd00:198:19::1]:53", DirOut, 1},
	{"nested list and define", "define a = { 198.18.0.2 }\npass to { $a, { 198.18.0.3 } }", "udp 198.18.0.1:53 > 198.18.0.3:53", DirIn, 1},
	{"v6 prefix", "pass to fd00:198:18::/64", "tcp [fd00:198:18::1]:1 > [fd00:198:18::ffff:1]:2 S", DirIn, 1},
	{"v6 prefix out", "pass to fd00:198:18::/64", "tcp [fd00:198:18::1]:1 > [fd00:198:19::1]:2 S", DirIn, 0},

	// Ports.
	{"port", "pass proto tcp to any port 80", "tcp 198.18.0.1:1234 > 198.18.0.2:80 S", DirIn, 1},
	{"port other", "pass proto tcp to any port 80", "tcp 198.18.0.1:1234 > 198.18.0.2:81 S", DirIn, 0},
	{"port range", "pass proto tcp from any port 1024-65535", "tcp 198.18.0.1:1024 > 198.18.0.2:81 S", DirIn, 1},
	{"port range below", "pass proto tcp from any port 1024-65535", "tcp 198.18.0.1:1023 > 198.18.0.2:81 S", DirIn, 0},
	{"port list", "pass proto tcp to any port { 22, 80, 443 }", "tcp 198.18.0.1:1234 > 198.18.0.2:443 S", DirIn, 1},
	{"port negation", "pass proto tcp to any port !22", "tcp 198.18.0.1:1234 > 198.18.0.2:22 S", DirIn, 0},
	{"port negation other", "pass proto tcp to any port !22", "tcp 198.18.0.1:1234 > 198.18.0.2:23 S", DirIn, 1},
	{"port service name", "pass proto tcp to any port ssh", "tcp 198.18.0.1:1234 > 198.18.0.2:22 S", DirIn, 1},
	{"port on udp", "pass proto udp to any port 53", "udp 198.18.0.1:1234 > 198.18.0.2:53", DirIn, 1},
	{"port rule, other proto", "pass proto udp to any port 53", "tcp 198.18.0.1:1234 > 198.18.0.2:53 S", DirIn, 0},
	{"port define", "define web = { 80, 443 }\npass proto tcp to any port { 22, $web }", "tcp 198.18.0.1:1234 > 198.18.0.2:443 S", DirIn, 1},
	{"from port shorthand", "pass proto udp from port 53", "udp 198.18.0.1:53 > 198.18.0.2:5353", DirIn, 1},

	// Fragments and missing transport headers. A non-first fragment has
	// no ports (its line has none): a port rule never matches it, whatever
	// port its datagram goes to.
	{"later fragment, port rule", "pass proto udp to any port 53", "udp 198.18.0.1 > 198.18.0.2 frag=1480", DirIn, 0},
	{"later fragment, negated port rule", "pass proto udp to any port !53", "udp 198.18.0.1 > 198.18.0.2 frag=1480", DirIn, 0},
	{"later fragment, address rule", "pass proto udp to 198.18.0.2", "udp 198.18.0.1 > 198.18.0.2 frag=1480", DirIn, 1},
	{"no transport header, flags rule", "pass proto tcp flags S/SA", "tcp 198.18.0.1:1234 > 198.18.0.2:80 S nol4", DirIn, 0},
	{"no transport header, icmp-type rule", "pass proto icmp icmp-type echo-request", "icmp 198.18.0.1 > 198.18.0.2 type=8 nol4", DirIn, 0},

	// TCP flags.
	{"S/SA syn", "pass proto tcp flags S/SA", "tcp 198.18.0.1:1234 > 198.18.0.2:80 S", DirIn, 1},
	{"S/SA syn+ece+cwr", "pass proto tcp flags S/SA", "tcp 198.18.0.1:1234 > 198.18.0.2:80 SEW", DirIn, 1},
	{"S/SA synack", "pass proto tcp flags S/SA", "tcp 198.18.0.1:1234 > 198.18.0.2:80 SA", DirIn, 0},
	{"A/A ack scan", "pass proto tcp flags A/A", "tcp 198.18.0.1:1234 > 198.18.0.2:80 A", DirIn, 1},
	{"A/A psh ack", "pass proto tcp flags A/A", "tcp 198.18.0.1:1234 > 198.18.0.2:80 PA", DirIn, 1},
	{"S alone is exact", "pass proto tcp flags S", "tcp 198.18.0.1:1234 > 198.18.0.2:80 SE", DirIn, 0},
	{"S alone, pure syn", "pass proto tcp flags S", "tcp 198.18.0.1:1234 > 198.18.0.2:80 S", DirIn, 1},
	{"none of FSR", "pass proto tcp flags /FSR", "tcp 198.18.0.1:1234 > 198.18.0.2:80 A", DirIn, 1},
	{"none of FSR, rst", "pass proto tcp flags /FSR", "tcp 198.18.0.1:1234 > 198.18.0.2:80 RA", DirIn, 0},
	{"flags any", "pass proto tcp flags any", "tcp 198.18.0.1:1234 > 198.18.0.2:80 RA", DirIn, 1},

	// ICMP.
	{"echo-request v4", "pass proto icmp icmp-type echo-request", "icmp 198.18.0.1 > 198.18.0.2 type=8", DirIn, 1},
	{"echo-reply is not request", "pass proto icmp icmp-type echo-request", "icmp 198.18.0.1 > 198.18.0.2 type=0", DirIn, 0},
	{"echo-request v6 is 128", "pass proto icmp6 icmp-type echo-request", "icmp6 fd00:198:18::1 > fd00:198:18::2 type=128", DirIn, 1},
	{"dest-unreach v6 is 1", "pass proto icmp6 icmp-type dest-unreach", "icmp6 fd00:198:18::1 > fd00:198:18::2 type=1 code=4", DirIn, 1},
	{"neighbor-solicit", "pass proto icmp6 icmp-type neighbor-solicit", "icmp6 fd00:198:18::1 > fd00:198:18::2 type=135", DirIn, 1},
	{"code", "pass proto icmp icmp-type dest-unreach code 4", "icmp 198.18.0.1 > 198.18.0.2 type=3 code=4", DirIn, 1},
	{"code other", "pass proto icmp icmp-type dest-unreach code 4", "icmp 198.18.0.1 > 198.18.0.2 type=3 code=3", DirIn, 0},
	{"numeric type", "pass proto icmp icmp-type 42", "icmp 198.18.0.1 > 198.18.0.2 type=42", DirIn, 1},

	// Protocol numbers.
	{"proto number", "pass proto 47", "gre 198.18.0.1 > 198.18.0.2", DirIn, 1},
	{"proto name", "pass proto gre", "proto=47 198.18.0.1 > 198.18.0.2", DirIn, 1},
	{"proto other", "pass proto gre", "udp 198.18.0.1:1 > 198.18.0.2:2", DirIn, 0},

	// The spec's example.
	{"webserver: ssh in", webserverRules, "tcp 198.18.0.9:40000 > 198.18.0.2:22 S", DirIn, 1},
	{"webserver: https in", webserverRules, "tcp 198.18.0.9:40000 > 198.18.0.2:443 S", DirIn, 1},
	{"webserver: smtp in", webserverRules, "tcp 198.18.0.9:40000 > 198.18.0.2:25 S", DirIn, 0},
	{"webserver: dns out", webserverRules, "udp 198.18.0.2:40000 > 198.18.0.53:53", DirOut, 2},
	{"webserver: dns reply in", webserverRules, "udp 198.18.0.53:53 > 198.18.0.2:40000", DirIn, 0},
	{"webserver: ping", webserverRules, "icmp 198.18.0.9 > 198.18.0.2 type=8", DirIn, 4},
	{"webserver: ping6 is not ping", webserverRules, "icmp6 fd00:198:18::9 > fd00:198:18::2 type=128", DirIn, 0},
}

const webserverRules = `set default block
set local 198.18.0.2
define web = { 80, 443 }
pass in  proto tcp to 198.18.0.2 port { 22, $web }
pass out proto udp to any port 53
pass out proto tcp to any port $web
pass proto icmp icmp-type echo-request
`

func TestMatch(t *testing.T) {
	for _, tt := range matchTests {
		t.Run(tt.name, func(t *testing.T) {
			rs := mustParse(t, tt.rules)
			p := pkt(tt.pkt)
			got := rs.Match(p, tt.dir)
			gotIdx := 0
			if got != nil {
				gotIdx = got.Index
			}
			if gotIdx != tt.want {
				t.Errorf("%s (%v) against\n%s\nmatched rule %d, want %d", tt.pkt, tt.dir, tt.rules, gotIdx, tt.want)
			}
			// The AST semantics, the linear matcher and the index agree.
			ref := refMatch(rs, p, tt.dir)
			if ref != got {
				t.Errorf("reference semantics matched %v, Match %v", ref, got)
			}
			k := makeKey(p, tt.dir)
			if lin := rs.m.matchLinear(&k); lin != gotIdx-1 {
				t.Errorf("matchLinear = %d, Match = %d", lin+1, gotIdx)
			}
		})
	}
}

func TestIsLocal(t *testing.T) {
	rs := mustParse(t, "set local { 198.18.0.2, fd00:198:18::/64 }\n")
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"198.18.0.2", true},
		{"198.18.0.3", false},
		{"fd00:198:18::77", true},
		{"fd00:198:19::1", false},
	} {
		if got := rs.IsLocal(mustAddr(tt.addr)); got != tt.want {
			t.Errorf("IsLocal(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	rs := mustParse(t, webserverRules)
	pkts := []struct {
		p   string
		dir Dir
	}{
		{"tcp 198.18.0.9:40000 > 198.18.0.2:443 S", DirIn},
		{"udp 198.18.0.2:40000 > 198.18.0.53:53", DirOut},
		{"tcp [fd00:198:18::9]:40000 > [fd00:198:18::2]:443 S", DirIn},
		{"icmp 198.18.0.9 > 198.18.0.2 type=8", DirIn},
	}
	for _, tt := range pkts {
		p := pkt(tt.p)
		if n := testing.AllocsPerRun(1000, func() { rs.Match(p, tt.dir) }); n != 0 {
			t.Errorf("Match(%s) allocates %v times", tt.p, n)
		}
		if n := testing.AllocsPerRun(1000, func() { rs.IsLocal(p.Dst) }); n != 0 {
			t.Errorf("IsLocal allocates %v times", n)
		}
	}
}

// The example rulesets in rules/ do what their comments say.
func TestExampleVerdicts(t *testing.T) {
	for _, tt := range []struct {
		file string
		pkt  string
		dir  Dir
		want Action
		rule int // 0: no rule, the default decided
	}{
		{"webserver", "tcp 198.18.0.9:40000 > 198.18.0.2:443 S", DirIn, Pass, 1},
		{"webserver", "tcp 198.18.0.9:40000 > 198.18.0.2:3306 S", DirIn, Block, 0},
		{"webserver", "udp 198.18.0.53:53 > 198.18.0.2:40000", DirIn, Block, 0},        // DNS reply: blocked stateless
		{"webserver", "tcp 198.18.0.80:443 > 198.18.0.2:40000 SA", DirIn, Block, 0},    // HTTPS reply: blocked stateless
		{"stateless-ack", "udp 198.18.0.53:53 > 198.18.0.2:40000", DirIn, Pass, 6},     // DNS reply passes...
		{"stateless-ack", "tcp 198.18.0.80:443 > 198.18.0.2:40000 SA", DirIn, Pass, 5}, // ...so does the HTTPS reply...
		{"stateless-ack", "tcp 198.18.0.66:443 > 198.18.0.2:3306 A", DirIn, Pass, 5},   // ...and an ACK scan from port 443
		{"stateless-ack", "tcp 198.18.0.66:443 > 198.18.0.2:3306 S", DirIn, Block, 0},  // a SYN from 443 does not
		{"workstation", "tcp 198.18.0.10:40000 > 198.18.0.80:443 S", DirOut, Pass, 1},
		{"workstation", "tcp 198.18.0.80:40000 > 198.18.0.10:22 S", DirIn, Block, 0},
		{"workstation", "icmp6 fd00:198:18::1 > fd00:198:18::10 type=128", DirIn, Pass, 3},
		{"default-pass", "tcp 198.18.0.80:40000 > 198.18.1.5:22 S", DirIn, Pass, 0},
	} {
		rs, err := ParseFile("../../rules/" + tt.file + ".rules")
		if err != nil {
			t.Fatal(err)
		}
		verdict, idx := rs.Default, 0
		if r := rs.Match(pkt(tt.pkt), tt.dir); r != nil {
			verdict, idx = r.Action, r.Index
		}
		if verdict != tt.want || idx != tt.rule {
			t.Errorf("%s: %s (%v): %v by rule %d, want %v by rule %d", tt.file, tt.pkt, tt.dir, verdict, idx, tt.want, tt.rule)
		}
	}
}

// TestMatchNewNeedsSYN pins pf's default for stateful rules: a pass rule
// that keeps state and names no flags opens a TCP connection only with a
// SYN. Stateless matching keeps no such default. This is what lets the
// stateful engine catch an ACK scan that a stateless port rule passes.
func TestMatchNewNeedsSYN(t *testing.T) {
	tests := []struct {
		name          string
		rules         string
		pkt           string
		match, newWin int
	}{
		{"SYN opens", "pass in proto tcp to any port 80", "tcp 198.18.0.1:1234 > 198.18.0.2:80 S", 1, 1},
		{"ACK scan: stateless passes, new does not", "pass in proto tcp to any port 80", "tcp 198.18.0.1:1234 > 198.18.0.2:80 A", 1, 0},
		{"SYN+ACK is no opener", "pass in proto tcp to any port 80", "tcp 198.18.0.1:1234 > 198.18.0.2:80 SA", 1, 0},
		{"falls through to a later rule", "pass in proto tcp to any port 80\npass in proto tcp from any port 80 flags A/A", "tcp 198.18.0.1:80 > 198.18.0.2:80 A", 1, 2},
		{"flags any picks up", "pass in proto tcp to any port 80 flags any", "tcp 198.18.0.1:1234 > 198.18.0.2:80 A", 1, 1},
		{"no state is stateless", "pass in proto tcp to any port 80 no state", "tcp 198.18.0.1:1234 > 198.18.0.2:80 A", 1, 1},
		{"block rules unaffected", "block in proto tcp to any port 80", "tcp 198.18.0.1:1234 > 198.18.0.2:80 A", 1, 1},
		{"proto-less pass rule, TCP ACK", "pass in", "tcp 198.18.0.1:1234 > 198.18.0.2:80 A", 1, 0},
		{"proto-less pass rule, UDP", "pass in", "udp 198.18.0.1:1234 > 198.18.0.2:53", 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := mustParse(t, tt.rules)
			p := pkt(tt.pkt)
			if got := ruleIndex(rs.Match(p, DirIn)); got != tt.match {
				t.Errorf("Match = rule %d, want %d", got, tt.match)
			}
			if got := ruleIndex(rs.MatchNew(p, DirIn)); got != tt.newWin {
				t.Errorf("MatchNew = rule %d, want %d", got, tt.newWin)
			}
		})
	}
}

func ruleIndex(r *Rule) int {
	if r == nil {
		return 0
	}
	return r.Index
}
