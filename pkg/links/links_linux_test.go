package links

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statewall/statewall/internal/command"
	"github.com/statewall/statewall/internal/testenv"
)

// waitTime bounds every wait for the kernel or the Watcher.
const waitTime = 5 * time.Second

var netnsSeq atomic.Int32

// newNetns makes a network namespace for one test and removes it when the
// test ends, failed or not.
func newNetns(t *testing.T) string {
	t.Helper()
	testenv.NeedRoot(t, "creates a network namespace and links in it", "ip")
	name := fmt.Sprintf("sw-links-%d-%d", os.Getpid(), netnsSeq.Add(1))
	if _, err := command.Run(context.Background(), command.Cmd{}, "ip", "netns", "add", name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := command.Run(context.Background(), command.Cmd{}, "ip", "netns", "del", name); err != nil {
			t.Error(err)
		}
	})
	return name
}

// ip runs "ip -n ns args..." and fails the test if it fails.
func ip(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := command.Run(context.Background(), command.Cmd{}, "ip", append([]string{"-n", ns}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ipBatch runs the ip commands in lines, one per line, in one process.
func ipBatch(t *testing.T, ns string, lines []string) {
	t.Helper()
	c := command.Cmd{Stdin: strings.Join(lines, "\n") + "\n"}
	if _, err := command.Run(context.Background(), c, "ip", "-n", ns, "-batch", "-"); err != nil {
		t.Fatal(err)
	}
}

// recorder is a callback that keeps what it was called with.
type recorder struct {
	mu      sync.Mutex
	snaps   []Snapshot
	gate    chan struct{} // when set, each call after the first waits on it
	entered chan struct{}
}

func (r *recorder) fn(s Snapshot) {
	r.mu.Lock()
	r.snaps = append(r.snaps, s)
	n, gate, entered := len(r.snaps), r.gate, r.entered
	r.mu.Unlock()
	if n > 1 && gate != nil {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-gate
	}
}

func (r *recorder) all() []Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.snaps)
}

func (r *recorder) last() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.snaps) == 0 {
		return Snapshot{}
	}
	return r.snaps[len(r.snaps)-1]
}

// start starts a Watcher in ns that the test closes when it ends.
func start(t *testing.T, ns string, cfg Config, r *recorder) *Watcher {
	t.Helper()
	cfg.NetnsName = ns
	w, err := Start(context.Background(), cfg, r.fn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if len(r.all()) != 1 {
		t.Fatalf("Start returned after %d calls of fn, want 1 (the initial Snapshot)", len(r.all()))
	}
	return w
}

// waitFor polls the last published Snapshot until ok holds, failing the
// test after waitTime.
func waitFor(t *testing.T, r *recorder, what string, ok func(Snapshot) bool) Snapshot {
	t.Helper()
	deadline := time.Now().Add(waitTime)
	for {
		s := r.last()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, still not %s; last Snapshot:\n%s", waitTime, what, show(s))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func show(s Snapshot) string {
	var b strings.Builder
	for _, l := range s.Links() {
		fmt.Fprintf(&b, "  %d %s up=%v lo=%v %v\n", l.Index, l.Name, l.Up, l.Loopback, l.Addrs)
	}
	return b.String()
}

func hasAddr(s Snapshot, name, p string) bool {
	l, ok := s.ByName(name)
	return ok && slices.Contains(l.Addrs, netip.MustParsePrefix(p))
}

// addLink adds a veth pair, name and name+"p" (veth rather than dummy,
// which not every kernel has), both up, with one IPv4 and one IPv6 address
// on name.
func addLink(t *testing.T, ns, name, v4, v6 string) {
	t.Helper()
	ip(t, ns, "link", "add", name, "type", "veth", "peer", "name", name+"p")
	ip(t, ns, "addr", "add", v4, "dev", name)
	ip(t, ns, "addr", "add", v6, "dev", name, "nodad")
	ip(t, ns, "link", "set", name+"p", "up")
	ip(t, ns, "link", "set", name, "up")
}

func TestInitialSnapshot(t *testing.T) {
	ns := newNetns(t)
	ip(t, ns, "link", "set", "lo", "up")
	addLink(t, ns, "d0", "198.18.1.1/24", "fd00:198:18::1/64")
	r := &recorder{}
	w := start(t, ns, Config{}, r)

	s := r.all()[0]
	lo, ok := s.ByName("lo")
	if !ok || !lo.Loopback || !lo.Up || lo.Index != 1 ||
		!slices.Contains(lo.Addrs, pfx("127.0.0.1/8")) || !slices.Contains(lo.Addrs, pfx("::1/128")) {
		t.Errorf("lo = %+v", lo)
	}
	d0, ok := s.ByName("d0")
	if !ok || d0.Loopback || !d0.Up ||
		!slices.Contains(d0.Addrs, pfx("198.18.1.1/24")) || !slices.Contains(d0.Addrs, pfx("fd00:198:18::1/64")) {
		t.Errorf("d0 = %+v", d0)
	}
	if byIdx, _ := s.ByIndex(d0.Index); byIdx.Name != "d0" {
		t.Errorf("ByIndex(%d) = %+v", d0.Index, byIdx)
	}
	if got := len(s.Links()); got != 3 {
		t.Errorf("%d links, want lo, d0 and d0p:\n%s", got, show(s))
	}
	// The IPv6 link-local address comes when d0 goes up; it is reported.
	waitFor(t, r, "d0 with a link-local address", func(s Snapshot) bool {
		l, _ := s.ByName("d0")
		return slices.ContainsFunc(l.Addrs, func(p netip.Prefix) bool { return p.Addr().IsLinkLocalUnicast() })
	})
	if w.Stats().Dumps != 1 {
		t.Errorf("Stats = %+v, want one dump", w.Stats())
	}

	cur, err := Current(Config{NetnsName: ns})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := show(cur), show(w.Snapshot()); got != want {
		t.Errorf("Current:\n%swant what the Watcher has:\n%s", got, want)
	}
}

func TestAddressAddRemove(t *testing.T) {
	ns := newNetns(t)
	addLink(t, ns, "d0", "198.18.1.1/24", "fd00:198:18::1/64")
	r := &recorder{}
	start(t, ns, Config{}, r)

	ip(t, ns, "addr", "add", "198.18.2.1/25", "dev", "d0")
	ip(t, ns, "addr", "add", "fd00:198:18::2/64", "dev", "d0", "nodad")
	waitFor(t, r, "d0 with the new addresses", func(s Snapshot) bool {
		return hasAddr(s, "d0", "198.18.2.1/25") && hasAddr(s, "d0", "fd00:198:18::2/64")
	})
	ip(t, ns, "addr", "del", "198.18.2.1/25", "dev", "d0")
	ip(t, ns, "addr", "del", "fd00:198:18::1/64", "dev", "d0")
	waitFor(t, r, "d0 without the removed addresses", func(s Snapshot) bool {
		return !hasAddr(s, "d0", "198.18.2.1/25") && !hasAddr(s, "d0", "fd00:198:18::1/64") &&
			hasAddr(s, "d0", "198.18.1.1/24") && hasAddr(s, "d0", "fd00:198:18::2/64")
	})
}

// TestTentativeAddress: an IPv6 address still doing duplicate address
// detection (a veth whose peer is down has no carrier, so DAD waits) is
// reported like any other.
func TestTentativeAddress(t *testing.T) {
	ns := newNetns(t)
	ip(t, ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	ip(t, ns, "link", "set", "v0", "up")
	r := &recorder{}
	start(t, ns, Config{}, r)

	ip(t, ns, "addr", "add", "fd00:198:18::5/64", "dev", "v0")
	if out := ip(t, ns, "-6", "addr", "show", "dev", "v0"); !strings.Contains(out, "tentative") {
		t.Fatalf("the address is not tentative, so this test tests nothing:\n%s", out)
	}
	waitFor(t, r, "v0 with its tentative address", func(s Snapshot) bool {
		return hasAddr(s, "v0", "fd00:198:18::5/64")
	})
}

func TestRename(t *testing.T) {
	ns := newNetns(t)
	addLink(t, ns, "d0", "198.18.1.1/24", "fd00:198:18::1/64")
	r := &recorder{}
	w := start(t, ns, Config{}, r)
	old, _ := w.Snapshot().ByName("d0")

	ip(t, ns, "link", "set", "dev", "d0", "down")
	ip(t, ns, "link", "set", "dev", "d0", "name", "d1")
	s := waitFor(t, r, "d0 renamed d1", func(s Snapshot) bool {
		_, hasOld := s.ByName("d0")
		l, hasNew := s.ByName("d1")
		return !hasOld && hasNew && !l.Up
	})
	l, _ := s.ByName("d1")
	if l.Index != old.Index || !slices.Contains(l.Addrs, pfx("198.18.1.1/24")) {
		t.Errorf("after the rename d1 = %+v, want index %d with 198.18.1.1/24", l, old.Index)
	}
	if l, _ := s.ByIndex(old.Index); l.Name != "d1" {
		t.Errorf("ByIndex(%d) = %+v, want d1", old.Index, l)
	}
}

func TestDeleteRecreate(t *testing.T) {
	ns := newNetns(t)
	addLink(t, ns, "d0", "198.18.1.1/24", "fd00:198:18::1/64")
	r := &recorder{}
	w := start(t, ns, Config{}, r)
	old, _ := w.Snapshot().ByName("d0")

	ip(t, ns, "link", "del", "d0")
	waitFor(t, r, "d0 gone", func(s Snapshot) bool {
		_, byName := s.ByName("d0")
		_, byIndex := s.ByIndex(old.Index)
		return !byName && !byIndex
	})
	addLink(t, ns, "d0", "198.18.3.1/24", "fd00:198:18::3/64")
	s := waitFor(t, r, "d0 back with its new address", func(s Snapshot) bool {
		return hasAddr(s, "d0", "198.18.3.1/24") && hasAddr(s, "d0", "fd00:198:18::3/64")
	})
	l, _ := s.ByName("d0")
	if l.Index == old.Index || hasAddr(s, "d0", "198.18.1.1/24") {
		t.Errorf("re-created d0 = %+v; the old one had index %d and 198.18.1.1/24", l, old.Index)
	}
	if _, ok := s.ByIndex(old.Index); ok {
		t.Errorf("the old index %d is back", old.Index)
	}
}

func TestUpDown(t *testing.T) {
	ns := newNetns(t)
	addLink(t, ns, "d0", "198.18.1.1/24", "fd00:198:18::1/64")
	r := &recorder{}
	start(t, ns, Config{}, r)

	up := func(want bool) func(Snapshot) bool {
		return func(s Snapshot) bool { l, ok := s.ByName("d0"); return ok && l.Up == want }
	}
	ip(t, ns, "link", "set", "d0", "down")
	waitFor(t, r, "d0 down", up(false))
	ip(t, ns, "link", "set", "d0", "up")
	waitFor(t, r, "d0 up", up(true))
}

// TestBridgePortLeavesIsNoDelete pins the bridge's RTM_DELLINK with family
// AF_BRIDGE, sent when a port leaves its bridge: taken for a removal, the
// port would lose its addresses (and vanish until its next RTM_NEWLINK)
// while it still exists.
func TestBridgePortLeavesIsNoDelete(t *testing.T) {
	ns := newNetns(t)
	addLink(t, ns, "d0", "198.18.1.1/24", "fd00:198:18::1/64")
	ip(t, ns, "link", "add", "br0", "type", "bridge")
	r := &recorder{}
	start(t, ns, Config{}, r)

	ip(t, ns, "link", "set", "d0", "master", "br0")
	ip(t, ns, "link", "set", "d0", "nomaster")
	// A change after the others, to know they have all been read.
	ip(t, ns, "addr", "add", "198.18.2.1/24", "dev", "br0")
	waitFor(t, r, "br0 with its address", func(s Snapshot) bool { return hasAddr(s, "br0", "198.18.2.1/24") })
	for i, s := range r.all() {
		if !hasAddr(s, "d0", "198.18.1.1/24") {
			t.Errorf("Snapshot %d lost d0 or its address:\n%s", i, show(s))
		}
	}
}

func TestCloseStops(t *testing.T) {
	ns := newNetns(t)
	addLink(t, ns, "d0", "198.18.1.1/24", "fd00:198:18::1/64")
	r := &recorder{}
	w := start(t, ns, Config{}, r)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Done():
	default:
		t.Fatal("Done is open after Close returned")
	}
	if err := w.Err(); err != nil {
		t.Errorf("Err after Close = %v", err)
	}
	n := len(r.all())
	ip(t, ns, "addr", "add", "198.18.2.1/24", "dev", "d0")
	time.Sleep(50 * time.Millisecond)
	if got := len(r.all()); got != n {
		t.Errorf("fn called %d times after Close", got-n)
	}
	w.Close() // idempotent
}

func TestContextCancelStops(t *testing.T) {
	ns := newNetns(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &recorder{}
	w, err := Start(ctx, Config{NetnsName: ns}, r.fn)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-w.Done():
	case <-time.After(waitTime):
		t.Fatal("the Watcher's goroutine still runs after its context ended")
	}
	if err := w.Err(); err != nil {
		t.Errorf("Err after cancel = %v", err)
	}
}

func TestStartCancelled(t *testing.T) {
	ns := newNetns(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if w, err := Start(ctx, Config{NetnsName: ns}, func(Snapshot) {}); err == nil {
		w.Close()
		t.Fatal("Start with a cancelled context succeeded")
	}
}

func TestNoSuchNetns(t *testing.T) {
	testenv.NeedRoot(t, "opens network namespaces", "ip")
	if _, err := Start(context.Background(), Config{NetnsName: "sw-links-no-such"}, func(Snapshot) {}); err == nil || !strings.Contains(err.Error(), "sw-links-no-such") {
		t.Errorf("Start in a missing namespace: %v", err)
	}
	if _, err := Current(Config{NetnsName: "sw-links-no-such"}); err == nil {
		t.Error("Current in a missing namespace succeeded")
	}
}

// addrLines returns n "addr add" lines for d0, from 198.18.4.1/32 up.
func addrLines(n int) []string {
	var lines []string
	a := netip.MustParseAddr("198.18.4.1")
	for range n {
		lines = append(lines, "addr add "+a.String()+"/32 dev d0")
		a = a.Next()
	}
	return lines
}

// TestBurstCoalesced: a thousand addresses added at once cost far fewer
// Snapshots than a thousand.
func TestBurstCoalesced(t *testing.T) {
	ns := newNetns(t)
	addLink(t, ns, "d0", "198.18.1.1/24", "fd00:198:18::1/64")
	r := &recorder{}
	w := start(t, ns, Config{}, r)

	const n = 1000
	ipBatch(t, ns, addrLines(n))
	last := netip.MustParseAddr("198.18.4.1")
	for range n - 1 {
		last = last.Next()
	}
	waitFor(t, r, "d0 with all the addresses", func(s Snapshot) bool { return hasAddr(s, "d0", last.String()+"/32") })
	l, _ := w.Snapshot().ByName("d0")
	if len(l.Addrs) < n {
		t.Errorf("d0 has %d addresses, want at least %d", len(l.Addrs), n)
	}
	st := w.Stats()
	t.Logf("%d addresses: %+v", n, st)
	if st.Publishes > n/10 {
		t.Errorf("%d Snapshots for a burst of %d addresses: %+v", st.Publishes, n, st)
	}
}

// TestOverrunRedumps stalls fn so that the kernel overruns a small
// notification buffer, then checks that the Watcher counted the overrun,
// dumped again, and shows every address.
func TestOverrunRedumps(t *testing.T) {
	ns := newNetns(t)
	addLink(t, ns, "d0", "198.18.1.1/24", "fd00:198:18::1/64")
	gate := make(chan struct{})
	r := &recorder{gate: gate, entered: make(chan struct{}, 1)}
	w := start(t, ns, Config{ReadBuffer: 4096}, r)

	ip(t, ns, "addr", "add", "198.18.2.1/24", "dev", "d0")
	select {
	case <-r.entered: // fn now holds the Watcher's goroutine
	case <-time.After(waitTime):
		t.Fatal("fn was not called for the first address")
	}
	const n = 300
	ipBatch(t, ns, addrLines(n))
	r.mu.Lock()
	r.gate = nil
	r.mu.Unlock()
	close(gate)

	last := netip.MustParseAddr("198.18.4.1")
	for range n - 1 {
		last = last.Next()
	}
	waitFor(t, r, "d0 with all the addresses", func(s Snapshot) bool { return hasAddr(s, "d0", last.String()+"/32") })
	st := w.Stats()
	if st.Overruns == 0 || st.Dumps < 2 {
		t.Errorf("Stats = %+v, want an overrun and a second dump", st)
	}
	if l, _ := w.Snapshot().ByName("d0"); len(l.Addrs) < n+2 {
		t.Errorf("d0 has %d addresses after the re-dump, want at least %d", len(l.Addrs), n+2)
	}
}
