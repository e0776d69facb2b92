//go:build linux

package daemon

import (
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// exitCode is the exit status of a command that ran (-1: it did not).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// conntrackJSON runs `statewall conntrack --json ARGS` and decodes it.
func conntrackJSON(t *testing.T, sock string, args ...string) []Conn {
	t.Helper()
	out, _, err := cli(append([]string{"conntrack", "--socket", sock, "--json"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var conns []Conn
	if err := json.Unmarshal([]byte(out), &conns); err != nil {
		t.Fatalf("conntrack --json %v: %v: %q", args, err, out)
	}
	return conns
}

// TestConntrackListDeleteFlush: statewall conntrack on the router, with
// plain keep-state rules (a TCP connection opens only with a SYN):
// filters by prefix and service name; bad filters are usage errors
// (exit 2); --delete of one live echo connection blocks its next segment
// while another echo connection goes on; --flush ends that one too.
func TestConntrackListDeleteFlush(t *testing.T) {
	needRoot(t, "socat", "curl", "python3", "ss")
	tp := newTopo(t)
	tp.httpServer(t)
	tp.echoServer(t, 7000)
	sock := filepath.Join(tp.dir, "router.sock")
	d := tp.startDaemon(t, tp.router, sock, "--rules", testdata(t, "outbound.rules"), "--hooks", "forward")

	e1 := tp.dialEcho(t, 7000, 41000)
	e2 := tp.dialEcho(t, 7000, 41001)
	if !curl(tp.client, "http://"+serverV4+"/", 3, "--local-port", "40123") {
		t.Fatal("curl through the router failed")
	}

	conns := conntrackJSON(t, sock, "--addr", "198.18.1.0/24", "--port", "http")
	if len(conns) != 1 || conns[0].Original.Src != clientV4 || conns[0].Original.Sport != 40123 ||
		conns[0].Original.Dport != 80 || conns[0].Reply.Sport != 80 || conns[0].Proto != "tcp" {
		t.Errorf("--addr 198.18.1.0/24 --port http: %+v", conns)
	}
	if conns := conntrackJSON(t, sock, "--dst", "198.18.2.0/24", "--dport", "7000", "--state", "established"); len(conns) != 2 {
		t.Errorf("the echo connections: %+v", conns)
	}
	if conns := conntrackJSON(t, sock, "--port", "ssh"); len(conns) != 0 {
		t.Errorf("--port ssh: %+v", conns)
	}
	out, _, err := cli("conntrack", "--socket", sock, "--src", serverV4)
	if err != nil || strings.Contains(out, "src=") {
		t.Errorf("--src of the server (no connection starts there): %v\n%s", err, out)
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"--proto", "foo"}, `bad --proto "foo"`},
		{[]string{"--state", "BOGUS"}, `bad --state "BOGUS"`},
		{[]string{"--port", "sshh"}, `bad port "sshh"`},
		{[]string{"--addr", "198.18.1.0/33"}, `bad --addr`},
		{[]string{"--delete"}, "use --flush"},
		{[]string{"--flush", "--port", "80"}, "use --delete"},
	} {
		_, stderr, err := cli(append([]string{"conntrack", "--socket", sock}, bad.args...)...)
		if exitCode(err) != 2 || !strings.Contains(stderr, bad.want) {
			t.Errorf("conntrack %v: exit %d, stderr %q; want 2 and %q", bad.args, exitCode(err), stderr, bad.want)
		}
	}

	out, _, err = cli("conntrack", "--socket", sock, "--delete", "--sport", "41000")
	if err != nil || strings.TrimSpace(out) != "1 connections deleted" {
		t.Fatalf("--delete --sport 41000: %v %q", err, out)
	}
	if e1.roundTrip(t, "after delete", 2*time.Second) {
		t.Error("the deleted connection's next segment passed: it is no SYN, the rule should not match it")
	}
	if !e2.roundTrip(t, "the other one", 3*time.Second) {
		t.Error("the other echo connection stopped after the delete")
	}
	if conns := conntrackJSON(t, sock, "--port", "41000"); len(conns) != 0 {
		t.Errorf("the deleted connection is listed again: %+v", conns)
	}

	out, _, err = cli("conntrack", "--socket", sock, "--flush", "--json")
	var flushed struct{ Deleted int }
	if err == nil {
		err = json.Unmarshal([]byte(out), &flushed)
	}
	if err != nil || flushed.Deleted < 2 { // e2 and curl's TIME_WAIT at least
		t.Errorf("--flush: %v %q", err, out)
	}
	if conns := conntrackJSON(t, sock, "--proto", "tcp"); len(conns) != 0 {
		t.Errorf("after --flush: %+v", conns)
	}
	if e2.roundTrip(t, "after flush", 2*time.Second) {
		t.Error("a connection's segment passed after --flush")
	}
	tp.stopClean(t, d)
}

// TestConntrackEvents: `statewall conntrack --events` shows a curl
// request's connection as conntrack -E does: NEW at its SYN, UPDATEs
// through the handshake and the close, and DESTROY when TIME_WAIT (2 s
// here) runs out, although no packet comes then: the daemon sweeps while
// someone listens. The --json stream says the same in Conn's fields; a
// filter on another port shows nothing of it.
func TestConntrackEvents(t *testing.T) {
	needRoot(t, "curl", "python3", "ss")
	tp := newTopo(t)
	tp.httpServer(t)
	sock := filepath.Join(tp.dir, "router.sock")
	rules := writeRules(t, filepath.Join(tp.dir, "events.rules"), `
set default block
set timeout tcp.time_wait 2s
pass from { 198.18.1.0/24, fd00:198:18::1:0/112 }
`)
	d := tp.startDaemon(t, tp.router, sock, "--rules", rules, "--hooks", "forward")
	follow := func(args ...string) *proc {
		t.Helper()
		before := strings.Count(d.out.String(), "conntrack events: a reader follows")
		p := start(t, tp.router, statewallBin, append([]string{"conntrack", "--socket", sock, "--events"}, args...)...)
		if !waitFor(10*time.Second, func() bool {
			return strings.Count(d.out.String(), "conntrack events: a reader follows") > before || p.exited()
		}) || p.exited() {
			t.Fatalf("conntrack --events %v did not start: %s", args, p.out.String())
		}
		return p
	}
	text := follow("--port", "40200")
	js := follow("--json", "--src", clientV4, "--dport", "http")
	other := follow("--port", "ssh")

	if !curl(tp.client, "http://"+serverV4+"/", 3, "--local-port", "40200") {
		t.Fatal("curl through the router failed")
	}
	const orig = "src=198.18.1.2 dst=198.18.2.2 sport=40200 dport=80"
	if !waitFor(10*time.Second, func() bool { return strings.Contains(text.out.String(), "[DESTROY]") }) {
		t.Fatalf("no DESTROY within 10 s:\n%s", text.out.String())
	}
	var states []string
	for line := range strings.Lines(text.out.String()) {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.Contains(line, orig) {
			t.Errorf("event line %q", line)
			continue
		}
		states = append(states, f[0]+" "+f[4])
	}
	got := strings.Join(states, ", ")
	for _, want := range []string{
		"[NEW] SYN_SENT, [UPDATE] SYN_RECV, [UPDATE] ESTABLISHED, ",
		"[UPDATE] TIME_WAIT, [DESTROY] TIME_WAIT",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("events %s; want %s in them", got, want)
		}
	}
	if !strings.HasPrefix(got, "[NEW]") || !strings.HasSuffix(got, "[DESTROY] TIME_WAIT") {
		t.Errorf("events %s: want NEW first and DESTROY last", got)
	}
	if !strings.Contains(text.out.String(), "    [NEW] tcp      6 120 SYN_SENT "+orig+" packets=1") {
		t.Errorf("the NEW line is not conntrack -E's:\n%s", text.out.String())
	}

	if !waitFor(5*time.Second, func() bool { return strings.Contains(js.out.String(), `"type":"DESTROY"`) }) {
		t.Fatalf("the JSON stream has no DESTROY:\n%s", js.out.String())
	}
	var types []string
	for line := range strings.Lines(js.out.String()) {
		var ev ConnEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Conn == nil {
			t.Fatalf("JSON event %q: %v", line, err)
		}
		if ev.Proto != "tcp" || ev.Original.Src != clientV4 || ev.Original.Sport != 40200 || ev.Original.Dport != 80 ||
			ev.Reply.Src != serverV4 || ev.Reply.Dport != 40200 {
			t.Errorf("JSON event %s", line)
		}
		types = append(types, ev.Type+" "+ev.State)
		if ev.Type == "DESTROY" && (!ev.Assured || !ev.SeenReply || ev.Timeout != 0 || ev.Packets[0] < 3 || ev.Packets[1] < 3) {
			t.Errorf("DESTROY %s", line)
		}
	}
	if j, t2 := strings.Join(types, ", "), strings.ReplaceAll(strings.ReplaceAll(got, "[", ""), "]", ""); j != t2 {
		t.Errorf("JSON events %s, text events %s", j, t2)
	}
	if out := other.out.String(); out != "" {
		t.Errorf("--port ssh saw events: %s", out)
	}
	text.stop()
	js.stop()
	other.stop()
	tp.stopClean(t, d)
}
