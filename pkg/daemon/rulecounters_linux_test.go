//go:build linux

package daemon

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// rulesOf is `statewall rules --json` against the daemon at socket.
func rulesOf(t *testing.T, socket string) RuleCounters {
	t.Helper()
	out, _, err := cli("rules", "--socket", socket, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rc RuleCounters
	if err := json.Unmarshal([]byte(out), &rc); err != nil {
		t.Fatalf("rules --json: %v: %q", err, out)
	}
	return rc
}

// sendUDP sends n datagrams of size bytes of payload from ns to the
// server's port, one socket, as fast as it can.
func sendUDP(t *testing.T, ns string, port, n, size int) {
	t.Helper()
	mustNS(t, ns, "", "python3", "-c", fmt.Sprintf(`import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(%d):
    s.sendto(b"x" * %d, (%q, %d))
`, n, size, serverV4, port))
}

// TestRuleCountersLive: the router counts, per rule, exactly the packets
// the test sends through it: N pings and M UDP datagrams, each decided by
// a labelled rule of its own (the pings pass with no state, so each is
// new; the datagrams are blocked), and one curl, whose first packet makes
// a state and whose others pass as established, counting for no rule.
// Bytes are the IP packets' sizes. After a reload that changes the UDP
// rule, the ping rule keeps its count and the UDP rule starts at 0, while
// the metric of the UDP label keeps what the old rule counted.
func TestRuleCountersLive(t *testing.T) {
	needRoot(t, "curl", "python3", "ss", "ping")
	tp := newTopo(t)
	tp.httpServer(t)
	rules := writeRules(t, filepath.Join(tp.dir, "statewall.rules"), `set default block
set invalid pass
pass proto icmp icmp-type echo-request no state label "ping"
block proto udp to any port 7777 label "udp"
pass proto tcp to any port 80 label "web"
`)
	// Echo replies of pings that made no state are invalid to conntrack:
	// `set invalid pass` passes them without a rule.
	sock := filepath.Join(tp.dir, "router.sock")
	maddr := routerCV4 + ":9090"
	tp.startDaemon(t, tp.router, sock, "--rules", rules, "--hooks", "forward", "--metrics", maddr)

	const n, m, pingSize, udpSize = 20, 13, 100, 200
	if got := pingCount(tp.client, serverV4, n, pingSize); got != n {
		t.Fatalf("%d of %d pings came back", got, n)
	}
	sendUDP(t, tp.client, 7777, m, udpSize)
	if !curl(tp.client, "http://"+serverV4+"/", 3) {
		t.Fatal("curl failed")
	}
	var rc RuleCounters
	// The datagrams are sent without waiting: wait until the router had
	// them all.
	waitFor(5*time.Second, func() bool {
		rc = rulesOf(t, sock)
		return len(rc.Rules) == 3 && rc.Rules[1].Packets >= m
	})
	if len(rc.Rules) != 3 {
		t.Fatalf("rules: %+v", rc)
	}
	type counts struct{ evals, packets, bytes, states uint64 }
	of := func(r RuleStat) counts { return counts{r.Evaluations, r.Packets, r.Bytes, r.States} }
	ping, udp, web := of(rc.Rules[0]), of(rc.Rules[1]), of(rc.Rules[2])
	if want := (counts{n + m + 1, n, n * (20 + 8 + pingSize), 0}); ping != want {
		t.Errorf("ping rule: %+v, want %+v", ping, want)
	}
	if want := (counts{m + 1, m, m * (20 + 8 + udpSize), 0}); udp != want {
		t.Errorf("udp rule: %+v, want %+v", udp, want)
	}
	if web.evals != 1 || web.packets != 1 || web.states != 1 {
		t.Errorf("web rule: %+v, want 1 evaluation, 1 packet (the SYN), 1 state", web)
	}
	if rc.Rules[0].Label != "ping" || rc.Rules[0].Rule != `pass proto icmp icmp-type echo-request no state label "ping"` {
		t.Errorf("rule 1 shown as %q, label %q", rc.Rules[0].Rule, rc.Rules[0].Label)
	}

	writeRules(t, rules, `set default block
set invalid pass
pass proto icmp icmp-type echo-request no state label "ping"
block proto udp to any port 7778 label "udp"
pass proto tcp to any port 80 label "web"
`)
	if _, stderr, err := cli("reload", "--socket", sock); err != nil {
		t.Fatalf("reload: %v %s", err, stderr)
	}
	if got := pingCount(tp.client, serverV4, 5, pingSize); got != 5 {
		t.Fatalf("%d of 5 pings came back after the reload", got)
	}
	rc = rulesOf(t, sock)
	if g := rc.Rules[0]; g.Packets != n+5 || g.Bytes != (n+5)*(20+8+pingSize) {
		t.Errorf("ping rule after the reload: %d packets, %d bytes; want %d and %d", g.Packets, g.Bytes, n+5, (n+5)*(20+8+pingSize))
	}
	if g := rc.Rules[1]; g.Packets != 0 || g.Bytes != 0 || g.Evaluations != 0 {
		t.Errorf("the changed udp rule after the reload: %+v, want 0", g.RuleCount)
	}
	if g := rc.Rules[2]; g.Packets != 1 || g.States != 1 {
		t.Errorf("web rule after the reload: %+v, want its 1 packet and 1 state", g.RuleCount)
	}
	mt := scrape(t, tp.client, maddr)
	for k, want := range map[string]float64{
		`statewall_rule_packets_total{label="ping"}`: n + 5,
		`statewall_rule_packets_total{label="udp"}`:  m,
		`statewall_rule_bytes_total{label="udp"}`:    m * (20 + 8 + udpSize),
		`statewall_rule_states_total{label="web"}`:   1,
	} {
		if mt[k] != want {
			t.Errorf("%s = %v, want %v", k, mt[k], want)
		}
	}
}
