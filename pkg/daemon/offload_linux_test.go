//go:build linux

package daemon

import (
	"path/filepath"
	"testing"
	"time"
)

// TestOffload: with --offload on the router, an echo connection is handed
// to the kernel once established: its packets stop reaching the queue
// while its lines still come back, and statewall's table keeps it
// (`statewall conntrack` lists it); when the client closes it, the
// kernel's conntrack ends it (its TIME_WAIT shortened to 1 s in the
// router) and its DESTROY event removes statewall's entry. A second
// connection, deleted with `statewall conntrack --delete` while
// offloaded, is handed back to the queue, where its next segment meets
// no entry and is blocked, as without offload.
func TestOffload(t *testing.T) {
	needRoot(t, "socat")
	tp := newTopo(t)
	tp.echoServer(t, 7000)
	mustNS(t, tp.router, "", "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1",
		"net.netfilter.nf_conntrack_tcp_timeout_fin_wait=1", "net.netfilter.nf_conntrack_tcp_timeout_close_wait=1",
		"net.netfilter.nf_conntrack_tcp_timeout_last_ack=1")
	sock := filepath.Join(tp.dir, "router.sock")
	rulesFile := filepath.Join(tp.dir, "router.rules")
	const passAll = "set default block\npass from { 198.18.1.0/24 }\n"
	writeRules(t, rulesFile, passAll)
	d := tp.startDaemon(t, tp.router, sock, "--rules", rulesFile, "--hooks", "forward", "--offload")
	reload := func(text string) {
		t.Helper()
		writeRules(t, rulesFile, text)
		if _, stderr, err := cli("reload", "--socket", sock); err != nil {
			t.Fatalf("reload: %v: %s", err, stderr)
		}
	}

	queued := func() uint64 {
		var n uint64
		for _, q := range statusOf(t, sock).Queues {
			n += q.Packets
		}
		return n
	}
	active := func() int {
		if o := statusOf(t, sock).Offload; o != nil {
			return o.Active
		}
		return -1
	}

	e := tp.dialEcho(t, 7000, 41000)
	for i := range 3 {
		if !e.roundTrip(t, "warm", 3*time.Second) {
			t.Fatalf("round trip %d failed", i)
		}
	}
	if !waitFor(5*time.Second, func() bool { return active() == 1 }) {
		t.Fatalf("no connection offloaded: %+v", statusOf(t, sock).Offload)
	}
	before := queued()
	for i := range 20 {
		if !e.roundTrip(t, "offloaded", 3*time.Second) {
			t.Fatalf("offloaded round trip %d failed", i)
		}
	}
	if got := queued() - before; got > 2 {
		t.Errorf("%d packets of 20 offloaded round trips reached the queue", got)
	}
	if conns := conntrackJSON(t, sock, "--sport", "41000"); len(conns) != 1 || conns[0].State != "ESTABLISHED" {
		t.Errorf("the offloaded connection in statewall conntrack: %+v", conns)
	}

	// A reload hands it back; rules that still pass its first packet
	// let it go to the kernel again at its next packet; rules that no
	// longer do keep it on the queue, where it passes by state.
	reload(passAll)
	if !waitFor(5*time.Second, func() bool { return active() == 0 }) {
		t.Fatalf("a reload did not hand the connection back: %+v", statusOf(t, sock).Offload)
	}
	for range 2 {
		e.roundTrip(t, "after reload", 3*time.Second)
	}
	if !waitFor(5*time.Second, func() bool { return active() == 1 }) {
		t.Fatalf("not offloaded again after a reload with the same rules: %+v", statusOf(t, sock).Offload)
	}
	reload("set default block\npass proto tcp from { 198.18.1.0/24 } to any port 80\n")
	if !waitFor(5*time.Second, func() bool { return active() == 0 }) {
		t.Fatalf("a reload did not hand the connection back: %+v", statusOf(t, sock).Offload)
	}
	before = queued()
	for i := range 5 {
		if !e.roundTrip(t, "kept by state", 3*time.Second) {
			t.Fatalf("round trip %d after the rules stopped passing new connections to port 7000 failed", i)
		}
	}
	if got := queued() - before; got < 10 || active() != 0 {
		t.Errorf("after a reload that no longer passes the connection: %d packets queued for 5 round trips, %d offloaded; want all queued, none offloaded", got, active())
	}
	reload(passAll)
	for range 2 {
		e.roundTrip(t, "passed again", 3*time.Second)
	}
	if !waitFor(5*time.Second, func() bool { return active() == 1 }) {
		t.Fatalf("not offloaded again once the rules pass it again: %+v", statusOf(t, sock).Offload)
	}

	// The end: the client closes, the kernel's conntrack ends the
	// connection, statewall's entry goes.
	e.in.Close()
	if !waitFor(20*time.Second, func() bool { return len(conntrackJSON(t, sock, "--sport", "41000")) == 0 }) {
		t.Errorf("the ended connection is still in statewall's table: %+v (offload %+v)",
			conntrackJSON(t, sock, "--sport", "41000"), statusOf(t, sock).Offload)
	}
	if o := statusOf(t, sock).Offload; o == nil || o.Ended < 1 || o.Active != 0 {
		t.Errorf("offload after the end: %+v", o)
	}

	// Deleted while offloaded: handed back, and blocked as any
	// connection statewall does not know.
	e2 := tp.dialEcho(t, 7000, 41001)
	for range 3 {
		e2.roundTrip(t, "warm", 3*time.Second)
	}
	if !waitFor(5*time.Second, func() bool { return active() == 1 }) {
		t.Fatalf("the second connection was not offloaded: %+v", statusOf(t, sock).Offload)
	}
	if out, _, err := cli("conntrack", "--socket", sock, "--delete", "--sport", "41001"); err != nil {
		t.Fatalf("conntrack --delete: %v: %s", err, out)
	}
	if !waitFor(5*time.Second, func() bool { return active() == 0 }) {
		t.Errorf("the deleted connection is still offloaded: %+v", statusOf(t, sock).Offload)
	}
	if e2.roundTrip(t, "after delete", 2*time.Second) {
		t.Errorf("a deleted connection still flows: the kernel carries it")
	}
	tp.stopClean(t, d)
}
