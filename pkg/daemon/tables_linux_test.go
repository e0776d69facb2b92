//go:build linux

package daemon

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The client has a second address, so that one source can be blocked or
// overloaded while the other keeps working.
const client2V4 = "198.18.1.3"

// connectScript tries n TCP connections from src to dst:port, gap apart,
// each with a 1 s timeout, and prints one word per try: ok, refused or
// timeout. A bounded loop of a real client (Python's socket module).
const connectScript = `
import socket, sys, time
src, dst, port, n, gap = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1)
    s.bind((src, 0))
    t0 = time.time()
    try:
        s.connect((dst, port))
        print("ok", flush=True)
    except ConnectionRefusedError:
        print("refused", flush=True)
    except OSError:
        print("timeout", flush=True)
    s.close()
    time.sleep(gap)
`

// udpScript sends a datagram from a connected UDP socket and prints
// refused when an ICMP unreachable comes back within 2 s, else timeout.
const udpScript = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect((sys.argv[1], int(sys.argv[2])))
s.send(b"x")
try:
    s.recv(100)
    print("answer")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("timeout", e)
`

func tries(out string) map[string]int {
	m := map[string]int{}
	for _, w := range strings.Fields(out) {
		m[w]++
	}
	return m
}

// TestTablesReturnOverload runs a router ruleset with a blocklist table
// loaded from an included file, block return towards the LAN, and a
// rate-limited service with overload, on the forward hook, and checks each
// live: include and the file's table; a run-time add that cuts a source's
// flood off within 100 ms while another source's connection goes on;
// curl's "Connection refused" for a TCP block return and an ICMP port
// unreachable for UDP; a brute force of connections overloaded into a
// table, its states flushed, while the second address keeps working.
func TestTablesReturnOverload(t *testing.T) {
	needRoot(t, "python3", "curl", "socat", "hping3", "nft")
	tp := newTopo(t)
	mustNS(t, tp.client, "", "ip", "addr", "add", client2V4+"/24", "dev", "eth0")
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("blocklist.txt", "# addresses nobody here talks to\n198.18.200.0/24\n198.18.201.7\n")
	write("blocklist.rules", "table <blocklist> file \"blocklist.txt\"\n")
	rulesFile := filepath.Join(dir, "router.rules")
	write("router.rules", `include "blocklist.rules"
table <bruteforce> persist
block return in on eth0 from { <blocklist>, <bruteforce> }
block return-rst in on eth0 proto tcp to port 8080
block return in on eth0 proto udp to port 5353
pass in on eth0 proto tcp to port 2222 keep state (max-src-conn-rate 4/60, overload <bruteforce> flush global)
pass in on eth0
pass out
`)
	tp.echoServer(t, 7)
	tp.echoServer(t, 2222)
	receiverCounters(t, tp.server, map[string]string{"flood": "udp dport 9999"})
	socket := filepath.Join(tp.dir, "tables.sock")
	d := tp.startDaemon(t, tp.router, socket, "--rules", rulesFile, "--hooks", "forward", "--log-file", "")

	// The included file's table, from its file.
	out, _, err := cli("table", "--socket", socket)
	if err != nil || !regexp.MustCompile(`<blocklist>\s+2\s`).MatchString(out) || !strings.Contains(out, "<bruteforce>") {
		t.Errorf("statewall table: %v\n%s", err, out)
	}
	if out, _, _ := cli("table", "--socket", socket, "blocklist", "test", "198.18.201.7", "198.18.1.2"); !strings.Contains(out, "198.18.201.7: in <blocklist> as 198.18.201.7") || !strings.Contains(out, "198.18.1.2: not in <blocklist>") {
		t.Errorf("table test: %s", out)
	}
	// Garbage is refused and changes nothing.
	if _, errOut, err := cli("table", "--socket", socket, "blocklist", "add", "198.18.0.300"); err == nil || !strings.Contains(errOut+err.Error(), "198.18.0.300") {
		t.Errorf("adding garbage: %v %s", err, errOut)
	}

	// A reload keeps a table's run-time content while its definition is
	// unchanged; a changed definition (here its file) starts it afresh.
	cli("table", "--socket", socket, "blocklist", "add", "198.18.202.1")
	if _, _, err := cli("reload", "--socket", socket); err != nil {
		t.Fatal(err)
	}
	if out, _, _ := cli("table", "--socket", socket, "blocklist", "test", "198.18.202.1"); !strings.Contains(out, "in <blocklist>") {
		t.Errorf("after a reload with the same definition, the run-time entry is gone: %s", out)
	}
	write("blocklist.txt", "# addresses nobody here talks to\n198.18.200.0/24\n198.18.201.7\n198.18.203.0/24\n")
	if _, _, err := cli("reload", "--socket", socket); err != nil {
		t.Fatal(err)
	}
	if out, _, _ := cli("table", "--socket", socket, "blocklist", "show"); strings.Contains(out, "198.18.202.1") || !strings.Contains(out, "198.18.203.0/24") {
		t.Errorf("after a reload with a changed file, <blocklist> is:\n%s", out)
	}

	// block return: refused at once, not a timeout.
	t0 := time.Now()
	_, cerr := inNS(tp.client, "", "curl", "-sS", "-o", "/dev/null", "--connect-timeout", "5", "http://"+serverV4+":8080/")
	if el := time.Since(t0); el > 2*time.Second {
		t.Errorf("curl to a return-rst port took %v; want a fast Connection refused", el)
	}
	if cerr == nil || !strings.Contains(cerr.Error(), "exit status 7") {
		t.Errorf("curl to a return-rst port: %v, want exit 7 (could not connect)", cerr)
	}
	if out, _ := inNS(tp.client, "", "python3", "-c", connectScript, clientV4, serverV4, "8080", "1", "0"); strings.TrimSpace(out) != "refused" {
		t.Errorf("connect to a return-rst port: %q, want refused (ECONNREFUSED: a RST came back)", out)
	}
	if out, _ := inNS(tp.client, "", "python3", "-c", udpScript, serverV4, "5353"); strings.TrimSpace(out) != "refused" {
		t.Errorf("UDP to a block return port: %q, want refused (ICMP port unreachable)", out)
	}

	// A run-time add cuts a flood off; another source's connection goes
	// on. hping3 sends each datagram from a new source port: new flows,
	// which the rules decide one by one.
	echo := tp.dialEcho(t, 7, 40007)
	flood := start(t, tp.client, "hping3", "--udp", "-a", clientV4, "-p", "9999", "-i", "u2000", "-c", "3000", serverV4)
	if !waitFor(5*time.Second, func() bool { return received(t, tp.server, "flood") > 100 }) {
		t.Fatal("the flood does not reach the server")
	}
	if out, _, err := cli("table", "--socket", socket, "blocklist", "add", clientV4); err != nil || !strings.Contains(out, "add 1, now 4 entries") {
		t.Fatalf("table add: %v %s", err, out)
	}
	time.Sleep(100 * time.Millisecond)
	cut := received(t, tp.server, "flood")
	time.Sleep(500 * time.Millisecond)
	if after := received(t, tp.server, "flood"); after != cut {
		t.Errorf("%d flood packets reached the server more than 100 ms after the add", after-cut)
	}
	if !echo.roundTrip(t, "still here", 2*time.Second) {
		t.Error("the other connection stopped when the flood's source was blocked")
	}
	flood.stop()
	if out, _, err := cli("table", "--socket", socket, "blocklist", "delete", clientV4); err != nil || !strings.Contains(out, "now 3 entries") {
		t.Fatalf("table delete: %v %s", err, out)
	}

	// Brute force from one address: four connections a minute pass, the
	// fifth completes a handshake past the rate and overloads the source
	// into <bruteforce>, whose block return refuses it from then on. The
	// second address keeps working meanwhile.
	out, _ = inNS(tp.client, "", "python3", "-c", connectScript, clientV4, serverV4, "2222", "10", "0.05")
	got := tries(out)
	if got["ok"] < 4 || got["ok"] > 5 || got["refused"] < 5 {
		t.Errorf("brute force: %v, want 4 (or 5: the fifth handshake completes on the client's side before it is killed) ok and the rest refused\n%s", got, out)
	}
	if out, _, _ := cli("table", "--socket", socket, "bruteforce", "show"); strings.TrimSpace(out) != clientV4 {
		t.Errorf("<bruteforce> holds %q, want %s", out, clientV4)
	}
	out, _ = inNS(tp.client, "", "python3", "-c", connectScript, client2V4, serverV4, "2222", "3", "0.05")
	if got := tries(out); got["ok"] != 3 {
		t.Errorf("the second address: %v, want 3 ok", got)
	}
	// The second address's connections (one held open, three closing)
	// show as its source node of rule 4, with its rate.
	start(t, tp.client, "socat", "TCP:"+serverV4+":2222,bind="+client2V4, "EXEC:sleep 20")
	if !waitFor(5*time.Second, func() bool {
		out, _, _ := cli("conntrack", "--socket", socket, "--sources", "--addr", client2V4)
		return regexp.MustCompile(`(?m)^4\s+` + regexp.QuoteMeta(client2V4) + `\s+[1-9]\d*\s+[1-9]\d*\s+\d`).MatchString(out)
	}) {
		out, _, _ := cli("conntrack", "--socket", socket, "--sources")
		t.Errorf("conntrack --sources does not show the connections of %s under rule 4:\n%s", client2V4, out)
	}
	conns, _, _ := cli("conntrack", "--socket", socket, "--addr", clientV4, "--port", "2222")
	if strings.Contains(conns, "ESTABLISHED") {
		t.Errorf("the overloaded source still has established states:\n%s", conns)
	}
	s := statusOf(t, socket)
	overloads := 0
	for k, n := range s.ByReason {
		if strings.Contains(k, "overload") {
			overloads += int(n)
		}
	}
	if overloads == 0 {
		t.Errorf("status counts no overload: %v", s.ByReason)
	}
	if s.Sources == nil || s.Sources.Overloads < 1 || s.Sources.Inserted < 2 {
		t.Errorf("status sources: %+v, want the overload and the two sources' nodes counted", s.Sources)
	}
	if s.Replies == nil || s.Replies.Sent < 5 {
		t.Errorf("replies: %+v, want at least the refusals counted", s.Replies)
	}
	tp.stopClean(t, d)
	t.Logf("brute force: %s", strconv.Quote(out))
}
