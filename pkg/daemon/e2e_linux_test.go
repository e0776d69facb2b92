//go:build linux

package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/nfq"
)

func testdata(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRouterOutboundOnly: a router that lets the client side open
// connections and nothing else. Stateful, the replies pass as established:
// curl (IPv4 and IPv6), ping, DNS and a fragmented ping work. Stateless,
// the same rules block the replies and all of it fails.
func TestRouterOutboundOnly(t *testing.T) {
	needRoot(t, "curl", "python3", "ping", "dig", "dnsmasq", "ss")
	tp := newTopo(t)
	tp.httpServer(t)
	tp.dnsServer(t)
	rules := testdata(t, "outbound.rules")
	sock := filepath.Join(tp.dir, "router.sock")

	t.Run("stateful", func(t *testing.T) {
		d := tp.startDaemon(t, tp.router, sock, "--rules", rules, "--mode", "stateful", "--hooks", "forward")
		if !curl(tp.client, "http://"+serverV4+"/", 3) {
			t.Error("curl over IPv4: the replies should pass as established")
		}
		if !curl(tp.client, "http://["+serverV6+"]/", 3) {
			t.Error("curl over IPv6: the replies should pass as established")
		}
		if n := pingCount(tp.client, serverV4, 3, 0); n != 3 {
			t.Errorf("ping: %d of 3 replies", n)
		}
		if !dig(tp.client) {
			t.Error("dig: the DNS answer should pass as established")
		}
		// 3000 bytes do not fit the 1500-byte MTU: the kernel reassembles
		// before the divert rules (nfq.EnableDefrag) and the engines see whole
		// datagrams; conntrack would call every fragment invalid.
		if n := pingCount(tp.client, serverV4, 2, 3000); n != 2 {
			t.Errorf("fragmented ping: %d of 2 replies", n)
		}
		if n := pingCount(tp.client, serverV6, 2, 3000); n != 2 {
			t.Errorf("fragmented ping over IPv6: %d of 2 replies", n)
		}
		// Defragmentation without the kernel's own connection tracking
		// (pkg/nfq/defrag.go): unless this kernel lacks nft_tproxy and the daemon
		// fell back to a ct rule, the kernel tracked none of the above.
		if table := mustNS(t, tp.router, "", "nft", "list", "table", "inet", "statewall-defrag-STATEWALL"); strings.Contains(table, "tproxy") {
			if n, err := inNS(tp.router, "", "cat", "/proc/sys/net/netfilter/nf_conntrack_count"); err == nil && strings.TrimSpace(n) != "0" {
				t.Errorf("the kernel tracks %s connections: its conntrack is on", strings.TrimSpace(n))
			}
		} else {
			t.Logf("no nft_tproxy here: the daemon switched on the kernel's conntrack for defragmentation:\n%s", table)
		}
		// The other way is closed: it is a filter.
		if n := pingCount(tp.server, clientV4, 2, 0); n != 0 {
			t.Errorf("the server side reached the client side: %d of 2 pings", n)
		}
		st := statusOf(t, sock)
		if st.Mode != "stateful" || st.ByReason["pass state"] == 0 || st.ByReason["pass rule"] == 0 || st.ByReason["block default"] == 0 {
			t.Errorf("status: %+v", st)
		}
		tp.stopClean(t, d)
	})

	t.Run("stateless", func(t *testing.T) {
		d := tp.startDaemon(t, tp.router, sock, "--rules", rules, "--mode", "stateless", "--hooks", "forward")
		if curl(tp.client, "http://"+serverV4+"/", 1) {
			t.Error("curl over IPv4 worked: stateless, the rules block the replies")
		}
		if curl(tp.client, "http://["+serverV6+"]/", 1) {
			t.Error("curl over IPv6 worked: stateless, the rules block the replies")
		}
		if n := pingCount(tp.client, serverV4, 2, 0); n != 0 {
			t.Errorf("ping: %d replies passed", n)
		}
		if dig(tp.client) {
			t.Error("dig got an answer: stateless, the rules block it")
		}
		st := statusOf(t, sock)
		if st.Mode != "stateless" || st.ByReason["block default"] == 0 || st.ByReason["pass rule"] == 0 || st.ByReason["pass state"] != 0 {
			t.Errorf("status: %+v", st)
		}
		tp.stopClean(t, d)
	})
}

// TestHostScansStatelessVsStateful: the server is the host, running the
// stateless "ACK from port 80" ruleset on input and output. An nmap ACK
// scan and out-of-window data injected with hping3 on a live connection
// reach the server's TCP stateless, and none of it does stateful; the live
// connection works in both modes. The packets are counted at the receiver,
// by an nft counter that runs after statewall's verdict.
func TestHostScansStatelessVsStateful(t *testing.T) {
	needRoot(t, "socat", "nmap", "hping3", "tcpdump", "ss")
	tp := newTopo(t)
	tp.echoServer(t, 80)
	receiverCounters(t, tp.server, map[string]string{
		"ackscan": "tcp sport 55555 tcp flags & (fin|syn|rst|ack) == ack",
		"oow":     "tcp sport { 40000, 40001 } ip length 373", // hping3 -d 333
	})
	rules := testdata(t, "host-stateless-ack.rules")
	sock := filepath.Join(tp.dir, "host.sock")

	for i, mode := range []string{"stateless", "stateful"} {
		t.Run(mode, func(t *testing.T) {
			d := tp.startDaemon(t, tp.server, sock, "--rules", rules, "--mode", mode, "--hooks", "input,output")
			sport := 40000 + i
			capt := tp.captureConn(t, sport)
			e := tp.dialEcho(t, 80, sport)
			isnC, isnS := capt.isns(t)
			ackBefore, oowBefore := received(t, tp.server, "ackscan"), received(t, tp.server, "oow")

			nmapACKScan(t, tp.client)
			injectOutOfWindow(t, tp.client, sport, isnC, isnS, e, 3)

			acks := received(t, tp.server, "ackscan") - ackBefore
			oow := received(t, tp.server, "oow") - oowBefore
			t.Logf("%s: %d ACK-scan probes and %d out-of-window segments reached the server", mode, acks, oow)
			switch mode {
			case "stateless":
				if acks != 3 || oow != 3 {
					t.Errorf("stateless should pass the 3 ACK probes and the 3 out-of-window segments: got %d and %d", acks, oow)
				}
			case "stateful":
				if acks != 0 || oow != 0 {
					t.Errorf("stateful should drop the ACK probes and the out-of-window segments: %d and %d got through", acks, oow)
				}
				st := statusOf(t, sock)
				if st.ByReason["block invalid"] < 3 || st.ByReason["block default"] < 3 {
					t.Errorf("status should count 3 invalid and 3 default blocks at least: %v", st.ByReason)
				}
			}
			// The real connection lives on in both modes.
			if !e.roundTrip(t, "still there", 3*time.Second) {
				out, _, _ := cli("conntrack", "--socket", sock)
				t.Errorf("the live connection stopped working (client ISN %d, server ISN %d)\nstatus: %+v\nconntrack:\n%s",
					isnC, isnS, statusOf(t, sock).ByReason, out)
			}
			tp.stopClean(t, d)
		})
	}
}

// nmapACKScan sends one bare ACK (nmap -sA, no retries) from port 55555 of
// the client to each of the server's ports 22, 80 and 443.
func nmapACKScan(t *testing.T, ns string) {
	t.Helper()
	out, err := inNS(ns, "", "timeout", "30", "nmap", "-n", "-Pn", "--send-ip", "-e", "eth0", "-sA", "-g", "55555",
		"-p", "22,80,443", "--max-retries", "0", "-T4", "--host-timeout", "20s", serverV4)
	if err != nil || !strings.Contains(out, "Nmap done") {
		t.Fatalf("nmap: %v\n%s", err, out)
	}
}

// injectOutOfWindow sends n data segments of 333 bytes with hping3 on the
// live connection from sport, with a correct ACK and a sequence number 2^30
// past the one the server expects: far outside the window. e must be
// quiet (no line in flight) so that the numbers are exact.
func injectOutOfWindow(t *testing.T, ns string, sport int, isnC, isnS uint32, e *echoConn, n int) {
	t.Helper()
	sent := uint32(e.written.Load()) // every byte written came back: the echo is quiet
	rcvNxt := isnC + 1 + sent        // the next byte the server expects
	sndNxt := isnS + 1 + sent        // the server's next byte: a valid ACK
	seq := rcvNxt + 1<<30
	out, err := inNS(ns, "", "timeout", "10", "hping3", "-I", "eth0", "-s", strconv.Itoa(sport), "-k", "-p", "80",
		"-c", strconv.Itoa(n), "-i", "u100000", "-A", "-P", "-d", "333",
		"-M", strconv.FormatUint(uint64(seq), 10), "-L", strconv.FormatUint(uint64(sndNxt), 10), serverV4)
	// hping3 exits 1 when nothing answers, which is the point stateful.
	if err != nil && !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("hping3: %v\n%s", err, out)
	}
	time.Sleep(200 * time.Millisecond) // the last segment reaches the server
}

// TestShadowCountsDisagreements runs the daemon in this process (under the
// race detector) in shadow mode on the host: it enforces stateful verdicts
// and counts the packets the stateless verdict would have passed. Exactly
// the injected packets must be counted: 5 bare ACKs from ports 50000-50004
// (ct new, no connection)
// and 3 out-of-window segments (ct invalid), and none of them reaches the
// server; the live connection's own packets agree.
func TestShadowCountsDisagreements(t *testing.T) {
	needRoot(t, "socat", "hping3", "tcpdump", "curl", "ss")
	tp := newTopo(t)
	tp.echoServer(t, 80)
	receiverCounters(t, tp.server, map[string]string{
		"acks": "ip ttl 76 tcp dport 80", // hping3 -t 77, one hop
		"oow":  "tcp sport 40002 ip length 373",
	})
	tp.siteRules(t, tp.server)
	sock := filepath.Join(tp.dir, "shadow.sock")
	logs := &syncBuffer{}
	d, err := New(Config{
		RulesFile:            testdata(t, "host-stateless-ack.rules"),
		Mode:                 Shadow,
		Hooks:                []nfq.Hook{nfq.HookInput, nfq.HookOutput},
		Netns:                tp.server,
		MetricsAddr:          serverV4 + ":9090",
		ControlSocket:        sock,
		DisagreementLogEvery: time.Millisecond,
	}, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	stopped := false
	stop := func() error {
		stopped = true
		cancel()
		select {
		case err := <-runErr:
			return err
		case <-time.After(20 * time.Second):
			return fmt.Errorf("Run did not return within 20 s of cancel")
		}
	}
	t.Cleanup(func() {
		if !stopped {
			if err := stop(); err != nil {
				t.Error(err)
			}
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	if !waitFor(20*time.Second, func() bool { return strings.Contains(logs.String(), "statewall running") }) {
		t.Fatalf("the daemon did not start:\n%s", logs.String())
	}

	const sport = 40002
	capt := tp.captureConn(t, sport)
	e := tp.dialEcho(t, 80, sport)
	isnC, isnS := capt.isns(t)
	out, err := inNS(tp.client, "", "timeout", "10", "hping3", "-I", "eth0", "-A", "-s", "50000", "-p", "80", "-t", "77",
		"-c", "5", "-i", "u50000", serverV4)
	if err != nil && !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("hping3: %v\n%s", err, out)
	}
	injectOutOfWindow(t, tp.client, sport, isnC, isnS, e, 3)
	if !e.roundTrip(t, "still there", 3*time.Second) {
		t.Error("the live connection stopped working")
	}

	if a, o := received(t, tp.server, "acks"), received(t, tp.server, "oow"); a != 0 || o != 0 {
		t.Errorf("shadow mode enforces stateful verdicts, yet %d bare ACKs and %d out-of-window segments reached the server", a, o)
	}
	m := scrape(t, tp.server, serverV4+":9090")
	want := map[string]float64{
		`statewall_shadow_disagreements_total{ct="new",kind="only_stateless_passes"}`:     5,
		`statewall_shadow_disagreements_total{ct="invalid",kind="only_stateless_passes"}`: 3,
	}
	for k, v := range m {
		if strings.HasPrefix(k, "statewall_shadow_disagreements_total") && want[k] != v {
			t.Errorf("%s = %v, want %v", k, v, want[k])
		}
	}
	for k := range want {
		if _, ok := m[k]; !ok {
			t.Errorf("%s missing from the metrics", k)
		}
	}
	wantStatus := map[string]uint64{"only_stateless_passes new": 5, "only_stateless_passes invalid": 3}
	for _, st := range []Status{d.Status(), statusOf(t, sock)} {
		if fmt.Sprint(st.Shadow) != fmt.Sprint(wantStatus) || st.Mode != "shadow" {
			t.Errorf("status: mode %s, shadow disagreements %v, want %v", st.Mode, st.Shadow, wantStatus)
		}
	}
	if !strings.Contains(logs.String(), "shadow disagreement") {
		t.Error("no disagreement was logged")
	}
	e.stopTicking()
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	tp.checkClean(t, tp.server)
}

// TestKill9MidTransfer kills the router's statewall with SIGKILL while a
// connection exchanges a line every 100 ms through it. With --fail-open
// the kernel passes the traffic while nobody reads the queue; without, it
// drops it. A restart replaces the dead run's divert rules and stale
// socket, picks the connection up mid-stream and the lines flow again; a
// clean stop then leaves the ruleset as it was.
func TestKill9MidTransfer(t *testing.T) {
	for _, failOpen := range []bool{true, false} {
		name := "fail-closed"
		if failOpen {
			name = "fail-open"
		}
		t.Run(name, func(t *testing.T) {
			needRoot(t, "socat", "ping", "ss")
			tp := newTopo(t)
			tp.echoServer(t, 7000)
			sock := filepath.Join(tp.dir, "router.sock")
			args := []string{"--rules", testdata(t, "outbound-midstream.rules"), "--hooks", "forward"}
			if failOpen {
				args = append(args, "--fail-open")
			}
			d := tp.startDaemon(t, tp.router, sock, args...)
			e := tp.dialEcho(t, 7000, 41000)
			e.tick(100*time.Millisecond, 600)
			if !e.flows(5, 3*time.Second) {
				t.Fatal("the echo connection does not flow through the router")
			}

			d.kill9(t)
			if !strings.Contains(ruleset(t, tp.router), "STATEWALL-FORWARD") {
				t.Error("after kill -9 the divert rules should still be there: nobody removed them")
			}
			if failOpen {
				if !e.flows(10, 3*time.Second) {
					t.Error("fail-open: the connection should keep flowing while statewall is dead")
				}
				if !pingOK(tp.client, serverV4, 2) {
					t.Error("fail-open: new traffic should pass while statewall is dead")
				}
			} else {
				time.Sleep(300 * time.Millisecond) // lines that were already on their way
				if !e.silent(1500 * time.Millisecond) {
					t.Error("fail-closed: lines still come back while statewall is dead")
				}
				if n := pingCount(tp.client, serverV4, 2, 0); n != 0 {
					t.Errorf("fail-closed: %d pings passed while statewall is dead", n)
				}
			}
			if _, err := os.Lstat(sock); err != nil {
				t.Errorf("the dead daemon's socket should be left behind: %v", err)
			}

			d2 := tp.startDaemon(t, tp.router, sock, args...)
			if !e.flows(5, 15*time.Second) {
				t.Error("after the restart the connection does not flow again")
			}
			if !pingOK(tp.client, serverV4, 2) {
				t.Error("after the restart ping does not pass")
			}
			out, _, err := cli("conntrack", "--socket", sock, "--json", "--port", "41000")
			var conns []Conn
			if err == nil {
				err = json.Unmarshal([]byte(out), &conns)
			}
			if err != nil || len(conns) != 1 {
				t.Errorf("the restarted daemon should track the resumed connection: %v %q", err, out)
			}
			e.stopTicking()
			tp.stopClean(t, d2)
		})
	}
}

// TestReload: a reload with a broken ruleset is rejected and the old one
// keeps enforcing; a good reload (SIGHUP) to a ruleset that blocks new
// connections to the echo port changes the verdicts at once while the
// established echo connection keeps exchanging a line every 100 ms.
func TestReload(t *testing.T) {
	needRoot(t, "socat", "curl", "python3", "ss")
	tp := newTopo(t)
	tp.httpServer(t)
	tp.echoServer(t, 7000)
	rules := copyRules(t, testdata(t, "outbound.rules"), filepath.Join(tp.dir, "statewall.rules"))
	sock := filepath.Join(tp.dir, "router.sock")
	maddr := routerCV4 + ":9090"
	d := tp.startDaemon(t, tp.router, sock, "--rules", rules, "--hooks", "forward", "--metrics", maddr)
	e := tp.dialEcho(t, 7000, 42000)
	e.tick(100*time.Millisecond, 600)
	if !e.flows(5, 3*time.Second) {
		t.Fatal("the echo connection does not flow through the router")
	}
	if !connects(tp.client, 7000) {
		t.Fatal("a new echo connection should be allowed by outbound.rules")
	}

	writeRules(t, rules, "set default block\npass frm any\n")
	_, stderr, err := cli("reload", "--socket", sock)
	if err == nil || !strings.Contains(stderr, "reload rejected") || !strings.Contains(stderr, "statewall.rules:2:") {
		t.Errorf("reload of a broken ruleset: err %v, stderr %q; want it rejected with file:line:col", err, stderr)
	}
	if st := statusOf(t, sock); st.Rules != 1 {
		t.Errorf("after a rejected reload the status shows %d rules, want the old 1", st.Rules)
	}
	if !connects(tp.client, 7000) {
		t.Error("after a rejected reload the old ruleset should still allow new echo connections")
	}

	copyRules(t, testdata(t, "outbound-no-echo.rules"), rules)
	before := e.got.Load()
	d.cmd.Process.Signal(syscall.SIGHUP)
	if !waitFor(5*time.Second, func() bool { return statusOf(t, sock).Rules == 2 }) {
		t.Fatal("SIGHUP did not load the new ruleset")
	}
	if connects(tp.client, 7000) {
		t.Error("after the reload a new echo connection got through")
	}
	if !curl(tp.client, "http://"+serverV4+"/", 3) {
		t.Error("after the reload curl should still work")
	}
	if !e.flows(10, 3*time.Second) {
		t.Error("the established echo connection stopped at the reload")
	}
	if got := e.got.Load() - before; got < 15 {
		t.Errorf("only %d lines came back around the reload", got)
	}
	m := scrape(t, tp.client, maddr)
	if m[`statewall_reloads_total{result="error"}`] != 1 || m[`statewall_reloads_total{result="ok"}`] != 1 {
		t.Errorf("reload metrics: error %v, ok %v; want 1 and 1",
			m[`statewall_reloads_total{result="error"}`], m[`statewall_reloads_total{result="ok"}`])
	}

	// A clean stop under a ping every 2 ms: the divert rules go first, then
	// the queue drains, so not one packet is lost on the way (without
	// FailOpen, a packet diverted to a queue that no longer takes any is
	// dropped).
	flood := start(t, tp.client, "ping", "-n", "-q", "-i", "0.002", "-c", "1000", "-W", "1", "-w", "10", serverV4)
	time.Sleep(500 * time.Millisecond)
	tp.stopClean(t, d)
	if !e.flows(5, 3*time.Second) {
		t.Error("the echo connection stopped at the clean stop")
	}
	e.stopTicking()
	select {
	case <-flood.done:
	case <-time.After(15 * time.Second):
		t.Fatal("ping did not finish")
	}
	if m := pingSummary.FindStringSubmatch(flood.out.String()); m == nil || m[1] != m[2] {
		t.Errorf("pings lost across the clean stop: %s", flood.out.String())
	}
	// Neither end lost a segment of the echo connection, across both
	// reloads and the stop.
	for _, ns := range []string{tp.client, tp.server} {
		if n := retransmissions(t, ns, 7000); n != 0 {
			t.Errorf("%d retransmissions on the echo connection in %s: a packet was dropped", n, ns)
		}
	}
}

// connects reports whether a new TCP connection from ns to the server's
// port opens within 1 s.
func connects(ns string, port int) bool {
	_, err := inNS(ns, "", "socat", "-u", "OPEN:/dev/null",
		fmt.Sprintf("TCP:%s:%d,connect-timeout=1", serverV4, port))
	return err == nil
}

// TestStatusConntrackAndControlSocket: `statewall status` and `statewall
// conntrack` against the running daemon (conntrack lists curl's connection
// with its tuples), and the control socket refuses anyone but root: its
// mode (0600) keeps nobody from connecting, and nobody with
// CAP_DAC_OVERRIDE, who gets past the mode, is refused by the daemon's
// SO_PEERCRED check.
func TestStatusConntrackAndControlSocket(t *testing.T) {
	needRoot(t, "curl", "python3", "setpriv", "ss")
	tp := newTopo(t)
	tp.httpServer(t)
	sock := filepath.Join(tp.dir, "router.sock")
	d := tp.startDaemon(t, tp.router, sock, "--rules", testdata(t, "outbound.rules"), "--hooks", "forward")

	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v, want a socket with 0600", fi.Mode())
	}

	if !curl(tp.client, "http://"+serverV4+"/", 3, "--local-port", "40123") {
		t.Fatal("curl through the router failed")
	}
	orig := "src=198.18.1.2 dst=198.18.2.2 sport=40123 dport=80"
	reply := "src=198.18.2.2 dst=198.18.1.2 sport=80 dport=40123"
	out, _, err := cli("conntrack", "--socket", sock)
	if err != nil || !strings.Contains(out, orig) || !strings.Contains(out, reply) || !strings.Contains(out, "[ASSURED]") {
		t.Errorf("statewall conntrack: %v\n%s", err, out)
	}
	out, _, err = cli("conntrack", "--socket", sock, "--json", "--addr", clientV4, "--port", "40123", "--proto", "tcp")
	var conns []Conn
	if err == nil {
		err = json.Unmarshal([]byte(out), &conns)
	}
	if err != nil || len(conns) != 1 {
		t.Fatalf("statewall conntrack --json: %v %q", err, out)
	}
	if c := conns[0]; c.Proto != "tcp" || c.Original.String() != orig || c.Reply.String() != reply || !c.Assured || c.Packets[0] < 3 || c.Packets[1] < 3 {
		t.Errorf("curl's connection: %+v", c)
	}
	out, _, err = cli("status", "--socket", sock)
	for _, want := range []string{"mode:      stateful (fail-open: false)", "hooks:     forward in netns " + tp.router, "pass state", "queue 0:"} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("statewall status: %v: %q missing in\n%s", err, want, out)
		}
	}

	asNobody := []string{"--reuid=65534", "--regid=65534", "--clear-groups"}
	withDAC := append(append([]string{}, asNobody...), "--inh-caps=+dac_override", "--ambient-caps=+dac_override")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"nobody", asNobody, "permission denied"},
		{"nobody with CAP_DAC_OVERRIDE", withDAC, "only root may control statewall"},
	} {
		for _, sub := range []string{"status", "reload"} {
			args := append(append(append([]string{}, c.args...), statewallBin, sub), "--socket", sock)
			_, stderr, err := command(30*time.Second, "", "setpriv", args...)
			if err == nil || !strings.Contains(stderr, c.want) {
				t.Errorf("%s: statewall %s: err %v, stderr %q; want refused with %q", c.name, sub, err, stderr, c.want)
			}
		}
	}
	if st := statusOf(t, sock); st.Mode != "stateful" {
		t.Errorf("root's status after the refusals: %+v", st)
	}

	// A second daemon on the same socket is refused before it touches the
	// first one's divert rules.
	_, stderr, err := command(30*time.Second, "", statewallBin, "run", "--netns", tp.router, "--socket", sock,
		"--rules", testdata(t, "outbound.rules"), "--hooks", "forward")
	if err == nil || !strings.Contains(stderr, "another statewall is running") {
		t.Errorf("a second daemon on the same socket: err %v, stderr %q", err, stderr)
	}
	if !strings.Contains(ruleset(t, tp.router), "STATEWALL-FORWARD") {
		t.Error("the second daemon removed the first one's divert rules")
	}
	if n := pingCount(tp.server, clientV4, 1, 0); n != 0 {
		t.Error("after the second daemon's attempt the router no longer filters")
	}
	tp.stopClean(t, d)
}

// TestCleanStopFreshNamespace: in a namespace that had no ruleset at all,
// a clean stop leaves no rule and no chain of statewall's, in any family,
// and no nft table (iptables-nft leaves the empty built-in filter chains it
// had to create, which hold no rule and accept everything).
func TestCleanStopFreshNamespace(t *testing.T) {
	needRoot(t)
	ns := newNamespace(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "x.sock")
	p := &topo{before: map[string]string{}, bare: true}
	d := p.startDaemon(t, ns, sock, "--rules", testdata(t, "outbound.rules"))
	rs := ruleset(t, ns)
	for _, want := range []string{"STATEWALL-INPUT", "STATEWALL-OUTPUT", "STATEWALL-FORWARD", "statewall-defrag-STATEWALL"} {
		if !strings.Contains(rs, want) {
			t.Errorf("while running, %s is missing from the ruleset:\n%s", want, rs)
		}
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatal("statewall did not stop")
	}
	rs = ruleset(t, ns)
	for line := range strings.Lines(rs) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "###"), line == "*filter", line == "COMMIT",
			line == ":INPUT ACCEPT [0:0]", line == ":OUTPUT ACCEPT [0:0]", line == ":FORWARD ACCEPT [0:0]":
		case strings.HasPrefix(line, "table ip filter"), strings.HasPrefix(line, "table ip6 filter"),
			strings.HasPrefix(line, "chain INPUT"), strings.HasPrefix(line, "chain OUTPUT"), strings.HasPrefix(line, "chain FORWARD"),
			strings.HasPrefix(line, "type filter hook"), line == "}":
		default:
			t.Errorf("left after a clean stop: %q\n%s", line, rs)
		}
	}
}

// TestOnlyNetAdminAndNetRaw runs statewall as scripts/statewall.service
// does: root with a capability bounding set of CAP_NET_ADMIN and
// CAP_NET_RAW only, and no_new_privs, so neither it nor the iptables and
// nft it runs can have more. It runs inside the router namespace (ip netns
// exec, then setpriv), not with --netns, which would need CAP_SYS_ADMIN.
// It must enforce, reload, answer status and stop cleanly.
func TestOnlyNetAdminAndNetRaw(t *testing.T) {
	needRoot(t, "curl", "python3", "setpriv", "ss")
	tp := newTopo(t)
	tp.httpServer(t)
	sock := filepath.Join(tp.dir, "router.sock")
	d := tp.spawnDaemon(t, tp.router, sock, []string{"ip", "netns", "exec", tp.router,
		"setpriv", "--bounding-set=-all,+net_admin,+net_raw", "--inh-caps=-all", "--no-new-privs",
		statewallBin, "run", "--socket", sock, "--rules", testdata(t, "outbound.rules"), "--hooks", "forward"})
	if !curl(tp.client, "http://"+serverV4+"/", 3) {
		t.Error("curl through the router failed")
	}
	if n := pingCount(tp.client, serverV4, 2, 3000); n != 2 {
		t.Errorf("fragmented ping: %d of 2 replies (the defragmentation table needs nft to work)", n)
	}
	if n := pingCount(tp.server, clientV4, 1, 0); n != 0 {
		t.Error("the server side reached the client side")
	}
	if _, stderr, err := cli("reload", "--socket", sock); err != nil {
		t.Errorf("reload: %v %s", err, stderr)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		// CAP_NET_ADMIN is bit 12, CAP_NET_RAW bit 13.
		if strings.HasPrefix(line, "CapBnd:") && strings.TrimSpace(line[7:]) != "0000000000003000" ||
			strings.HasPrefix(line, "NoNewPrivs:") && strings.TrimSpace(line[11:]) != "1" {
			t.Errorf("the daemon runs with %s", strings.TrimSpace(line))
		}
	}
	if strings.Contains(d.out.String(), "level=WARN") || strings.Contains(d.out.String(), "level=ERROR") {
		t.Errorf("warnings or errors in the log:\n%s", d.out.String())
	}
	tp.stopClean(t, d)
}
