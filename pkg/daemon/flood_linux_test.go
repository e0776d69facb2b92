//go:build linux

package daemon

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// The flood tests: the router runs statewall stateful on the forward hook
// with `set limit states 512` (testdata/flood-router.rules), and the
// client side floods the server with new connections (TCP SYNs, or UDP
// datagrams each of a new flow) from 64 addresses of its own,
// 198.18.1.64-127, written on a raw socket by the test itself: bounded in
// count (floodPackets) and in time (floodFor), at a bounded rate
// (floodRate). The server drops the flood at its input (an nft table of
// the test's, which also counts what the router let through), so no
// connection of the flood ever completes or ends: every one of them stays
// in the table, unassured, until the table is full and a new one evicts
// it. Before the flood, the client opens an echo connection (a line every
// 100 ms) and starts a bounded HTTP transfer (3 MiB at 1 MiB/s) through
// the router: both must come through whole. The daemon's resident memory
// (VmRSS) is read before, during and after the flood. Each test runs
// twice: at `set limit states 512` the flood evicts its own unassured
// entries; at `set limit states 2` the two assured connections fill the
// table and the whole flood is refused.
const (
	floodSources = 64
	floodFirst   = 64 // 198.18.1.64 .. 198.18.1.127
	floodRate    = 15000
	floodFor     = 4 * time.Second
	floodPackets = 60000
	floodLimit   = 512
	floodTCPPort = 7001
	floodUDPPort = 7002
	xferBytes    = 3 << 20
)

// TestSYNFloodBounded floods the router with TCP SYNs: "evict" at `set
// limit states 512`, where each new connection of the flood evicts an
// older one; "refuse" at `set limit states 2`, where the two assured
// connections fill the table and each new connection is refused.
func TestSYNFloodBounded(t *testing.T) {
	t.Run("evict", func(t *testing.T) { floodTest(t, syscall.IPPROTO_TCP, "flood-router.rules", floodLimit) })
	t.Run("refuse", func(t *testing.T) { floodTest(t, syscall.IPPROTO_TCP, "flood-router-full.rules", 2) })
}

// TestUDPFloodBounded is TestSYNFloodBounded with UDP datagrams, each of a
// new flow.
func TestUDPFloodBounded(t *testing.T) {
	t.Run("evict", func(t *testing.T) { floodTest(t, syscall.IPPROTO_UDP, "flood-router.rules", floodLimit) })
	t.Run("refuse", func(t *testing.T) { floodTest(t, syscall.IPPROTO_UDP, "flood-router-full.rules", 2) })
}

func floodTest(t *testing.T, proto int, rules string, limit uint64) {
	needRoot(t, "socat", "curl", "python3", "ss")
	tp := newTopo(t)
	tp.httpServer(t)
	big := make([]byte, xferBytes)
	for i := range big {
		big[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(tp.dir, "www", "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	tp.echoServer(t, 7000)
	var srcs []net.IP
	for i := range floodSources {
		ip := net.IPv4(198, 18, 1, byte(floodFirst+i)).To4()
		srcs = append(srcs, ip)
		mustNS(t, tp.client, "", "ip", "addr", "add", ip.String()+"/32", "dev", "eth0")
	}
	// The server drops (and counts) the flood: its connections never
	// progress past their first packet.
	mustNS(t, tp.server, fmt.Sprintf(`table inet swflood {
	counter flood { }
	chain in {
		type filter hook input priority 0; policy accept;
		ip saddr 198.18.1.64/26 tcp dport %d counter name flood drop
		ip saddr 198.18.1.64/26 udp dport %d counter name flood drop
	}
}
`, floodTCPPort, floodUDPPort), "nft", "-f", "-")

	sock := filepath.Join(tp.dir, "router.sock")
	maddr := routerCV4 + ":9090"
	d := tp.startDaemon(t, tp.router, sock, "--rules", testdata(t, rules),
		"--mode", "stateful", "--hooks", "forward", "--queues", "0-1", "--metrics", maddr)
	pid := d.cmd.Process.Pid

	// The assured connections, made before the flood.
	e := tp.dialEcho(t, 7000, 42000)
	e.tick(100*time.Millisecond, 1000)
	if !e.flows(5, 3*time.Second) {
		t.Fatal("the echo connection does not flow through the router")
	}
	type xferResult struct {
		out string
		err error
	}
	xfer := make(chan xferResult, 1)
	go func() {
		out, err := inNS(tp.client, "", "curl", "--noproxy", "*", "-sS", "-o", "/dev/null",
			"-w", "%{http_code} %{size_download}", "--limit-rate", "1M",
			"--connect-timeout", "3", "--max-time", "25", "http://"+serverV4+"/big.bin")
		xfer <- xferResult{out, err}
	}()
	if !waitFor(5*time.Second, func() bool {
		out, _ := inNS(tp.client, "", "ss", "-Htn", "state", "established", "dport", "= :80")
		return strings.TrimSpace(out) != ""
	}) {
		t.Fatal("the HTTP transfer did not start")
	}
	time.Sleep(300 * time.Millisecond)
	st0 := statusOf(t, sock)
	if uint64(st0.Limit) != limit || st0.Conntrack.Entries != 2 {
		t.Fatalf("before the flood the status shows limit %d and %d entries, want %d and 2 (the echo connection and the transfer)", st0.Limit, st0.Conntrack.Entries, limit)
	}
	rssBefore := vmRSS(t, pid)
	linesBefore := e.got.Load()

	// The flood, sampled while it runs.
	type floodResult struct{ sent, errs int }
	res := make(chan floodResult, 1)
	fd := rawSocket(t, tp.client)
	go func() {
		s, n := flood(fd, proto, srcs, net.ParseIP(serverV4).To4())
		res <- floodResult{s, n}
	}()
	var (
		rssMax, rssMid, entriesMax uint64
		samples                    int
		fr                         floodResult
	)
	tick := time.NewTicker(250 * time.Millisecond)
sampling:
	for i := 0; ; i++ {
		select {
		case fr = <-res:
			break sampling
		case <-tick.C:
		}
		r := vmRSS(t, pid)
		rssMax = max(rssMax, r)
		if i == 7 { // about 2 s into the flood
			rssMid = r
		}
		st := statusOf(t, sock)
		entriesMax = max(entriesMax, st.Conntrack.Entries)
		samples++
	}
	tick.Stop()
	rssEnd := vmRSS(t, pid)
	stEnd := statusOf(t, sock)
	m := scrape(t, tp.client, maddr)

	// The transfer and the echo connection come through whole.
	x := <-xfer
	if x.err != nil || strings.TrimSpace(x.out) != fmt.Sprintf("200 %d", xferBytes) {
		t.Errorf("the HTTP transfer in progress during the flood: %q, %v; want \"200 %d\"", x.out, x.err, xferBytes)
	}
	e.stopTicking()
	wrote := echoLines(t, e.written.Load())
	if !waitFor(10*time.Second, func() bool { return e.got.Load() == wrote }) {
		t.Errorf("the echo connection lost lines: %d written, %d came back", wrote, e.got.Load())
	}
	gotAll := e.got.Load()
	linesDuring := gotAll - linesBefore
	if !e.roundTrip(t, "after", 5*time.Second) {
		t.Error("the echo connection no longer answers after the flood")
	}
	time.Sleep(2 * time.Second)
	rssAfter := vmRSS(t, pid)
	stAfter := statusOf(t, sock)
	passed := -1
	if m := nftPackets.FindStringSubmatch(mustNS(t, tp.server, "", "nft", "list", "counter", "inet", "swflood", "flood")); m != nil {
		passed, _ = strconv.Atoi(m[1])
	}

	t.Logf("flood (%s): %d packets sent (%d send errors) from %d sources, %d reached the server; echo: %d lines came back during the flood, %d of %d in all; transfer: %q",
		floodProtoName(proto), fr.sent, fr.errs, floodSources, passed, linesDuring, gotAll, wrote, x.out)
	t.Logf("VmRSS: before %d KiB, mid-flood %d KiB, max during %d KiB, end of flood %d KiB, 2 s after %d KiB",
		rssBefore, rssMid, rssMax, rssEnd, rssAfter)
	t.Logf("conntrack: limit %d, entries max %d (%d samples) end %d after %d; inserted %d evicted %d refused %d (metrics: evicted %v refused %v entries %v)",
		stEnd.Limit, entriesMax, samples, stEnd.Conntrack.Entries, stAfter.Conntrack.Entries,
		stEnd.Conntrack.Inserted, stEnd.Conntrack.Evicted, stEnd.Conntrack.Refused,
		m[`statewall_conntrack_events_total{event="evicted"}`], m[`statewall_conntrack_events_total{event="refused"}`],
		m["statewall_conntrack_entries"])

	if fr.sent < 512*10 {
		t.Errorf("the flood sent only %d packets; the test wants at least ten times the limit", fr.sent)
	}
	// Memory: a generous bound derived from the limit, and no growth
	// between the middle and the end of the flood beyond a margin.
	const mib = 1024 // KiB
	if rssMax > rssBefore+64*mib || rssEnd > rssBefore+64*mib || rssAfter > rssBefore+64*mib {
		t.Errorf("resident memory grew beyond before + 64 MiB: before %d KiB, max %d, end %d, after %d", rssBefore, rssMax, rssEnd, rssAfter)
	}
	if rssMid != 0 && rssEnd > rssMid+16*mib {
		t.Errorf("resident memory kept growing during the flood: mid %d KiB, end %d KiB", rssMid, rssEnd)
	}
	// The table stays at its limit. Entries is an atomic count that a
	// Commit raises before it evicts (and lowers again when it cannot), so
	// a sample taken mid-packet may read one above the limit per
	// concurrent packet worker (two queues here); at rest it is exact.
	if entriesMax > limit+2 {
		t.Errorf("the table held %d entries during the flood, limit %d", entriesMax, limit)
	}
	if stEnd.Conntrack.Entries > limit || stAfter.Conntrack.Entries > limit {
		t.Errorf("entries %d at the end of the flood, %d after; limit %d", stEnd.Conntrack.Entries, stAfter.Conntrack.Entries, limit)
	}
	if got := m["statewall_conntrack_entries"]; got > float64(limit) || m["statewall_conntrack_limit"] != float64(limit) {
		t.Errorf("metrics: entries %v, limit %v; want at most and exactly %d", got, m["statewall_conntrack_limit"], limit)
	}
	ev, rf := m[`statewall_conntrack_events_total{event="evicted"}`], m[`statewall_conntrack_events_total{event="refused"}`]
	if ev+rf == 0 || uint64(ev) > stAfter.Conntrack.Evicted || uint64(rf) > stAfter.Conntrack.Refused {
		t.Errorf("metrics: evicted %v, refused %v; want evictions or refusals (status: %+v)", ev, rf, stEnd.Conntrack)
	}
	// Each flood packet made an entry (the rules pass the client side)
	// that a later one evicted, or was refused; the assured connections
	// are never evicted.
	if stEnd.Conntrack.Evicted+stEnd.Conntrack.Refused < uint64(fr.sent)/2 {
		t.Errorf("only %d evictions and %d refusals for %d flood packets", stEnd.Conntrack.Evicted, stEnd.Conntrack.Refused, fr.sent)
	}
	if limit == 2 && (stEnd.Conntrack.Refused < uint64(fr.sent)/2 || stEnd.Conntrack.Evicted != 0 || passed > fr.sent/100) {
		t.Errorf("with the table full of assured connections the flood should be refused, and nothing evicted: refused %d, evicted %d, %d of %d flood packets reached the server",
			stEnd.Conntrack.Refused, stEnd.Conntrack.Evicted, passed, fr.sent)
	}
	tp.stopClean(t, d)
}

// echoLines is how many lines dialEcho and tick wrote, "hello" and then
// "line 0", "line 1" ..., from the bytes they wrote.
func echoLines(t *testing.T, written int64) int64 {
	t.Helper()
	n, b := int64(1), int64(len("hello\n"))
	for b < written {
		b += int64(len(fmt.Sprintf("line %d\n", n-1)))
		n++
	}
	if b != written {
		t.Fatalf("%d bytes written to the echo connection are not whole lines", written)
	}
	return n
}

func floodProtoName(p int) string {
	if p == syscall.IPPROTO_TCP {
		return "TCP SYN"
	}
	return "UDP"
}

// vmRSS is the resident memory of pid in KiB (VmRSS of /proc/PID/status).
func vmRSS(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatalf("VmRSS: %q", line)
			}
			return n
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// rawSocket opens a raw IPv4 socket (IP_HDRINCL) inside the namespace ns;
// the socket stays there after the thread leaves it.
func rawSocket(t *testing.T, ns string) int {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	fd, serr := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
	if err := netns.Set(orig); err != nil {
		runtime.LockOSThread() // the runtime discards this thread
		t.Fatalf("leaving namespace %s: %v", ns, err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	return fd
}

// flood writes, on the raw socket fd, up to floodPackets first packets of new connections (TCP
// SYN or UDP) from srcs in turn, each from a new source port, to dst at
// floodRate per second, for at most floodFor. It returns how many it sent
// and how many sends failed (ENOBUFS).
func flood(fd, proto int, srcs []net.IP, dst net.IP) (sent, errs int) {
	to := &syscall.SockaddrInet4{}
	copy(to.Addr[:], dst)
	pkt := make([]byte, 20+24)
	start := time.Now()
	for i := 0; i < floodPackets; i++ {
		el := time.Since(start)
		if el >= floodFor {
			break
		}
		if ahead := time.Duration(float64(i)/floodRate*float64(time.Second)) - el; ahead > 0 {
			time.Sleep(ahead)
		}
		src := srcs[i%len(srcs)]
		sport := uint16(10000 + (i/len(srcs))%50000)
		var p []byte
		if proto == syscall.IPPROTO_TCP {
			p = synPacket(pkt, src, dst, sport, floodTCPPort)
		} else {
			p = udpPacket(pkt, src, dst, sport, floodUDPPort)
		}
		if err := syscall.Sendto(fd, p, 0, to); err != nil {
			errs++
			continue
		}
		sent++
	}
	return sent, errs
}

// ipv4Header writes a 20-byte header; the kernel fills in the checksum
// and the ID.
func ipv4Header(b []byte, proto int, src, dst net.IP, total int) {
	b[0], b[1] = 0x45, 0
	binary.BigEndian.PutUint16(b[2:], uint16(total))
	binary.BigEndian.PutUint32(b[4:], 0x4000) // ID 0, DF
	b[8], b[9] = 64, byte(proto)
	b[10], b[11] = 0, 0
	copy(b[12:16], src)
	copy(b[16:20], dst)
}

// l4Checksum is the TCP/UDP checksum of seg with the IPv4 pseudo-header.
func l4Checksum(proto int, src, dst net.IP, seg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for len(b) >= 2 {
			sum += uint32(binary.BigEndian.Uint16(b))
			b = b[2:]
		}
		if len(b) == 1 {
			sum += uint32(b[0]) << 8
		}
	}
	add(src)
	add(dst)
	sum += uint32(proto) + uint32(len(seg))
	add(seg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func synPacket(b []byte, src, dst net.IP, sport, dport uint16) []byte {
	b = b[:40]
	ipv4Header(b, syscall.IPPROTO_TCP, src, dst, len(b))
	tcp := b[20:]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], rand.Uint32())
	binary.BigEndian.PutUint32(tcp[8:], 0)
	tcp[12], tcp[13] = 5<<4, 0x02 // SYN
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	tcp[16], tcp[17], tcp[18], tcp[19] = 0, 0, 0, 0
	binary.BigEndian.PutUint16(tcp[16:], l4Checksum(syscall.IPPROTO_TCP, src, dst, tcp))
	return b
}

func udpPacket(b []byte, src, dst net.IP, sport, dport uint16) []byte {
	b = b[:20+8+16]
	ipv4Header(b, syscall.IPPROTO_UDP, src, dst, len(b))
	udp := b[20:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	udp[6], udp[7] = 0, 0
	copy(udp[8:], "statewall flood!")
	c := l4Checksum(syscall.IPPROTO_UDP, src, dst, udp)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], c)
	return b
}
