package rules

import (
	"net/netip"
	"strings"
	"testing"
)

// The host these tests bind to: a router with a LAN and a WAN side.
var routerIfaces = []Iface{
	{Index: 1, Name: "lo", Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128")}},
	{Index: 7, Name: "lan0", Addrs: []netip.Prefix{
		netip.MustParsePrefix("198.18.1.1/24"), netip.MustParsePrefix("fd00:198:18::1:1/112"),
		netip.MustParsePrefix("fe80::1/64")}},
	{Index: 9000, Name: "wan0", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.2.1/24")}},
}

func TestParseOn(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"pass in on lan0 proto tcp to port 22", "pass in on lan0 proto tcp to any port 22\n"},
		{"block out on !wan0", "block out on !wan0\n"},
		{"pass on { lan0, wan0 } inet", "pass on { lan0, wan0 } inet\n"},
		{"pass on !{ lan0, wan0 }", "pass on { !lan0, !wan0 }\n"},
		{"define ifs = { lan0, eth0.100 }\npass in on $ifs", "pass in on { lan0, eth0.100 }\n"},
		{"pass in on lan0 log (all)", "pass in on lan0 log (all)\n"},
		{"block in log on wan0 label \"x\"", "block in on wan0 log label \"x\"\n"},
		{"pass log (all) proto tcp", "pass proto tcp log (all)\n"},
		{"antispoof for lan0", "antispoof for lan0\n"},
		{"antispoof log lan0 inet label \"spoof\"", "antispoof log for lan0 inet label \"spoof\"\n"},
		{"antispoof for { lan0, wan0 } inet6\npass", "antispoof for { lan0, wan0 } inet6\npass\n"},
	} {
		rs, err := Parse("host.rules", []byte(tt.src))
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.src, err)
			continue
		}
		if got := rs.String(); got != tt.want {
			t.Errorf("Parse(%q).String()\n got %q\nwant %q", tt.src, got, tt.want)
		}
		again, err := Parse("host.rules", []byte(rs.String()))
		if err != nil {
			t.Errorf("reparse of %q: %v", rs.String(), err)
		} else if d := sameRuleset(rs, again); d != "" {
			t.Errorf("reparse of %q differs: %s", rs.String(), d)
		}
	}
}

func TestParseOnErrors(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"pass on", `host.rules:1:8: expected interface name or '{' after 'on', got end of line`},
		{"pass on eth/0", `host.rules:1:9: "eth/0" is not an interface name (1-15 characters starting with a letter, no '/', ':' or blank)`},
		{"pass on abcdefghijklmnop", `host.rules:1:9: "abcdefghijklmnop" is not an interface name (1-15 characters starting with a letter, no '/', ':' or blank)`},
		{"pass proto tcp on eth0", `host.rules:1:16: 'on' must come before 'proto': the order is 'in'/'out', 'on', 'inet'/'inet6', 'proto', 'from', 'to', 'flags', 'icmp-type', 'no state', 'log', 'label'`},
		{"define p = 22\npass on $p", `host.rules:2:9: $p holds ports, not interfaces`},
		{"define i = eth0\npass from $i", `host.rules:2:11: $i holds interfaces, not addresses`},
		{"block log (all)", `host.rules:1:7: 'log (all)' logs the packets of the connection a rule creates: it needs a pass rule that keeps state`},
		{"pass log (some)", `host.rules:1:11: expected 'all' in 'log (...)', got "some" (other pf log options are not supported)`},
		{"pass log (all", `host.rules:1:14: expected ')' after 'log (all', got end of line`},
		{"pass log (all) proto udp no state", `host.rules:1:6: 'log (all)' logs the packets of the connection a rule creates: it needs a pass rule that keeps state`},
		{"block in log on wan0 log", `host.rules:1:22: duplicate 'log' in rule`},
		{"antispoof for !lan0", `host.rules:1:16: antispoof needs the interfaces to protect; '!' is not allowed here`},
		{"antispoof for lo", `host.rules:1:15: antispoof for lo: packets this host sends itself arrive on lo with its own addresses; protect the other interfaces`},
		{"antispoof for lan0 proto tcp", `host.rules:1:20: expected 'inet', 'inet6', 'label' or end of line in antispoof, got "proto"`},
		{"antispoof", `host.rules:1:10: expected interface name or '{' after 'antispoof for', got end of line`},
	} {
		_, err := Parse("host.rules", []byte(tt.src))
		if err == nil {
			t.Errorf("Parse(%q) accepted; want %s", tt.src, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("Parse(%q)\n got %s\nwant %s", tt.src, err, tt.want)
		}
	}
}

func TestTooManyIfaceNames(t *testing.T) {
	var b strings.Builder
	for i := 0; i <= MaxIfaceNames; i++ {
		b.WriteString("pass on if" + strings.Repeat("x", i%3) + itoa(i) + "\n")
	}
	_, err := Parse("host.rules", []byte(b.String()))
	wantError(t, err, "host.rules:64:1: too many interface names: a ruleset may name at most 63")
}

func itoa(i int) string { return string(rune('0'+i/10)) + string(rune('0'+i%10)) }

// TestMatchOn: `on` sees the interface by the name Bind gave its index,
// follows a rename (a new Bind), and an unbound ruleset sees no interface.
func TestMatchOn(t *testing.T) {
	rs := mustParse(t, "pass in on lan0 proto tcp to port 22\nblock in on !{ lan0, wan0 }\npass on wan0\n")
	p := pkt("tcp 198.18.1.2:1000 > 198.18.2.2:22 S")
	match := func(rs *Ruleset, dir Dir, idx uint32) int {
		if r := rs.MatchOn(p, dir, idx, false); r != nil {
			return r.Index
		}
		return 0
	}
	if got := match(rs, DirIn, 7); got != 2 {
		t.Errorf("unbound: rule %d, want 2 (no interface is lan0 before Bind)", got)
	}
	b := rs.Bind(routerIfaces)
	for _, tt := range []struct {
		dir  Dir
		idx  uint32
		want int
	}{
		{DirIn, 7, 1}, {DirIn, 9000, 3}, {DirIn, 1, 2}, {DirIn, 0, 2},
		{DirOut, 7, 0}, {DirOut, 9000, 3}, {DirUnknown, 9000, 3},
	} {
		if got := match(b, tt.dir, tt.idx); got != tt.want {
			t.Errorf("%v on index %d: rule %d, want %d", tt.dir, tt.idx, got, tt.want)
		}
	}
	// lan0 renamed to lan1 and a new lan0 made with another index.
	renamed := []Iface{{Index: 7, Name: "lan1"}, {Index: 12, Name: "lan0"}}
	b2 := rs.Bind(renamed)
	if got := match(b2, DirIn, 7); got != 2 {
		t.Errorf("after rename, old index: rule %d, want 2", got)
	}
	if got := match(b2, DirIn, 12); got != 1 {
		t.Errorf("after rename, new lan0: rule %d, want 1", got)
	}
	if got := match(b, DirIn, 7); got != 1 {
		t.Errorf("the old binding changed under Bind: rule %d, want 1", got)
	}
	if b.IfaceName(9000) != "wan0" || b.IfaceName(5) != "" || rs.IfaceName(7) != "" {
		t.Errorf("IfaceName: %q %q %q", b.IfaceName(9000), b.IfaceName(5), rs.IfaceName(7))
	}
}

// TestAntispoof: pf's expansion, with the networks of the interface's
// addresses at the time of Bind, link-local left out.
func TestAntispoof(t *testing.T) {
	rs := mustParse(t, "antispoof log for lan0\npass\n")
	if len(rs.Rules) != 3 || rs.Rules[2].Index != 3 {
		t.Fatalf("expanded into %d rules", len(rs.Rules))
	}
	b := rs.Bind(routerIfaces)
	exp := b.Expanded()
	for _, want := range []string{
		"@1 block in on { !lan0, !lo } from { 198.18.1.0/24, fd00:198:18::1:0/112 } log  # antispoof log for lan0\n",
		"@2 block in on !lo from { 198.18.1.1, fd00:198:18::1:1 } log  # antispoof log for lan0\n",
		"@3 pass\n",
	} {
		if !strings.Contains(exp, want) {
			t.Errorf("Expanded() lacks %q:\n%s", want, exp)
		}
	}
	if strings.Contains(exp, "fe80") {
		t.Errorf("link-local network in the expansion:\n%s", exp)
	}
	decide := func(rs *Ruleset, s string, idx uint32) int {
		if r := rs.MatchOn(pkt(s), DirIn, idx, false); r != nil {
			return r.Index
		}
		return 0
	}
	for _, tt := range []struct {
		pkt  string
		idx  uint32
		want int
	}{
		{"tcp 198.18.1.77:1000 > 198.18.2.2:80 S", 9000, 1},             // LAN source from the WAN side
		{"tcp 198.18.1.77:1000 > 198.18.2.2:80 S", 7, 3},                // real LAN traffic
		{"tcp 198.18.1.1:1000 > 198.18.2.2:80 S", 9000, 1},              // the router's address from outside
		{"tcp 198.18.1.1:1000 > 198.18.1.1:80 S", 1, 3},                 // the host to itself, on lo
		{"tcp [fd00:198:18::1:5]:1 > [fd00:198:18::2:2]:80 S", 9000, 1}, // IPv6 too
		{"tcp [fe80::5]:1 > [fe80::1]:80 S", 9000, 3},                   // link-local is every link's
		{"tcp 198.18.2.77:1000 > 198.18.1.2:80 S", 9000, 3},             // the WAN's own network
	} {
		if got := decide(b, tt.pkt, tt.idx); got != tt.want {
			t.Errorf("%s on index %d: rule %d, want %d", tt.pkt, tt.idx, got, tt.want)
		}
	}
	// Unbound, or the interface gone: antispoof blocks nothing (not all).
	if got := decide(rs, "tcp 198.18.1.77:1000 > 198.18.2.2:80 S", 0); got != 3 {
		t.Errorf("unbound: rule %d, want 3", got)
	}
	gone := rs.Bind([]Iface{{Index: 9000, Name: "wan0"}})
	if got := decide(gone, "tcp 198.18.1.77:1000 > 198.18.2.2:80 S", 9000); got != 3 {
		t.Errorf("lan0 gone: rule %d, want 3", got)
	}
	if !strings.Contains(gone.Expanded(), "no such interface now") {
		t.Errorf("Expanded without lan0:\n%s", gone.Expanded())
	}
	// The address changes: a new Bind follows it.
	moved := rs.Bind([]Iface{{Index: 7, Name: "lan0", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.3.1/24")}}, {Index: 9000, Name: "wan0"}})
	if got := decide(moved, "tcp 198.18.1.77:1000 > 198.18.2.2:80 S", 9000); got != 3 {
		t.Errorf("after the address moved, the old network: rule %d, want 3", got)
	}
	if got := decide(moved, "tcp 198.18.3.77:1000 > 198.18.2.2:80 S", 9000); got != 1 {
		t.Errorf("after the address moved, the new network: rule %d, want 1", got)
	}
}

func TestAntispoofFamily(t *testing.T) {
	b := mustParse(t, "antispoof for lan0 inet\npass\n").Bind(routerIfaces)
	if got := b.MatchOn(pkt("tcp [fd00:198:18::1:5]:1 > [fd00:198:18::2:2]:80 S"), DirIn, 9000, false); got == nil || got.Index != 3 {
		t.Errorf("inet antispoof matched IPv6: %v", got)
	}
	if got := b.MatchOn(pkt("tcp 198.18.1.5:1 > 198.18.2.2:80 S"), DirIn, 9000, false); got == nil || got.Index != 1 {
		t.Errorf("inet antispoof missed IPv4: %v", got)
	}
}

func TestLint(t *testing.T) {
	forward := LintConfig{In: true, Out: true, Where: "the forward hook", Ifaces: routerIfaces}
	output := LintConfig{Out: true, Local: true, Where: "the output hook", Ifaces: routerIfaces}
	input := LintConfig{In: true, Local: true, Where: "the input hook"}
	for _, tt := range []struct {
		src  string
		c    LintConfig
		want []string
	}{
		{"", forward, []string{"test.rules:1:1: warning: no rules: every packet gets the default (block)"}},
		{"pass in on lan0\npass out on wan0\n", forward, nil},
		{"set default pass\n block in from 198.18.2.0/24\n", output, []string{
			"test.rules:2:2: warning: rule 1 matches only inbound packets ('in'), and the output hook decides none: it never matches"}},
		{"pass in on eth9\npass out on !eth8\n", forward, []string{
			"test.rules:1:1: warning: rule 1: there is no interface eth9 (yet); 'on eth9' matches nothing until there is",
			"test.rules:2:1: warning: rule 2: there is no interface eth8 (yet), so 'on !eth8' excludes nothing"}},
		{"antispoof for eth9\nantispoof for wan0 inet6\npass\n", forward, []string{
			"test.rules:1:1: warning: antispoof for eth9: there is no interface eth9 (yet); it blocks nothing until there is",
			"test.rules:2:1: warning: antispoof for wan0: wan0 has no IPv6 addresses now (link-local ones do not count); it blocks nothing until it has"}},
		{"antispoof for lan0\npass\n", output, []string{
			"test.rules:1:1: warning: antispoof blocks inbound packets, and the output hook decides none: it never matches"}},
		{"pass in inet6 proto tcp to port 22\n", input, []string{
			"test.rules:1:1: warning: IPv6 neighbour discovery (neighbor-solicit in) is blocked by the default, so IPv6 stops working on the input hook; add 'pass inet6 proto icmp6 icmp-type neighbor-solicit no state' (and the same for neighbor-advert) before the blocks"}},
		{"block proto icmp6\npass\n", input, []string{
			"test.rules:1:1: warning: rule 1 blocks IPv6 neighbour discovery (neighbor-solicit in), so IPv6 stops working on the input hook; pass icmp6 types neighbor-solicit and neighbor-advert before it"}},
		{"pass proto icmp6 icmp-type neighbor-solicit no state\npass proto icmp6 icmp-type neighbor-advert no state\npass in inet6 proto tcp to port 22\n", input, nil},
		{"pass in inet proto tcp to port 22\n", input, nil},    // IPv4 only: ND is not its business
		{"pass in inet6 proto tcp to port 22\n", forward, nil}, // ND never reaches the forward hook
	} {
		rs := mustParse(t, tt.src)
		var got []string
		for _, w := range rs.Lint(tt.c) {
			got = append(got, w.String())
		}
		if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("Lint(%q)\n got %q\nwant %q", tt.src, got, tt.want)
		}
	}
}
