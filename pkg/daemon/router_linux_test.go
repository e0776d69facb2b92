//go:build linux

package daemon

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRouterRuleset runs rules/router.rules, the pf-style router, on the
// router's forward hook, with a third namespace further out behind the
// server (198.18.3.2, routed through the server):
//
//	client (LAN, eth0) -- router -- (eth1, outside) server -- outside
//
// The client is the LAN's web server. It checks, live: the LAN reaches
// out; the outside reaches the port forward and nothing else; forged
// sources (a LAN address, the router's own) arriving from outside are
// blocked by antispoof while real LAN traffic passes; the LAN interface
// renamed, and deleted and re-created, is matched by name again; and the
// log rules produce a capture that tcpdump reads back with the right rule
// numbers and actions, the same records `statewall log` shows live.
func TestRouterRuleset(t *testing.T) {
	needRoot(t, "curl", "python3", "hping3", "tcpdump", "nft")
	tp := newTopo(t)
	outside := newNamespace(t)
	ip := func(args ...string) {
		t.Helper()
		if _, _, err := command(10*time.Second, "", "ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	const outsideV4, serverOutV4 = "198.18.3.2", "198.18.3.1"
	ip("-n", tp.server, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", outside)
	ip("-n", tp.server, "addr", "add", serverOutV4+"/24", "dev", "eth1")
	ip("-n", outside, "addr", "add", outsideV4+"/24", "dev", "eth0")
	ip("-n", tp.server, "link", "set", "eth1", "up")
	ip("-n", outside, "link", "set", "eth0", "up")
	ip("-n", outside, "link", "set", "lo", "up")
	ip("-n", outside, "route", "add", "default", "via", serverOutV4)
	ip("-n", tp.router, "route", "add", "198.18.3.0/24", "via", serverV4)
	mustNS(t, tp.server, "", "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// Reverse-path filtering would drop the forged packets before the
	// forward hook: this test is about statewall's antispoof, not the
	// kernel's.
	for _, ns := range []string{tp.router, tp.server} {
		mustNS(t, ns, "", "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
		for _, dev := range []string{"eth0", "eth1"} {
			inNS(ns, "", "sysctl", "-qw", "net.ipv4.conf."+dev+".rp_filter=0")
		}
	}
	if !waitFor(5*time.Second, func() bool { return pingOK(outside, clientV4, 1) }) {
		t.Fatal("the outside namespace does not reach the client")
	}

	// The LAN's web server (the port forward) and another service on the
	// client; a web server on the server for the LAN to reach.
	www := filepath.Join(tp.dir, "lanwww")
	mustNS(t, "", "", "mkdir", "-p", www)
	mustNS(t, "", "", "sh", "-c", "echo lan > "+filepath.Join(www, "index.html"))
	start(t, tp.client, "python3", "-m", "http.server", "80", "--bind", "::", "--directory", www)
	start(t, tp.client, "python3", "-m", "http.server", "8080", "--bind", "::", "--directory", www)
	listening(t, tp.client, "tcp", 80)
	listening(t, tp.client, "tcp", 8080)
	tp.httpServer(t)
	receiverCounters(t, tp.client, map[string]string{
		"forged": "ip saddr { 198.18.1.77, 198.18.1.1 } tcp dport 80",
		"real":   "ip saddr " + outsideV4 + " tcp dport 80",
	})

	logFile := filepath.Join(tp.dir, "pflog.pcap")
	socket := filepath.Join(tp.dir, "router.sock")
	d := tp.startDaemon(t, tp.router, socket, "--rules", "../../rules/router.rules", "--hooks", "forward", "--log-file", logFile)
	if out := d.out.String(); strings.Contains(out, "warning") && strings.Contains(out, "no interface") {
		t.Errorf("the daemon warned about interfaces the router has:\n%s", out)
	}
	live := start(t, tp.router, statewallBin, "log", "--socket", socket)
	time.Sleep(300 * time.Millisecond) // subscribed before the first logged packet

	// The LAN reaches out; the outside reaches the port forward only.
	if !curl(tp.client, "http://"+serverV4+"/", 3) || !curl(tp.client, "http://["+serverV6+"]/", 3) {
		t.Error("the LAN cannot reach the outside (IPv4 and IPv6)")
	}
	if !curl(outside, "http://"+clientV4+"/", 3) {
		t.Error("the outside cannot reach the LAN's web server (the port forward)")
	}
	if curl(outside, "http://"+clientV4+":8080/", 2) {
		t.Error("the outside reached port 8080 on the LAN: 'block in log on eth1' did not hold")
	}
	if curl(tp.server, "http://"+clientV4+":8080/", 2) {
		t.Error("the server opened a connection to the LAN's port 8080")
	}

	// Direct mail from the LAN is refused at once (block return: a RST),
	// not left to time out.
	if out, _ := inNS(tp.client, "", "python3", "-c", connectScript, clientV4, serverV4, "25", "1", "0"); strings.TrimSpace(out) != "refused" {
		t.Errorf("SMTP from the LAN: %q, want refused (block return)", out)
	}

	// The blocklist, from rules/blocklist.txt, changed at run time: the
	// outside host is cut off the port forward, then let in again.
	if out, _, _ := cli("table", "--socket", socket, "blocklist", "test", "198.18.251.17"); !strings.Contains(out, "in <blocklist>") {
		t.Errorf("<blocklist> does not hold the file's entry: %s", out)
	}
	if out, _, err := cli("table", "--socket", socket, "blocklist", "add", outsideV4); err != nil {
		t.Fatalf("table add: %v %s", err, out)
	}
	if curl(outside, "http://"+clientV4+"/", 2) {
		t.Error("a blocklisted host reached the port forward")
	}
	cli("table", "--socket", socket, "blocklist", "delete", outsideV4)
	if !curl(outside, "http://"+clientV4+"/", 3) {
		t.Error("taken off the blocklist, the host still cannot reach the port forward")
	}

	// Forged sources from outside, towards the port forward that would
	// pass them: a LAN address, and the router's own LAN address (which
	// the kernel itself drops as a martian before the forward hook).
	realBefore := received(t, tp.client, "real")
	for _, src := range []string{"198.18.1.77", routerCV4} {
		if out, err := inNS(outside, "", "timeout", "10", "hping3", "-q", "-S", "-a", src, "-p", "80", "-c", "3", "-i", "u20000", clientV4); err != nil && !strings.Contains(out+err.Error(), "3 packets transmitted") {
			t.Fatalf("hping3 -a %s: %v\n%s", src, err, out)
		}
	}
	if _, err := inNS(outside, "", "timeout", "10", "hping3", "-q", "-S", "-p", "80", "-c", "3", "-i", "u20000", clientV4); err != nil {
		t.Logf("hping3 (real source): %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := received(t, tp.client, "forged"); n != 0 {
		t.Errorf("%d forged packets reached the client", n)
	}
	if n := received(t, tp.client, "real") - realBefore; n < 3 {
		t.Errorf("%d of the 3 SYNs from the outside's real address reached the client", n)
	}

	// A source hammering the port forward: 10 connections in 10 s pass,
	// the next overloads it into <abusers>, whose block cuts it off; the
	// server, another outside address, keeps its access. (One curl above
	// already counted towards the rate.)
	out, _ := inNS(outside, "", "python3", "-c", connectScript, outsideV4, clientV4, "80", "14", "0.02")
	got := tries(out)
	if got["ok"] < 8 || got["ok"] > 11 || got["timeout"] < 3 {
		t.Errorf("hammering the port forward: %v, want about 10 ok and the rest timing out\n%s", got, out)
	}
	if out, _, _ := cli("table", "--socket", socket, "abusers", "show"); strings.TrimSpace(out) != outsideV4 {
		t.Errorf("<abusers> holds %q, want %s", out, outsideV4)
	}
	if !curl(tp.server, "http://"+clientV4+"/", 3) {
		t.Error("another outside address lost the port forward when one was overloaded")
	}

	// Renamed, the LAN interface is no longer eth0: 'pass in on eth0'
	// does not match it, and the LAN is cut off; named eth0 again, it is.
	// Then deleted and re-created under the same name (a new index).
	lanUp := func() bool { return curl(tp.client, "http://"+serverV4+"/", 2) }
	ip("-n", tp.router, "link", "set", "eth0", "down")
	ip("-n", tp.router, "link", "set", "eth0", "name", "lanold")
	ip("-n", tp.router, "link", "set", "lanold", "up")
	time.Sleep(300 * time.Millisecond)
	if lanUp() {
		t.Error("with eth0 renamed lanold, the LAN still passes 'pass in on eth0'")
	}
	ip("-n", tp.router, "link", "set", "lanold", "down")
	ip("-n", tp.router, "link", "set", "lanold", "name", "eth0")
	ip("-n", tp.router, "link", "set", "eth0", "up")
	if !waitFor(5*time.Second, lanUp) {
		t.Error("named eth0 again, the LAN interface is not matched by name")
	}
	ip("-n", tp.router, "link", "del", "eth0")
	ip("-n", tp.client, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", tp.router)
	for _, a := range []struct{ ns, addr string }{{tp.client, clientV4 + "/24"}, {tp.router, routerCV4 + "/24"}} {
		ip("-n", a.ns, "addr", "add", a.addr, "dev", "eth0")
		ip("-n", a.ns, "link", "set", "eth0", "up")
	}
	ip("-n", tp.client, "route", "replace", "default", "via", routerCV4)
	if !waitFor(5*time.Second, lanUp) {
		t.Error("deleted and re-created as eth0, the LAN interface is not matched by name")
	}
	// Antispoof follows the re-created interface's addresses too.
	inNS(outside, "", "timeout", "10", "hping3", "-q", "-S", "-a", "198.18.1.78", "-p", "80", "-c", "2", "-i", "u20000", clientV4)
	time.Sleep(300 * time.Millisecond)
	if n := received(t, tp.client, "forged"); n != 0 {
		t.Errorf("%d forged packets reached the client after the interface was re-created", n)
	}

	// The log: tcpdump reads the file; each line names its rule and
	// action. Rules 1-2 are antispoof, 3 the blocklists, 5 'block in log
	// on eth1', 6 the refused SMTP.
	tp.stopClean(t, d)
	out, err := inNS("", "", "tcpdump", "-n", "-e", "-r", logFile)
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v\n%s", logFile, err, out)
	}
	count := func(s string) int { return strings.Count(out, s) }
	if n := count("rule 1/0(match): block in on eth1: 198.18.1.77.") + count("rule 1/0(match): block in on eth1: 198.18.1.78."); n < 5 {
		t.Errorf("%d antispoof records for the forged LAN sources, want 5:\n%s", n, out)
	}
	// The router's own address from outside never reaches the forward
	// hook: the kernel drops a packet with a local source as a martian
	// first (ip_route_input_slow), so it is neither logged nor received.
	if n := count("rule 5/0(match): block in on eth1: "); n < 2 {
		t.Errorf("%d records of 'block in log on eth1' (port 8080 from outside and from the server), want at least 2:\n%s", n, out)
	}
	if n := count("rule 3/0(match): block in on eth1: " + outsideV4); n < 2 {
		t.Errorf("%d records of the blocklist rule for the blocklisted and overloaded host, want at least 2:\n%s", n, out)
	}
	if n := count("rule 6/0(match): block in on eth0: " + clientV4); n < 1 {
		t.Errorf("%d records of the refused SMTP, want 1:\n%s", n, out)
	}
	if count("pass") != 0 {
		t.Errorf("passed packets logged, but no pass rule logs:\n%s", out)
	}
	// `statewall log` showed the same records live.
	liveOut := live.out.String()
	fileLines := strings.Count(strings.TrimSpace(out), "\n") + 1
	liveLines := strings.Count(liveOut, "rule ")
	if liveLines != fileLines || !strings.Contains(liveOut, "rule 1/0(match): block in on eth1: 198.18.1.77") {
		t.Errorf("statewall log showed %d records, the file has %d:\n%s", liveLines, fileLines, liveOut)
	}
	t.Logf("logged %s records; tcpdump:\n%s", strconv.Itoa(fileLines), out)
}
