//go:build linux

package daemon

// The end-to-end tests run statewall on live traffic between network
// namespaces they make themselves (sw-e2e-PID-N), on 198.18.0.0/15 and
// fd00:198:18::/64 only:
//
//	client 198.18.1.2          router                     server 198.18.2.2
//	fd00:198:18::1:2  eth0 -- eth0 198.18.1.1   eth1 -- eth0  fd00:198:18::2:2
//	                           fd00:198:18::1:1  198.18.2.1
//	                                             fd00:198:18::2:1
//
// The router runs statewall on the forward hook; the server doubles as
// "the host", running it on input and output. Real programs make the
// traffic (curl, python3 -m http.server, ping, dig and dnsmasq, socat,
// nmap, hping3, tcpdump). Every command is bounded in time, every loop in
// count, and t.Cleanup stops every process the test started (by its pid)
// and deletes the namespaces, which takes their iptables and nft rules
// with them; nothing is ever changed in the caller's namespace.
//
// Most tests run statewall as a separate process, the binary TestMain
// builds, as an administrator would (kill -9 needs one); the shadow-mode
// test runs the daemon in the test process, so the race detector watches
// its packet path, control socket and metrics.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	// Renamed: command is the helper below.
	cmdpkg "github.com/statewall/statewall/internal/command"
	"github.com/statewall/statewall/internal/testenv"
)

const (
	clientV4   = "198.18.1.2"
	routerCV4  = "198.18.1.1" // the router on the client's side
	routerSV4  = "198.18.2.1" // the router on the server's side
	serverV4   = "198.18.2.2"
	clientV6   = "fd00:198:18::1:2"
	routerCV6  = "fd00:198:18::1:1"
	routerSV6  = "fd00:198:18::2:1"
	serverV6   = "fd00:198:18::2:2"
	siteDropV4 = "198.18.9.9" // only ever named in the "site" rules, never used
	siteDropV6 = "fd00:198:18::9:9"
)

var (
	statewallBin string // built by TestMain
	nsCount      atomic.Int32
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "statewall-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// nobody runs the client from here in TestControlSocket.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	statewallBin = filepath.Join(dir, "statewall")
	// The go that runs this test: `go test` puts its GOROOT's bin first
	// in the test's PATH.
	goTool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "no go command to build statewall for the end-to-end tests:", err)
		return 1
	}
	// -buildvcs=false: the build needs no VCS stamp, and git refuses a
	// checkout owned by another user (a newcomer's tests as non-root).
	cmd := exec.Command(goTool, "build", "-buildvcs=false", "-o", statewallBin, "github.com/statewall/statewall/cmd/statewall")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building statewall for the end-to-end tests:", err)
		return 1
	}
	return m.Run()
}

// needRoot fails the test, with what is missing, unless it runs as root
// with the tools it names: CI runs as root, so a skip would hide a gap.
func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	testenv.NeedRoot(t, "network namespaces, iptables, NFQUEUE", append([]string{"ip", "iptables-save", "ip6tables-save", "nft", "ethtool"}, tools...)...)
}

// syncBuffer is a bytes.Buffer that a process writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond every 20 ms until it holds or d has passed.
func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// command runs name with a deadline and returns its standard output and
// error output; err includes the latter.
func command(timeout time.Duration, stdin, name string, args ...string) (string, string, error) {
	return cmdpkg.Output(context.Background(), cmdpkg.Cmd{Stdin: stdin, Timeout: timeout}, name, args...)
}

// inNS runs a command inside ns (at most 30 s).
func inNS(ns, stdin, name string, args ...string) (string, error) {
	c := cmdpkg.Cmd{Netns: ns, Stdin: stdin, Timeout: 30 * time.Second}
	return cmdpkg.Run(context.Background(), c, name, args...)
}

func mustNS(t *testing.T, ns, stdin, name string, args ...string) string {
	t.Helper()
	out, err := inNS(ns, stdin, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// topo is the test topology; see the top of the file.
type topo struct {
	client, router, server string
	dir                    string            // root-owned, 0755: sockets, rules, pid files
	before                 map[string]string // ns -> ruleset before statewall first started there
	bare                   bool              // no site rules: namespaces start with an empty ruleset
}

func newNamespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("sw-e2e-%d-%d", os.Getpid(), nsCount.Add(1))
	if _, _, err := command(10*time.Second, "", "ip", "netns", "add", name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, _, err := command(10*time.Second, "", "ip", "netns", "del", name); err != nil {
			t.Errorf("removing namespace: %v", err)
		}
	})
	return name
}

func newTopo(t *testing.T) *topo {
	t.Helper()
	tp := &topo{before: map[string]string{}}
	tp.dir = t.TempDir()
	// Sockets go here; listenControl wants a root-owned directory that
	// nobody else may write, and nobody must be able to reach the socket
	// file to be refused by the socket's own mode.
	if err := os.Chmod(tp.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tp.client, tp.router, tp.server = newNamespace(t), newNamespace(t), newNamespace(t)
	ip := func(args ...string) {
		t.Helper()
		if _, _, err := command(10*time.Second, "", "ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	ip("-n", tp.client, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", tp.router)
	ip("-n", tp.server, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1", "netns", tp.router)
	addrs := []struct{ ns, dev, v4, v6 string }{
		{tp.client, "eth0", clientV4 + "/24", clientV6 + "/112"},
		{tp.router, "eth0", routerCV4 + "/24", routerCV6 + "/112"},
		{tp.router, "eth1", routerSV4 + "/24", routerSV6 + "/112"},
		{tp.server, "eth0", serverV4 + "/24", serverV6 + "/112"},
	}
	for _, a := range addrs {
		ip("-n", a.ns, "addr", "add", a.v4, "dev", a.dev)
		ip("-n", a.ns, "addr", "add", a.v6, "dev", a.dev, "nodad")
		ip("-n", a.ns, "link", "set", a.dev, "up")
		// Offloads off: the packets statewall sees are the ones on the wire.
		inNS(a.ns, "", "ethtool", "-K", a.dev, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off")
	}
	for _, ns := range []string{tp.client, tp.router, tp.server} {
		ip("-n", ns, "link", "set", "lo", "up")
	}
	ip("-n", tp.client, "route", "add", "default", "via", routerCV4)
	ip("-n", tp.client, "-6", "route", "add", "default", "via", routerCV6)
	ip("-n", tp.server, "route", "add", "default", "via", routerSV4)
	ip("-n", tp.server, "-6", "route", "add", "default", "via", routerSV6)
	mustNS(t, tp.router, "", "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	// The first IPv6 packets wait for neighbour discovery; wait for it
	// here, not in the tests.
	if !waitFor(5*time.Second, func() bool {
		return pingOK(tp.client, serverV4, 1) && pingOK(tp.client, serverV6, 1)
	}) {
		t.Fatal("the topology does not route between client and server")
	}
	return tp
}

// pingOK sends count pings 100 ms apart and reports whether all came back.
func pingOK(ns, dst string, count int) bool {
	return pingCount(ns, dst, count, 0) == count
}

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// pingCount sends count pings of size bytes (0: the default) 100 ms apart,
// waiting at most 1 s for each reply, and returns how many came back.
func pingCount(ns, dst string, count, size int) int {
	args := []string{"-n", "-c", strconv.Itoa(count), "-i", "0.1", "-W", "1", "-w", strconv.Itoa(count/10 + 2)}
	if size > 0 {
		args = append(args, "-s", strconv.Itoa(size))
	}
	if strings.Contains(dst, ":") {
		args = append(args, "-6")
	}
	out, _ := inNS(ns, "", "ping", append(args, dst)...) // exit status 1 just means losses
	m := pingSummary.FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[2])
	return n
}

// siteRules puts rules of "somebody else" into ns's filter tables (both
// families) and an nft table of the test's, so that statewall has to leave
// an existing ruleset as it found it. The rules name an address no test
// uses. It keeps the snapshot that checkClean compares with after
// statewall stops; with tp.bare it keeps the empty ruleset instead.
func (tp *topo) siteRules(t *testing.T, ns string) {
	t.Helper()
	if _, ok := tp.before[ns]; ok {
		return
	}
	if tp.bare {
		tp.before[ns] = ruleset(t, ns)
		return
	}
	for _, v := range []struct{ tool, addr string }{{"iptables-restore", siteDropV4}, {"ip6tables-restore", siteDropV6}} {
		mustNS(t, ns, fmt.Sprintf(`*filter
:SITE-AUDIT - [0:0]
-A SITE-AUDIT -j RETURN
-A INPUT -s %s -j DROP
-A FORWARD -s %s -j SITE-AUDIT
-A OUTPUT -d %s -j DROP
COMMIT
`, v.addr, v.addr, v.addr), v.tool, "--noflush")
	}
	tp.before[ns] = ruleset(t, ns)
}

var (
	counterRE = regexp.MustCompile(`\[\d+:\d+\]`)
	nftCtrRE  = regexp.MustCompile(`packets \d+ bytes \d+`)
)

// ruleset is what iptables-save, ip6tables-save and nft list ruleset show in
// ns, without comments and with the counters zeroed, which change on their
// own.
func ruleset(t *testing.T, ns string) string {
	t.Helper()
	var b strings.Builder
	for _, c := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"nft", "list", "ruleset"}} {
		out := mustNS(t, ns, "", c[0], c[1:]...)
		fmt.Fprintf(&b, "### %s\n", strings.Join(c, " "))
		for line := range strings.Lines(out) {
			if i := strings.Index(line, "#"); i >= 0 {
				line = line[:i] + "\n"
			}
			if strings.TrimSpace(line) == "" {
				continue
			}
			line = counterRE.ReplaceAllString(line, "[0:0]")
			line = nftCtrRE.ReplaceAllString(line, "packets 0 bytes 0")
			b.WriteString(line)
		}
	}
	return b.String()
}

// checkClean fails unless ns's ruleset is what siteRules saw before
// statewall started.
func (tp *topo) checkClean(t *testing.T, ns string) {
	t.Helper()
	before, ok := tp.before[ns]
	if !ok {
		t.Fatalf("no snapshot of %s's ruleset", ns)
	}
	after := ruleset(t, ns)
	if after != before {
		t.Errorf("statewall left its mark in %s's ruleset.\nbefore:\n%s\nafter:\n%s", ns, before, after)
	}
	if strings.Contains(strings.ToLower(after), "statewall") {
		t.Errorf("statewall is still in %s's ruleset:\n%s", ns, after)
	}
}

// proc is a background program the test started; Cleanup stops it.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// start runs a program inside ns in the background. It is stopped (SIGTERM,
// then SIGKILL after 3 s) in t.Cleanup, and also dies with the test binary.
func start(t *testing.T, ns, name string, args ...string) *proc {
	t.Helper()
	n, a := cmdpkg.InNetns(ns, name, args...)
	p := &proc{name: name, cmd: exec.Command(n, a...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop() })
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) stop() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// listening waits until something listens on port (TCP, or UDP) in ns.
func listening(t *testing.T, ns, proto string, port int) {
	t.Helper()
	flag := "-Hltn"
	if proto == "udp" {
		flag = "-Hlun"
	}
	if !waitFor(10*time.Second, func() bool {
		out, _ := inNS(ns, "", "ss", flag, "sport", "= :"+strconv.Itoa(port))
		return strings.TrimSpace(out) != ""
	}) {
		t.Fatalf("nothing listens on %s port %d in %s", proto, port, ns)
	}
}

// httpServer serves a directory on port 80 of the server, IPv4 and IPv6.
func (tp *topo) httpServer(t *testing.T) {
	t.Helper()
	www := filepath.Join(tp.dir, "www")
	os.MkdirAll(www, 0o755)
	os.WriteFile(filepath.Join(www, "index.html"), []byte("statewall e2e\n"), 0o644)
	// --bind :: serves both families (http.server clears IPV6_V6ONLY).
	start(t, tp.server, "python3", "-m", "http.server", "80", "--bind", "::", "--directory", www)
	listening(t, tp.server, "tcp", 80)
}

// dnsServer answers svc.test. with the server's address, on port 53 of the
// server.
func (tp *topo) dnsServer(t *testing.T) {
	t.Helper()
	start(t, tp.server, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--listen-address="+serverV4, "--bind-interfaces", "--port=53", "--user=root",
		"--pid-file="+filepath.Join(tp.dir, "dnsmasq.pid"), "--address=/svc.test/"+serverV4)
	listening(t, tp.server, "udp", 53)
}

// curl fetches url from ns, giving up after timeout seconds, and reports
// whether it got the page.
func curl(ns, url string, timeout int, extra ...string) bool {
	args := append([]string{"--noproxy", "*", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
		"--connect-timeout", strconv.Itoa(timeout), "--max-time", strconv.Itoa(timeout + 1)}, extra...)
	out, _ := inNS(ns, "", "curl", append(args, url)...)
	return strings.TrimSpace(out) == "200"
}

// dig asks the server for svc.test. from ns (one try, 1 s) and reports
// whether the right answer came back.
func dig(ns string) bool {
	out, _ := inNS(ns, "", "dig", "@"+serverV4, "svc.test", "A", "+short", "+time=1", "+tries=1")
	return strings.TrimSpace(out) == serverV4
}

// daemonProc is a `statewall run` process.
type daemonProc struct {
	*proc
	ns, socket string
}

// startDaemon runs `statewall run --netns ns --socket socket ARGS` and waits
// until it enforces. The site rules are put into ns first (once per
// namespace), to be compared with what is left after the daemon stops.
func (tp *topo) startDaemon(t *testing.T, ns, socket string, args ...string) *daemonProc {
	t.Helper()
	full := append([]string{statewallBin, "run", "--netns", ns, "--socket", socket, "--log-level", "debug"}, args...)
	return tp.spawnDaemon(t, ns, socket, full)
}

// spawnDaemon runs the command line full, a `statewall run` for ns, maybe
// behind a wrapper, and waits until it enforces.
func (tp *topo) spawnDaemon(t *testing.T, ns, socket string, full []string) *daemonProc {
	t.Helper()
	tp.siteRules(t, ns)
	p := &proc{name: "statewall", cmd: exec.Command(full[0], full[1:]...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("statewall %s:\n%s", strings.Join(full, " "), p.out.String())
		}
	})
	d := &daemonProc{proc: p, ns: ns, socket: socket}
	if !waitFor(20*time.Second, func() bool { return strings.Contains(p.out.String(), "statewall running") || p.exited() }) || p.exited() {
		t.Fatalf("statewall did not start:\n%s", p.out.String())
	}
	return d
}

// stopClean stops the daemon with SIGTERM, wants exit status 0 within 15 s,
// and its namespace's ruleset as it was before.
func (tp *topo) stopClean(t *testing.T, d *daemonProc) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("statewall did not stop within 15 s of SIGTERM:\n%s", d.out.String())
	}
	if !d.cmd.ProcessState.Success() {
		t.Errorf("statewall exited with %v:\n%s", d.cmd.ProcessState, d.out.String())
	}
	if _, err := os.Lstat(d.socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket %s still there after a clean stop (%v)", d.socket, err)
	}
	tp.checkClean(t, d.ns)
}

// kill9 kills the daemon with SIGKILL: no cleanup of any kind.
func (d *daemonProc) kill9(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		t.Fatal("statewall did not die of SIGKILL")
	}
}

// cli runs the statewall command line (status, conntrack, reload).
func cli(args ...string) (string, string, error) {
	return command(30*time.Second, "", statewallBin, args...)
}

func statusOf(t *testing.T, socket string) Status {
	t.Helper()
	out, _, err := cli("status", "--socket", socket, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var s Status
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("status --json: %v: %q", err, out)
	}
	return s
}

// scrape fetches http://addr/metrics from inside ns with curl and returns
// every sample by its name and labels as exposed
// (`statewall_reloads_total{result="ok"}`).
func scrape(t *testing.T, ns, addr string) map[string]float64 {
	t.Helper()
	out, err := inNS(ns, "", "curl", "--noproxy", "*", "-sS", "--max-time", "5", "http://"+addr+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]float64{}
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(line[i+1:]), 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	if len(m) == 0 {
		t.Fatalf("no metrics at %s: %q", addr, out)
	}
	return m
}

// writeRules writes a ruleset into dir atomically (a reload never reads a
// half-written file) and returns its path.
func writeRules(t *testing.T, path, text string) string {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func copyRules(t *testing.T, from, to string) string {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	return writeRules(t, to, string(b))
}

// echoConn is a long-lived TCP connection from the client to an echo
// server (socat) on the server: the test writes a numbered line every
// interval into the client socat and counts the lines that come back.
type echoConn struct {
	client  *proc
	in      io.WriteCloser
	got     atomic.Int64
	written atomic.Int64 // bytes written
	stopW   chan struct{}
	wdone   chan struct{}
}

// echoServer starts socat echoing every connection on port.
func (tp *topo) echoServer(t *testing.T, port int) {
	t.Helper()
	start(t, tp.server, "socat", fmt.Sprintf("TCP-LISTEN:%d,bind=%s,reuseaddr,fork", port, serverV4), "PIPE")
	listening(t, tp.server, "tcp", port)
}

// dialEcho connects from the client's sport to the server's port and
// checks that a first line comes back. It writes nothing more until
// tick is called.
func (tp *topo) dialEcho(t *testing.T, port, sport int) *echoConn {
	t.Helper()
	n, a := cmdpkg.InNetns(tp.client, "socat", "-T", "60", "-",
		fmt.Sprintf("TCP:%s:%d,bind=%s,sourceport=%d,connect-timeout=3", serverV4, port, clientV4, sport))
	e := &echoConn{stopW: make(chan struct{}), wdone: make(chan struct{})}
	p := &proc{name: "socat", cmd: exec.Command(n, a...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stderr = p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outp, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.client, e.in = p, in
	go func() {
		sc := bufio.NewScanner(outp)
		for sc.Scan() {
			e.got.Add(1)
		}
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		e.stopTicking()
		in.Close()
		p.stop()
	})
	e.send(t, "hello")
	if !waitFor(5*time.Second, func() bool { return e.got.Load() == 1 }) {
		t.Fatalf("the echo connection to port %d does not answer: %s", port, p.out.String())
	}
	close(e.wdone) // no ticker yet
	return e
}

func (e *echoConn) send(t *testing.T, line string) {
	t.Helper()
	n, err := io.WriteString(e.in, line+"\n")
	if err != nil {
		t.Fatal(err)
	}
	e.written.Add(int64(n))
}

// roundTrip writes a line and reports whether it comes back within d.
func (e *echoConn) roundTrip(t *testing.T, line string, d time.Duration) bool {
	t.Helper()
	base := e.got.Load() // before the write: the echo may beat the next statement
	e.send(t, line)
	return waitFor(d, func() bool { return e.got.Load() > base })
}

// tick writes a line every interval, at most max lines, until
// stopTicking.
func (e *echoConn) tick(interval time.Duration, max int) {
	e.stopW = make(chan struct{})
	e.wdone = make(chan struct{})
	go func() {
		defer close(e.wdone)
		t := time.NewTicker(interval)
		defer t.Stop()
		for i := range max {
			select {
			case <-e.stopW:
				return
			case <-t.C:
			}
			n, err := fmt.Fprintf(e.in, "line %d\n", i)
			if err != nil {
				return
			}
			e.written.Add(int64(n))
		}
	}()
}

func (e *echoConn) stopTicking() {
	select {
	case <-e.stopW:
	default:
		close(e.stopW)
	}
	<-e.wdone
}

// flows reports whether at least n more lines come back within d.
func (e *echoConn) flows(n int, d time.Duration) bool {
	base := e.got.Load()
	return waitFor(d, func() bool { return e.got.Load() >= base+int64(n) })
}

// silent reports whether no line comes back for d.
func (e *echoConn) silent(d time.Duration) bool {
	base := e.got.Load()
	time.Sleep(d)
	return e.got.Load() == base
}

// capture is tcpdump's view of one TCP connection from a client port, on
// eth0 of the client and of the server, kept for the test's log when it
// fails.
type capture struct{ client, server *proc }

// captureConn starts tcpdump on both ends for the connection from sport
// (until the test ends); call isns after connecting.
func (tp *topo) captureConn(t *testing.T, sport int) *capture {
	t.Helper()
	filter := fmt.Sprintf("tcp port %d", sport)
	c := &capture{}
	for _, x := range []struct {
		ns string
		p  **proc
	}{{tp.client, &c.client}, {tp.server, &c.server}} {
		// No "timeout" wrapper: tcpdump itself must die with the test
		// binary (Pdeathsig), and t.Cleanup stops it otherwise.
		*x.p = start(t, x.ns, "tcpdump", "-i", "eth0", "-nn", "-S", "-l", filter)
		if !waitFor(5*time.Second, func() bool { return strings.Contains((*x.p).out.String(), "listening on") }) {
			t.Fatalf("tcpdump did not start: %s", (*x.p).out.String())
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tcpdump on the client:\n%s\ntcpdump on the server:\n%s", c.client.out.String(), c.server.out.String())
		}
	})
	return c
}

var synRE = regexp.MustCompile(`> [0-9.]+: Flags \[(S|S\.)\], seq (\d+)`)

// isns returns the client's and the server's initial sequence numbers, as
// the client saw them.
func (c *capture) isns(t *testing.T) (isnC, isnS uint32) {
	t.Helper()
	var ok bool
	waitFor(10*time.Second, func() bool {
		var gotC, gotS bool
		for _, m := range synRE.FindAllStringSubmatch(c.client.out.String(), -1) {
			n, _ := strconv.ParseUint(m[2], 10, 32)
			if m[1] == "S" {
				isnC, gotC = uint32(n), true
			} else {
				isnS, gotS = uint32(n), true
			}
		}
		ok = gotC && gotS
		return ok
	})
	if !ok {
		t.Fatalf("no SYN and SYN/ACK in tcpdump's output: %s", c.client.out.String())
	}
	return isnC, isnS
}

// receiverCounters puts an nft table of the test's into ns whose input
// chain, after filter (priority 10) and so after statewall's verdict,
// counts the packets that match each rule: name -> nft match expression.
func receiverCounters(t *testing.T, ns string, rules map[string]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("table inet swtest {\n")
	for name := range rules {
		fmt.Fprintf(&b, "\tcounter %s { }\n", name)
	}
	b.WriteString("\tchain in {\n\t\ttype filter hook input priority 10; policy accept;\n")
	for name, match := range rules {
		fmt.Fprintf(&b, "\t\t%s counter name %s\n", match, name)
	}
	b.WriteString("\t}\n}\n")
	mustNS(t, ns, b.String(), "nft", "-f", "-")
}

var nftPackets = regexp.MustCompile(`packets (\d+)`)

func received(t *testing.T, ns, name string) int {
	t.Helper()
	out := mustNS(t, ns, "", "nft", "list", "counter", "inet", "swtest", name)
	m := nftPackets.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("counter %s: %q", name, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

var retransRE = regexp.MustCompile(`retrans:\d+/(\d+)`)

// retransmissions is how many segments the TCP sockets in ns on port
// retransmitted in all (ss -ti); -1 if there is no such socket.
func retransmissions(t *testing.T, ns string, port int) int {
	t.Helper()
	out := mustNS(t, ns, "", "ss", "-Htin", "state", "established", fmt.Sprintf("( sport = :%d or dport = :%d )", port, port))
	if strings.TrimSpace(out) == "" {
		return -1
	}
	n := 0
	for _, m := range retransRE.FindAllStringSubmatch(out, -1) {
		k, _ := strconv.Atoi(m[1])
		n += k
	}
	return n
}
