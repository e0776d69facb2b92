package rules

import (
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
)

func TestParseTablesReturnLimits(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"block.txt": "# a blocklist\n198.18.9.0/24\n\n  198.18.8.1   # one host\nfd00:198:18::9:0/112\n",
	})
	for _, tt := range []struct{ src, want string }{
		{"table <bad> { 198.18.9.5/24, 198.18.8.1 }\nblock from <bad>", "table <bad> { 198.18.9.0/24, 198.18.8.1 }\nblock from <bad>\n"},
		{"table <bad> persist const {}\npass from ! <bad>", "table <bad> persist const { }\npass from !<bad>\n"},
		{"table <ok> persist\npass to { <ok>, 198.18.0.1 } port 1", "expected error"},
		{"table <ok> persist\npass proto tcp to { <ok>, 198.18.0.1 } port 1", "table <ok> persist { }\npass proto tcp to { <ok>, 198.18.0.1 } port 1\n"},
		{"block return proto tcp", "block return proto tcp\n"},
		{"block drop in", "block in\n"},
		{"block return-rst in proto tcp to port 22", "block return-rst in proto tcp to any port 22\n"},
		{"block return-icmp (filter-prohib) proto udp", "block return-icmp (filter-prohib) proto udp\n"},
		{"block return-icmp (host-unr, admin-unr)", "block return-icmp (host-unr, admin-unr)\n"},
		{"block return-icmp6 (admin-unr) inet6", "block return-icmp6 (admin-unr) inet6\n"},
		{"table <bf> persist\npass in proto tcp to port 22 keep state (max 100, max-src-conn 10, max-src-conn-rate 3/30, overload <bf> flush global)",
			"table <bf> persist { }\npass in proto tcp to any port 22 keep state (max 100, max-src-conn 10, max-src-conn-rate 3/30, overload <bf> flush global)\n"},
		{"pass proto udp (max-src-states 5, max-src-nodes 7)", "pass proto udp keep state (max-src-nodes 7, max-src-states 5)\n"},
		{"set limit src-nodes 500\nset timeout src.track 30s\npass", "set limit src-nodes 500\nset timeout src.track 30s\npass\n"},
	} {
		rs, err := Parse(filepath.Join(dir, "host.rules"), []byte(tt.src))
		if tt.want == "expected error" {
			if err == nil {
				t.Errorf("Parse(%q) accepted", tt.src)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.src, err)
			continue
		}
		if got := rs.String(); got != tt.want {
			t.Errorf("Parse(%q).String()\n got %q\nwant %q", tt.src, got, tt.want)
			continue
		}
		again, err := Parse(filepath.Join(dir, "host.rules"), []byte(rs.String()))
		if err != nil {
			t.Errorf("reparse %q: %v", rs.String(), err)
		} else if d := sameRuleset(rs, again); d != "" {
			t.Errorf("reparse %q: %s", rs.String(), d)
		}
	}
	rs, err := Parse(filepath.Join(dir, "host.rules"), []byte("table <bad> file \"block.txt\"\nblock from <bad>\npass\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(rs.Tables[0].Addrs); got != 3 {
		t.Errorf("the file gave %d entries, want 3", got)
	}
	for _, tt := range []struct {
		pkt  string
		want int
	}{
		{"tcp 198.18.9.77:1 > 198.18.0.2:80 S", 1},
		{"tcp 198.18.8.1:1 > 198.18.0.2:80 S", 1},
		{"tcp 198.18.8.2:1 > 198.18.0.2:80 S", 2},
		{"tcp [fd00:198:18::9:5]:1 > [fd00:198:18::2]:80 S", 1},
	} {
		if r := rs.Match(pkt(tt.pkt), DirIn); r == nil || r.Index != tt.want {
			t.Errorf("%s: %v, want rule %d", tt.pkt, r, tt.want)
		}
	}
}

func TestTableErrors(t *testing.T) {
	dir := writeFiles(t, map[string]string{"bad.txt": "198.18.0.1\n\n  198.18.0.300\n"})
	for _, tt := range []struct{ src, want string }{
		{"block from <nope>", "host.rules:1:12: undefined table <nope> (define it with 'table <nope> ...' before its use)"},
		{"table <a> { 198.18.0.1 }\ntable <a> { 198.18.0.2 }", "host.rules:2:7: duplicate table <a> (first defined on line 1)"},
		{"table <a> file \"bad.txt\"", filepath.Join(dir, "bad.txt") + `:3:3: "198.18.0.300" is not an address or prefix`},
		{"table <a> file \"none.txt\"", "host.rules:1:16: table <a>: open " + filepath.Join(dir, "none.txt") + ": no such file or directory"},
		{"table <a> { !198.18.0.1 }", "host.rules:1:14: a table holds addresses and prefixes only (negate where it is used: from ! <a>)"},
		{"table a { 198.18.0.1 }", `host.rules:1:7: expected a table name in angle brackets, as <blocklist>, after 'table', got "a"`},
		{"block from <a b>", "host.rules:1:12: expected a table name (up to 31 letters, digits, '_' and '-') and '>' after '<'"},
		{"pass return", `host.rules:1:6: expected 'in'/'out', 'on', 'inet'/'inet6', 'proto', 'from', 'to', 'flags', 'icmp-type', 'no state', 'log', 'label' or end of line, got "return"`},
		{"block return-rst proto udp", "host.rules:1:1: 'block return-rst' answers TCP with a RST, and the rule is proto udp (use return-icmp)"},
		{"block return-icmp (nope)", `host.rules:1:20: expected an ICMP unreachable code (net-unr, host-unr, proto-unr, port-unr, net-prohib, host-prohib, filter-prohib) in 'return-icmp (...)', got "nope"`},
		{"block (max 3)", "host.rules:1:7: stateful tracking options need a pass rule that keeps state"},
		{"pass no state (max 3)", "host.rules:1:15: stateful tracking options need a pass rule that keeps state"},
		{"pass keep state (max 0)", `host.rules:1:22: expected a number from 1 to 2147483647 after 'max', got "0"`},
		{"pass keep state (max-src-conn-rate 5)", `host.rules:1:36: expected N/SECONDS (as 5/10: five connections in ten seconds, at most 86400 s) after 'max-src-conn-rate', got "5"`},
		{"pass keep state (overload <x>)", "host.rules:1:27: undefined table <x>: define it with 'table <x> persist' before this rule"},
		{"table <x> const persist\npass keep state (max-src-conn 3, overload <x>)", "host.rules:2:43: table <x> is const: overload adds to it"},
		{"table <x> persist\npass keep state (max 3, overload <x>)", "host.rules:2:17: overload <x> never triggers without max-src-conn or max-src-conn-rate"},
		{"pass proto udp keep state (max-src-conn 3)", "host.rules:1:27: max-src-conn and max-src-conn-rate count TCP connections, and the rule is proto udp"},
		{"pass keep state (max 3 max 4)", `host.rules:1:24: expected ',' or ')' after 'max', got "max"`},
		{"set timeout src.track forever", `host.rules:1:23: expected a duration such as 30s, 2m, 1h30m or 5d (at most 3650d) after 'set timeout src.track', got "forever"`},
	} {
		_, err := Parse(filepath.Join(dir, "host.rules"), []byte(tt.src))
		want := tt.want
		if want[0] == 'h' {
			want = filepath.Join(dir, want)
		}
		if err == nil || err.Error() != want {
			t.Errorf("Parse(%q)\n got %v\nwant %s", tt.src, err, want)
		}
	}
}

// mutableTable is a Lookup the test changes while packets are matched.
type mutableTable struct {
	mu sync.RWMutex
	m  map[netip.Addr]bool
}

func (t *mutableTable) Contains(a netip.Addr) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.m[a]
}

// TestTablesAtRunTime: the matcher asks the run-time object, so a change
// to it decides the next packet without a reload; ParseOptions.Tables
// sees only used or persist tables; a negated table excludes.
func TestTablesAtRunTime(t *testing.T) {
	made := map[string]*mutableTable{}
	opts := ParseOptions{Tables: func(d *TableDef) (Lookup, error) {
		mt := &mutableTable{m: map[netip.Addr]bool{}}
		for _, p := range d.Addrs {
			mt.m[p.Addr()] = true
		}
		made[d.Name] = mt
		return mt, nil
	}}
	rs, err := ParseWith("host.rules", []byte("table <bad> { 198.18.9.1 }\ntable <unused> { 198.18.9.2 }\ntable <kept> persist\nblock in from <bad>\npass in from ! <kept>\n"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := made["unused"]; ok || made["bad"] == nil || made["kept"] == nil {
		t.Fatalf("tables made: %v", made)
	}
	decide := func(src string) int {
		if r := rs.Match(pkt("udp "+src+":1 > 198.18.0.2:53"), DirIn); r != nil {
			return r.Index
		}
		return 0
	}
	if decide("198.18.9.1") != 1 || decide("198.18.9.3") != 2 {
		t.Errorf("before: %d %d", decide("198.18.9.1"), decide("198.18.9.3"))
	}
	made["bad"].m[netip.MustParseAddr("198.18.9.3")] = true
	made["kept"].m[netip.MustParseAddr("198.18.9.4")] = true
	if decide("198.18.9.3") != 1 || decide("198.18.9.4") != 0 {
		t.Errorf("after: %d %d, want 1 (added to <bad>) and 0 (in <kept>, excluded)", decide("198.18.9.3"), decide("198.18.9.4"))
	}
	ws := rs.Lint(LintConfig{In: true, Out: true, Where: "test"})
	if len(ws) != 1 || ws[0].String() != "host.rules:2:1: warning: table <unused> is used by no rule and not persist, so it is not created (write persist to keep it for run-time use)" {
		t.Errorf("Lint: %v", ws)
	}
}
