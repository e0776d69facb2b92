package engine_test

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/statewall/statewall/internal/pkttest"
	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/rules"
)

// pkt builds a packet from a line in pkttest's notation (see package
// pkttest) and decodes it, as NFQUEUE would hand it over (raw IP), so
// that conntrack's checksum check sees real packets:
//
//	tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000
//	icmp 192.0.2.1 > 198.18.0.2 type=3 code=4 [tcp 198.18.0.2:40001 > 203.0.113.5:443 S seq=7]
func pkt(t testing.TB, line string) *packet.Packet {
	t.Helper()
	return pkttest.MustDecode(t, line)
}

// ruleset parses rules text; "@name" loads rules/name from the repository.
func ruleset(t testing.TB, src string) *rules.Ruleset {
	t.Helper()
	name, text := "test.rules", []byte(src)
	if file, ok := strings.CutPrefix(src, "@"); ok {
		name = "../../rules/" + file
		var err error
		if text, err = os.ReadFile(name); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := rules.Parse(name, text)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// ruleSource is the text of a ruleset as written (for "@name", the file).
func ruleSource(t testing.TB, src string) string {
	t.Helper()
	if file, ok := strings.CutPrefix(src, "@"); ok {
		b, err := os.ReadFile("../../rules/" + file)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	return src
}

// expandRule replaces "{TEXT}" in a wanted reason by the reason of the rule
// written on the line of src that starts with TEXT: "rule N (line L)",
// where L is that line and N counts the rule lines up to it, plus the
// rule's label. The numbers come from the rule text, not from the engine.
func expandRule(t testing.TB, rs *rules.Ruleset, src, want string) string {
	t.Helper()
	i := strings.IndexByte(want, '{')
	if i < 0 {
		return want
	}
	j := strings.IndexByte(want[i:], '}')
	if j < 0 {
		t.Fatalf("unterminated {rule} in %q", want)
	}
	prefix := want[i+1 : i+j]
	n, found := 0, ""
	for l, line := range strings.Split(src, "\n") {
		w := strings.Fields(line)
		if len(w) == 0 || w[0] != "pass" && w[0] != "block" {
			continue
		}
		n++
		if strings.HasPrefix(line, prefix) {
			if found != "" {
				t.Fatalf("{%s} names more than one rule", prefix)
			}
			found = "rule " + strconv.Itoa(n) + " (line " + strconv.Itoa(l+1) + ")"
			if lab := rs.Rules[n-1].Label; lab != "" {
				found += " " + strconv.Quote(lab)
			}
		}
	}
	if found == "" {
		t.Fatalf("{%s} names no rule", prefix)
	}
	return want[:i] + found + want[i+j+1:]
}

// dirOf tells in from out by `set local`, as replay does.
func dirOf(rs *rules.Ruleset, p *packet.Packet) rules.Dir { return rs.Direction(p.Src, p.Dst) }

// newTable is the table a ruleset asks for, as replay and the daemon make
// it.
func newTable(rs *rules.Ruleset) *conntrack.Table {
	return conntrack.New(conntrack.Config{Timeouts: rs.Timeouts, Limit: rs.LimitStates})
}

// verdict renders a decision the way a report shows it.
func verdict(d engine.Decision) string { return d.Verdict.String() + " " + d.Reason() }
