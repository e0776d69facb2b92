package rules

import (
	"errors"
	"fmt"
	"github.com/statewall/statewall/pkg/packet"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/conntrack"
)

// Each row: a file's text and the exact error, position included.
var parseErrorTests = []struct {
	src  string
	want string
}{
	{"pass in proto tcp to 198.18.0.2 port ssh2", "host.rules:1:38: expected port or '{' after 'port', got \"ssh2\""},
	{"pass in proto tcp to 198.18.0.2 port { 22, ssh2 }", "host.rules:1:44: expected port, '!', '$name' or '}' in list, got \"ssh2\""},
	{"pass from $nope", "host.rules:1:11: undefined $nope"},
	{"define a = { 80 }\ndefine a = { 81 }", "host.rules:2:8: duplicate define \"a\" (first defined on line 1)"},
	{"pass inet6 from 198.18.0.0/24", "host.rules:1:17: IPv4 address 198.18.0.0/24 in a rule that is IPv6 (from 'inet6')"},
	{"pass inet from fd00::1", "host.rules:1:16: IPv6 address fd00::1 in a rule that is IPv4 (from 'inet')"},
	{"pass from 198.18.0.1 to fd00::1", "host.rules:1:25: IPv6 address fd00::1 in a rule that is IPv4 (from the 'from' address)"},
	{"pass proto icmp to any port 80", "host.rules:1:24: proto icmp has no ports"},
	{"pass to any port 80", "host.rules:1:13: 'port' needs 'proto tcp', 'proto udp' or 'proto sctp' before it (as in pf, ports are only matched for a named protocol)"},
	{"pass flags S/SA", "host.rules:1:6: 'flags' needs 'proto tcp' before it"},
	{"pass proto udp flags S/SA", "host.rules:1:16: 'flags' needs 'proto tcp' before it"},
	{"pass icmp-type echo-request", "host.rules:1:6: 'icmp-type' needs 'proto icmp' or 'proto icmp6' before it"},
	{"pass proto tcp icmp-type echo-request", "host.rules:1:16: 'icmp-type' needs 'proto icmp' or 'proto icmp6' before it"},
	{"pass from 198.18.0.0/33", "host.rules:1:11: bad prefix length \"33\" in \"198.18.0.0/33\": IPv4 allows 0-32"},
	{"pass from fd00::/129", "host.rules:1:11: bad prefix length \"129\" in \"fd00::/129\": IPv6 allows 0-128"},
	{"pass proto tcp to any port 65536", "host.rules:1:28: port 65536 out of range 0-65535"},
	{"pass proto tcp to any port 100-20", "host.rules:1:28: port range 100-20 is backwards (write 20-100)"},
	{"set foo bar", "host.rules:1:5: unknown setting \"foo\"; expected default, invalid, local, limit or timeout"},
	{"set default pass\nset default block", "host.rules:2:5: duplicate 'set default' (first set on line 1)"},
	{"set timeout tcp.established 5d\nset timeout tcp.established 4d", "host.rules:2:13: duplicate 'set timeout tcp.established' (first set on line 1)"},
	{"set timeout tcp.nope 5d", "host.rules:1:13: expected timeout name after 'set timeout' (generic, gre, gre.stream, icmp, icmpv6, sctp.closed, sctp.cookie_echoed, sctp.cookie_wait, sctp.established, sctp.heartbeat_sent, sctp.shutdown_ack_sent, sctp.shutdown_recd, sctp.shutdown_sent, tcp.close, tcp.close_wait, tcp.established, tcp.fin_wait, tcp.last_ack, tcp.max_retrans, tcp.syn_recv, tcp.syn_sent, tcp.syn_sent2, tcp.time_wait, tcp.unacknowledged, udp, udp.stream, src.track), got \"tcp.nope\""},
	{"set timeout tcp.established 5y", "host.rules:1:29: expected a duration such as 30s, 2m, 1h30m or 5d (at most 3650d) after 'set timeout tcp.established', got \"5y\""},
	{"set timeout tcp.established 0s", "host.rules:1:29: timeout tcp.established must be positive"},
	{"set limit states 0", "host.rules:1:18: expected a number of states from 1 to 2147483647 after 'set limit states', got \"0\""},
	{"set limit foo 1", "host.rules:1:11: expected 'states' or 'src-nodes' after 'set limit', got \"foo\""},
	{"set local any", "host.rules:1:11: 'set local' needs this host's addresses, not 'any'"},
	{"set local !198.18.0.1", "host.rules:1:12: 'set local' cannot hold negated addresses"},
	{"pass in proto tcp \\\n  to any port \\\n  ssh2", "host.rules:3:3: expected port or '{' after 'port', got \"ssh2\""},
	{"pass proto tcp in", "host.rules:1:16: 'in' must come before 'proto': the order is 'in'/'out', 'on', 'inet'/'inet6', 'proto', 'from', 'to', 'flags', 'icmp-type', 'no state', 'log', 'label'"},
	{"pass in in", "host.rules:1:9: duplicate 'in'/'out' in rule"},
	{"pass quick", "host.rules:1:6: unknown word \"quick\": the first matching rule always wins, so 'quick' is not needed"},
	{"pass proto tcp flags Sx/SA", "host.rules:1:22: unknown TCP flag 'x' in \"Sx/SA\": flags are F S R P A U E W"},
	{"pass proto tcp flags S/A", "host.rules:1:22: flags S/A can never match: S is not in the mask A"},
	{"pass proto tcp flags S/", "host.rules:1:22: empty mask in flags \"S/\""},
	{"pass label foo", "host.rules:1:12: expected a quoted string after 'label', got \"foo\""},
	{"pass label \"abc", "host.rules:1:12: unterminated string"},
	{"pass from !{ 198.18.0.1, !198.18.0.2 }", "host.rules:1:11: cannot negate a list that holds negated items"},
	{"pass from { }", "host.rules:1:13: empty list"},
	{"pass from { 198.18.0.1, 80 }", "host.rules:1:25: expected address, '!', '$name' or '}' in list, got \"80\""},
	{"define web = { 80, 443 }\npass from $web", "host.rules:2:11: $web holds ports, not addresses"},
	{"define h = { 198.18.0.1 }\npass proto tcp to any port $h", "host.rules:2:28: $h holds addresses, not ports"},
	{"pass proto icmp6 inet", "host.rules:1:18: 'inet' must come before 'proto': the order is 'in'/'out', 'on', 'inet'/'inet6', 'proto', 'from', 'to', 'flags', 'icmp-type', 'no state', 'log', 'label'"},
	{"pass inet6 proto icmp", "host.rules:1:18: proto icmp is IPv4 only, but the rule is IPv6 (from 'inet6'): use proto icmp6"},
	{"pass from any to", "host.rules:1:17: expected address or '{' after 'to', got end of line"},
	{"pass from", "host.rules:1:10: expected address or '{' after 'from', got end of line"},
	{"pass proto tcp to any port", "host.rules:1:27: expected port or '{' after 'port', got end of line"},
	{"pass proto 0", "host.rules:1:12: expected protocol (tcp, udp, icmp, icmp6, sctp, ... or a number 1-255) after 'proto', got \"0\""},
	{"pass proto 256", "host.rules:1:12: expected protocol (tcp, udp, icmp, icmp6, sctp, ... or a number 1-255) after 'proto', got \"256\""},
	{"pass proto icmp icmp-type bogus", "host.rules:1:27: expected icmp type name (echo-request, echo-reply, dest-unreach, ...) or number 0-255 after 'icmp-type', got \"bogus\""},
	{"pass proto icmp icmp-type echo-request code x", "host.rules:1:45: expected ICMP code 0-255 after 'code', got \"x\""},
	{"frobnicate", "host.rules:1:1: expected 'pass', 'block', 'antispoof', 'table', 'include', 'set' or 'define', got \"frobnicate\""},
	{"pass @", "host.rules:1:6: unexpected character '@'"},
	{"pass \\ x", "host.rules:1:6: unexpected '\\': a '\\' continues a line only as its last character"},
	{"define 1a = { 80 }", "host.rules:1:8: expected a name (letters, digits, '_') after 'define', got \"1a\""},
	{"define a { 80 }", "host.rules:1:10: expected '=' after 'define a', got '{'"},
	{"define a = { 80, }", "host.rules:1:18: expected list item after ',', got '}'"},
	{"define a = any", "host.rules:1:12: 'any' is allowed only on its own after 'from' or 'to'"},
	{"pass from { any }", "host.rules:1:13: 'any' cannot be a list item"},
	{"pass from fe80::1%eth0", "host.rules:1:11: address \"fe80::1%eth0\" has a zone; zones are not allowed"},
	{"define v6 = { fd00:198:18::1 }\npass inet from $v6", "host.rules:2:16: \"$v6\" holds no IPv4 address, and the rule is IPv4 (from 'inet')"},
	{"set default pass extra", "host.rules:1:18: expected end of line after 'set default pass', got \"extra\""},
	{"pass no", "host.rules:1:8: expected 'state' after 'no', got end of line"},
	{"pass all all", "host.rules:1:10: 'all' means 'from any to any' and cannot follow 'from', 'to' or 'all'"},
	{"pass to 198.18.0.1 from 198.18.0.2", "host.rules:1:20: 'from' must come before 'to': the order is 'in'/'out', 'on', 'inet'/'inet6', 'proto', 'from', 'to', 'flags', 'icmp-type', 'no state', 'log', 'label'"},
	{"pass label \"a\x01\"", "host.rules:1:14: control character 0x01 in string"},
	{"pass label \"a\xff\"", "host.rules:1:14: invalid UTF-8 in string"},
	{"pass label \"a\\n\"", "host.rules:1:14: unknown escape in string: only \\\" and \\\\ are allowed"},
	{"pass\n\n  block \xff", "host.rules:3:9: unexpected byte 0xff"},
	// The first error in the file, whether the parser's or the lexer's.
	{"pass frm\npass @", "host.rules:1:6: expected 'in'/'out', 'on', 'inet'/'inet6', 'proto', 'from', 'to', 'flags', 'icmp-type', 'no state', 'log', 'label' or end of line, got \"frm\""},
	{"pass frm@", "host.rules:1:6: expected 'in'/'out', 'on', 'inet'/'inet6', 'proto', 'from', 'to', 'flags', 'icmp-type', 'no state', 'log', 'label' or end of line, got \"frm\""},
	{"pass @frm", "host.rules:1:6: unexpected character '@'"},
	{"# a comment \\\npass frm any", "host.rules:2:6: expected 'in'/'out', 'on', 'inet'/'inet6', 'proto', 'from', 'to', 'flags', 'icmp-type', 'no state', 'log', 'label' or end of line, got \"frm\""},
}

func TestParseErrors(t *testing.T) {
	for _, tt := range parseErrorTests {
		_, err := Parse("host.rules", []byte(tt.src))
		if err == nil {
			t.Errorf("Parse(%q) = nil error, want %s", tt.src, tt.want)
			continue
		}
		var perr *Error
		if !errors.As(err, &perr) {
			t.Errorf("Parse(%q) error is %T, want *Error", tt.src, err)
		}
		if err.Error() != tt.want {
			t.Errorf("Parse(%q)\n got %s\nwant %s", tt.src, err, tt.want)
		}
	}
}

func TestParseSettings(t *testing.T) {
	rs := mustParse(t, `# settings
set default pass
set invalid pass
set local { 198.18.0.2, fd00:198:18::2, 198.18.4.0/24 }
set limit states 1000
set timeout tcp.established 5d
set timeout udp 30s
set timeout tcp.syn_sent 1m30s
`)
	if rs.Default != Pass || rs.Invalid != Pass {
		t.Errorf("Default, Invalid = %v, %v; want pass, pass", rs.Default, rs.Invalid)
	}
	if got := fmt.Sprint(rs.Local); got != "[198.18.0.2/32 fd00:198:18::2/128 198.18.4.0/24]" {
		t.Errorf("Local = %s", got)
	}
	if rs.LimitStates != 1000 {
		t.Errorf("LimitStates = %d", rs.LimitStates)
	}
	var want conntrack.Timeouts
	want.TCP.Established = 5 * 24 * time.Hour
	want.UDP = 30 * time.Second
	want.TCP.SynSent = 90 * time.Second
	if rs.Timeouts != want {
		t.Errorf("Timeouts = %+v, want %+v", rs.Timeouts, want)
	}

	empty := mustParse(t, "")
	if empty.Default != Block || empty.Invalid != Block || empty.LimitStates != DefaultLimitStates || empty.Timeouts != (conntrack.Timeouts{}) || empty.Local != nil {
		t.Errorf("defaults of an empty file: %+v", empty)
	}
	if r := empty.Match(pkt("tcp 198.18.0.1:1 > 198.18.0.2:2 S"), DirIn); r != nil {
		t.Errorf("empty ruleset matched %v", r)
	}
}

func TestParseRule(t *testing.T) {
	rs := mustParse(t, "define web = { 80, 443 }\n"+
		"pass in inet proto tcp from !198.18.0.0/16 port 1024-65535 \\\n"+
		"    to 198.18.0.2 port { 22, $web } flags S/SA no state log label \"web \\\"in\\\"\"\n"+
		"block proto icmp6 icmp-type packet-too-big code 0\n")
	want := []Rule{{
		Index: 1, Line: 2, Col: 1, Action: Pass, Dir: DirIn, Family: 4, Proto: 6,
		From:      AddrSpec{Items: []AddrItem{{Prefix: netip.MustParsePrefix("198.18.0.0/16"), Neg: true}}},
		FromPorts: PortSpec{Items: []PortItem{{Lo: 1024, Hi: 65535}}},
		To:        AddrSpec{Items: []AddrItem{{Prefix: netip.MustParsePrefix("198.18.0.2/32")}}},
		ToPorts:   PortSpec{Items: []PortItem{{Lo: 22, Hi: 22}, {Lo: 80, Hi: 80}, {Lo: 443, Hi: 443}}},
		Flags:     packet.TCPSyn, FlagsMask: packet.TCPSyn | packet.TCPAck, HasFlags: true,
		NoState: true, Log: true, Label: `web "in"`,
	}, {
		Index: 2, Line: 4, Col: 1, Action: Block, Family: 6, Proto: 58,
		ICMPType: 2, HasICMPType: true, HasICMPCode: true,
	}}
	if !reflect.DeepEqual(rs.Rules, want) {
		t.Errorf("rules:\n got %#v\nwant %#v", rs.Rules, want)
	}
	if got, want := rs.String(), "pass in proto tcp from !198.18.0.0/16 port 1024-65535 to 198.18.0.2 port { 22, 80, 443 } flags S/SA no state log label \"web \\\"in\\\"\"\n"+
		"block proto icmp6 icmp-type packet-too-big code 0\n"; got != want {
		t.Errorf("String:\n got %s\nwant %s", got, want)
	}
}

// roundTrip checks that printing rs and parsing the text gives the same
// ruleset, and that printing is then a fixpoint.
func roundTrip(t testing.TB, rs *Ruleset) {
	t.Helper()
	s1 := rs.String()
	rs2, err := Parse("printed", []byte(s1))
	if err != nil {
		t.Fatalf("parsing String() of %s: %v\n%s", rs.File, err, s1)
	}
	if d := sameRuleset(rs, rs2); d != "" {
		t.Fatalf("%s: print -> parse changed the ruleset: %s\n%s", rs.File, d, s1)
	}
	if s2 := rs2.String(); s2 != s1 {
		t.Fatalf("%s: print is not a fixpoint:\n%s\n---\n%s", rs.File, s1, s2)
	}
}

var roundTripTests = []string{
	webserverRules,
	"pass from any to any",
	"pass all",
	"pass inet\nblock inet6",
	"define x = { !fd00::1 }\npass inet from $x",
	"define m = { 198.18.0.1, fd00::1 }\npass inet from $m\npass inet6 to $m\npass from $m",
	"pass proto tcp flags S\npass proto tcp flags /SA\npass proto tcp flags any\npass proto tcp flags FSRPAUEW/FSRPAUEW",
	"pass proto udp from { 198.18.0.0/15, !198.18.3.0/24 } port { 1-1023, !53 } to 198.18.0.1 port 0\npass to ::ffff:198.18.0.0/120",
	"pass proto icmp icmp-type 200 code 3\npass proto icmp6 icmp-type timex\npass proto 1 icmp-type echoreq",
	"pass proto 253 label \"\"\nblock proto 58 log",
	"set timeout tcp.time_wait 120s\nset timeout generic 1500ms\nset timeout icmp 3650d",
	"pass keep state",
}

func TestRoundTrip(t *testing.T) {
	for _, src := range roundTripTests {
		rs, err := Parse("test.rules", []byte(src))
		if err != nil {
			t.Fatalf("Parse(%q): %v", src, err)
		}
		roundTrip(t, rs)
	}
}

// TestExamples parses every ruleset shipped in rules/ and round-trips it.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../../rules/*.rules")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example rulesets found: %v", err)
	}
	for _, f := range files {
		rs, err := ParseFile(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		roundTrip(t, rs)
	}
	if _, err := ParseFile("../../rules/does-not-exist.rules"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ParseFile of a missing file: %v, want ErrNotExist", err)
	}
}
