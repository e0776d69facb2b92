package reject

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/statewall/statewall/internal/command"
	"github.com/statewall/statewall/internal/testenv"
	"github.com/statewall/statewall/pkg/nfq"
	"github.com/statewall/statewall/pkg/packet"
)

// These tests need root. They make two network namespaces,
// sw-reject-PID-N, a client and a server joined by a veth pair, with
// 198.18.0.1/24 and fd00:198:18::1/64 on the client and .2, ::2 on the
// server. In the server, iptables rules queue what the client sends to a
// few ports to NFQUEUE; a handler answers each with AppendRST or
// AppendICMP, sends the answer through a Sender opened in the server, and
// drops the packet. The client must then see what a closed port shows: a
// refused connection, at once, not a timeout. Every command runs with a
// deadline, and the namespaces go in t.Cleanup, also on failure.

const (
	queueNum = 7
	testMark = 0x5157
)

var nsCount atomic.Int32

func run(t testing.TB, netns string, name string, args ...string) string {
	t.Helper()
	out, err := command.Run(context.Background(), command.Cmd{Netns: netns, Timeout: 20 * time.Second}, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type testNet struct{ client, server string }

func newTestNet(t *testing.T) testNet {
	t.Helper()
	testenv.NeedRoot(t, "network namespaces, raw sockets, iptables, NFQUEUE", "ip", "iptables", "ip6tables", "curl")
	var n testNet
	for _, p := range []*string{&n.client, &n.server} {
		name := fmt.Sprintf("sw-reject-%d-%d", os.Getpid(), nsCount.Add(1))
		run(t, "", "ip", "netns", "add", name)
		t.Cleanup(func() {
			if _, err := command.Run(context.Background(), command.Cmd{Timeout: 20 * time.Second}, "ip", "netns", "del", name); err != nil {
				t.Errorf("removing namespace: %v", err)
			}
		})
		*p = name
	}
	run(t, "", "ip", "-n", n.client, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", n.server)
	for i, ns := range []string{n.client, n.server} {
		for _, args := range [][]string{
			{"link", "set", "lo", "up"},
			{"link", "set", "eth0", "up"},
			{"addr", "add", fmt.Sprintf("198.18.0.%d/24", i+1), "dev", "eth0"},
			{"addr", "add", fmt.Sprintf("fd00:198:18::%d/64", i+1), "dev", "eth0", "nodad"},
		} {
			run(t, "", "ip", append([]string{"-n", ns}, args...)...)
		}
	}
	return n
}

// rejecter answers, in the server, what the rules queue: TCP to 8080 with
// a RST, TCP to 8083 and UDP to 8081 with port unreachable, UDP to 8082
// with filter-prohib (IPv4) or admin-unr (IPv6). It accepts everything
// else, and counts what reaches it at the output hook.
type rejecter struct {
	s      *Sender
	mu     sync.Mutex
	buf    []byte
	output atomic.Int64
}

func (r *rejecter) handle(p *nfq.Packet) nfq.Verdict {
	if p.Hook == nfq.HookOutput {
		r.output.Add(1)
		return nfq.Accept
	}
	var d packet.Packet
	d.Decode(p.Payload, packet.LinkIP)
	var reply Reply
	switch {
	case d.Proto == packet.ProtoTCP && d.DstPort == 8080:
		reply = Reply{Kind: Return}
	case d.Proto == packet.ProtoTCP && d.DstPort == 8083, d.Proto == packet.ProtoUDP && d.DstPort == 8081:
		reply = Reply{Kind: ReturnICMP}
	case d.Proto == packet.ProtoUDP && d.DstPort == 8082:
		reply = Reply{Kind: ReturnICMP, ICMP: FilterProhib, ICMP6: AdminUnr6}
	default:
		return nfq.Accept
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var ok bool
	if r.buf, ok = reply.AppendPacket(r.buf[:0], &d); ok {
		r.s.SendIf(r.buf, p.InDev)
	}
	return nfq.Drop
}

// startRejecter opens a Sender (marked testMark) and a queue reader in the
// server and installs the rules that queue the test ports, and also the
// server's own RSTs and ICMP errors at the output hook unless they carry
// testMark: the loop a daemon that diverts its output must avoid.
func startRejecter(t *testing.T, n testNet) *rejecter {
	t.Helper()
	s, err := Open(Config{NetnsName: n.server, Mark: testMark})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	rj := &rejecter{s: s, buf: make([]byte, 0, MaxLen)}
	r, err := nfq.Open(nfq.QueueConfig{Queues: [2]uint16{queueNum, queueNum}, NetnsName: n.server}, rj.handle, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("nfq reader: %v", err)
		}
	})
	q := []string{"-j", "NFQUEUE", "--queue-num", strconv.Itoa(queueNum)}
	for _, tool := range []string{"iptables", "ip6tables"} {
		icmp := []string{"-p", "icmp"}
		if tool == "ip6tables" {
			icmp = []string{"-p", "ipv6-icmp", "--icmpv6-type", "destination-unreachable"}
		}
		for _, rule := range [][]string{
			{"-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "8080,8083"},
			{"-A", "INPUT", "-p", "udp", "-m", "multiport", "--dports", "8081,8082"},
			{"-A", "OUTPUT", "-p", "tcp", "--tcp-flags", "RST", "RST", "-m", "mark", "!", "--mark", strconv.Itoa(testMark)},
			append(append([]string{"-A", "OUTPUT"}, icmp...), "-m", "mark", "!", "--mark", strconv.Itoa(testMark)),
		} {
			run(t, n.server, tool, append(append([]string{"-w", "5"}, rule...), q...)...)
		}
		// A rule without a target: it counts the marked answers.
		run(t, n.server, tool, "-w", "5", "-A", "OUTPUT", "-m", "mark", "--mark", strconv.Itoa(testMark))
	}
	return rj
}

// markedPackets reads the counter of the rule that counts marked answers.
func markedPackets(t *testing.T, n testNet, tool string) int {
	t.Helper()
	out := run(t, n.server, tool, "-w", "5", "-L", "OUTPUT", "-v", "-x", "-n")
	m := regexp.MustCompile(`(?m)^\s*(\d+)\s+\d+\s+.*mark match 0x5157\s*$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no counter for the mark in:\n%s", out)
	}
	k, _ := strconv.Atoi(m[1])
	return k
}

// curl runs curl in the client and returns its exit code, what it said and
// how long it took.
func curl(t *testing.T, n testNet, url string) (int, string, time.Duration) {
	t.Helper()
	start := time.Now()
	_, stderr, err := command.Output(context.Background(), command.Cmd{Netns: n.client, Timeout: 10 * time.Second},
		"curl", "--connect-timeout", "3", "-sS", "-g", url)
	took := time.Since(start)
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("curl %s: want a failure, got %v", url, err)
	}
	return ee.ExitCode(), stderr, took
}

// inClient runs fn on a thread in the client namespace; the thread is
// discarded afterwards.
func inClient(t *testing.T, n testNet, fn func() error) error {
	t.Helper()
	res := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the runtime discards the thread
		h, err := netns.GetFromName(n.client)
		if err != nil {
			res <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			res <- err
			return
		}
		res <- fn()
	}()
	return <-res
}

// udpExchange sends a datagram from the client to addr and returns the
// error reading an answer gives (a refusal shows there).
func udpExchange(t *testing.T, n testNet, addr string) error {
	t.Helper()
	return inClient(t, n, func() error {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte("statewall")); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err = c.Read(make([]byte, 100))
		return err
	})
}

func TestLive(t *testing.T) {
	n := newTestNet(t)
	rj := startRejecter(t, n)

	for _, tt := range []struct{ name, url string }{
		{"tcp4 RST", "http://198.18.0.2:8080/"},
		{"tcp6 RST", "http://[fd00:198:18::2]:8080/"},
		{"tcp4 port-unr", "http://198.18.0.2:8083/"},
		{"tcp6 port-unr", "http://[fd00:198:18::2]:8083/"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr, took := curl(t, n, tt.url)
			// curl exits 7 when it could not connect, 28 on a timeout.
			if code != 7 || took > 2*time.Second {
				t.Errorf("curl %s: exit %d after %v: %s", tt.url, code, took, stderr)
			}
			t.Logf("curl: exit %d after %v: %s", code, took.Round(time.Millisecond), stderr)
		})
	}
	for _, tt := range []struct {
		name, addr string
		want       error
	}{
		{"udp4 port-unr", "198.18.0.2:8081", syscall.ECONNREFUSED},
		{"udp6 port-unr", "[fd00:198:18::2]:8081", syscall.ECONNREFUSED},
		// What Linux makes of the other codes (icmp_err_convert, icmpv6_err_convert).
		{"udp4 filter-prohib", "198.18.0.2:8082", syscall.EHOSTUNREACH},
		{"udp6 admin-unr", "[fd00:198:18::2]:8082", syscall.EACCES},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := udpExchange(t, n, tt.addr)
			if !errors.Is(err, tt.want) || time.Since(start) > 2*time.Second {
				t.Errorf("UDP to %s: %v after %v, want %v", tt.addr, err, time.Since(start), tt.want)
			}
		})
	}

	// The client may see the last answer before the handler counts it.
	st := rj.s.Stats()
	for deadline := time.Now().Add(time.Second); st.Sent < 8 && time.Now().Before(deadline); st = rj.s.Stats() {
		time.Sleep(time.Millisecond)
	}
	if st.Sent != 8 || st.Errors != 0 || st.Dropped != 0 || st.RateLimited != 0 {
		t.Errorf("sender stats %+v, want 8 sent", st)
	}
	// The answers carried the mark, and so the output hook's divert rules
	// let them pass: none came back to the handler.
	if k := rj.output.Load(); k != 0 {
		t.Errorf("%d of our own answers came back through the output hook", k)
	}
	if k4, k6 := markedPackets(t, n, "iptables"), markedPackets(t, n, "ip6tables"); k4 != 4 || k6 != 4 {
		t.Errorf("marked answers: %d IPv4, %d IPv6, want 4 each", k4, k6)
	}
}

// TestSenderLimits: the rate limit holds, and Send allocates nothing.
func TestSenderLimits(t *testing.T) {
	n := newTestNet(t)
	rst4, ok := AppendRST(nil, tcp4(t, "S", 1, 0, 0))
	if !ok {
		t.Fatal("no RST")
	}
	rst6, ok := AppendRST(nil, tcp6(t, "S", 1, 0, 0))
	if !ok {
		t.Fatal("no RST")
	}

	s, err := Open(Config{NetnsName: n.server, Rate: 1, Burst: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sent := 0
	for range 5 {
		if s.Send(rst4) {
			sent++
		}
	}
	if st := s.Stats(); sent != 2 || st.Sent != 2 || st.RateLimited != 3 {
		t.Errorf("rate 1/s burst 2: %d sent, stats %+v", sent, st)
	}

	u, err := Open(Config{NetnsName: n.server, Rate: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for _, b := range [][]byte{rst4, rst6} {
		if a := testing.AllocsPerRun(100, func() { u.Send(b) }); a != 0 {
			t.Errorf("Send: %v allocations", a)
		}
	}
	if u.Send([]byte{0x45, 0}) || u.Stats().Errors != 1 {
		t.Errorf("a short packet: stats %+v", u.Stats())
	}
	if st := u.Stats(); st.Sent != 202 || st.Dropped != 0 {
		t.Errorf("unlimited: stats %+v, want 202 sent", st)
	}
}

// TestOpenBadNetns: a namespace that does not exist is an error, not a
// Sender in the caller's namespace.
func TestOpenBadNetns(t *testing.T) {
	testenv.NeedRoot(t, "raw sockets")
	if s, err := Open(Config{NetnsName: "sw-reject-no-such-namespace"}); err == nil {
		s.Close()
		t.Fatal("Open succeeded")
	}
}

// TestKernelDifferential compares the answers with the kernel's own, the
// reference: in the server, the mangle table queues the client's TCP to
// 9090 and UDP to 9091 to a handler that crafts its answer (without
// sending it) and accepts, and then the filter table REJECTs them with
// tcp-reset and icmp(6)-port-unreachable; the kernel's answers are queued
// at the output hook and recorded. They must be equal byte for byte, but
// for the fields the kernel fills in as it sends (listed at the
// comparison).
func TestKernelDifferential(t *testing.T) {
	n := newTestNet(t)
	var mu sync.Mutex
	ours := map[string][]byte{}   // by "4 tcp", "6 udp", ...
	kernel := map[string][]byte{} // the same
	key := func(d *packet.Packet, proto packet.Proto) string {
		return fmt.Sprintf("%d %v", d.IPVersion, proto)
	}
	handle := func(p *nfq.Packet) nfq.Verdict {
		var d packet.Packet
		d.Decode(p.Payload, packet.LinkIP)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case p.Hook == nfq.HookInput && d.Proto == packet.ProtoTCP:
			ours[key(&d, d.Proto)], _ = AppendRST(nil, p.Payload)
		case p.Hook == nfq.HookInput && d.Proto == packet.ProtoUDP:
			ours[key(&d, d.Proto)], _ = AppendICMP(nil, p.Payload, 0)
		case p.Hook == nfq.HookOutput && d.Proto == packet.ProtoTCP:
			kernel[key(&d, d.Proto)] = append([]byte(nil), p.Payload...)
		case p.Hook == nfq.HookOutput && (d.Proto == packet.ProtoICMP || d.Proto == packet.ProtoICMPv6):
			kernel[key(&d, packet.ProtoUDP)] = append([]byte(nil), p.Payload...)
		}
		return nfq.Accept
	}
	r, err := nfq.Open(nfq.QueueConfig{Queues: [2]uint16{queueNum, queueNum}, NetnsName: n.server}, handle, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("nfq reader: %v", err)
		}
	}()
	q := []string{"-j", "NFQUEUE", "--queue-num", strconv.Itoa(queueNum)}
	for _, tool := range []string{"iptables", "ip6tables"} {
		icmp := []string{"-p", "icmp", "--icmp-type", "destination-unreachable"}
		if tool == "ip6tables" {
			icmp = []string{"-p", "ipv6-icmp", "--icmpv6-type", "destination-unreachable"}
		}
		for _, rule := range [][]string{
			append([]string{"-t", "mangle", "-A", "INPUT", "-p", "tcp", "--dport", "9090"}, q...),
			append([]string{"-t", "mangle", "-A", "INPUT", "-p", "udp", "--dport", "9091"}, q...),
			{"-A", "INPUT", "-p", "tcp", "--dport", "9090", "-j", "REJECT", "--reject-with", "tcp-reset"},
			{"-A", "INPUT", "-p", "udp", "--dport", "9091", "-j", "REJECT"},
			append([]string{"-A", "OUTPUT", "-p", "tcp", "--sport", "9090"}, q...),
			append(append([]string{"-A", "OUTPUT"}, icmp...), q...),
		} {
			run(t, n.server, tool, append([]string{"-w", "5"}, rule...)...)
		}
	}
	for _, url := range []string{"http://198.18.0.2:9090/", "http://[fd00:198:18::2]:9090/"} {
		if code, stderr, _ := curl(t, n, url); code != 7 {
			t.Errorf("curl %s: exit %d: %s", url, code, stderr)
		}
	}
	for _, addr := range []string{"198.18.0.2:9091", "[fd00:198:18::2]:9091"} {
		if err := udpExchange(t, n, addr); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("UDP to %s: %v", addr, err)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	for _, k := range []string{"4 tcp", "6 tcp", "4 udp", "6 udp"} {
		o, kb := ours[k], kernel[k]
		if o == nil || kb == nil {
			t.Errorf("%s: ours % x, the kernel's % x", k, o, kb)
			continue
		}
		o, kb = append([]byte(nil), o...), append([]byte(nil), kb...)
		// Filled in as the packet is sent: the id of the kernel's IPv4 ICMP
		// error (DF clear; ours is 0, which has the raw socket choose one
		// the same way) and so its header checksum; the TCP checksum of
		// the kernel's IPv4 RST, a partial sum at the output hook
		// (CHECKSUM_PARTIAL, completed by the device); the flow label of
		// the kernel's ICMPv6 error, a hash of the flow
		// (net.ipv6.auto_flowlabels). The rest must be equal.
		switch k {
		case "4 tcp":
			clear(o[36:38])
			clear(kb[36:38])
		case "4 udp":
			clear(o[4:6])
			clear(kb[4:6])
			clear(o[10:12])
			clear(kb[10:12])
		case "6 udp":
			kb[1] &^= 0x0f
			clear(kb[2:4])
		}
		if string(o) != string(kb) {
			t.Errorf("%s differs from the kernel's answer:\nours   % x\nkernel % x", k, o, kb)
		}
	}
}
