package hasync

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/conntrack/tcpstate"
)

// startPair starts a and b, each dialling the other, and waits until
// both have sent their bulk.
func startPair(t *testing.T, mod func(*Config)) (a, b *tnode) {
	t.Helper()
	m := newMemNet()
	a = startNode(t, m, "a", []string{"b"}, mod)
	b = startNode(t, m, "b", []string{"a"}, mod)
	a.notes.wait(t, "bulk out", 1)
	b.notes.wait(t, "bulk out", 1)
	return a, b
}

// TestSyncStreamsChanges: connections committed on a appear on b, their
// TCP state follows, a deletion removes them, and b sends none of them
// back (loop suppression).
func TestSyncStreamsChanges(t *testing.T) {
	a, b := startPair(t, nil)

	tcp := a.see("tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000 win=8192")
	b.waitTable("the SYN's entry", func() bool {
		e, ok := b.entry(tcp)
		return ok && e.TCPState == tcpstate.SynSent && e.FromPeer
	})

	a.see("tcp 198.18.0.2:80 > 198.18.0.1:40000 SA seq=5000 ack=1001 win=8192")
	a.see("tcp 198.18.0.1:40000 > 198.18.0.2:80 A seq=1001 ack=5001 win=8192")
	b.waitTable("the handshake's end", func() bool {
		e, ok := b.entry(tcp)
		return ok && e.TCPState == tcpstate.Established && e.Assured
	})

	udp := a.see("udp 198.18.0.1:5353 > 198.18.0.2:53 len=30")
	icmp := a.see("icmp 198.18.0.1 > 198.18.0.2 type=8 id=7 seq=1 len=56")
	b.waitTable("UDP and ICMP entries", func() bool {
		_, u := b.entry(udp)
		_, i := b.entry(icmp)
		return u && i
	})

	if n := a.table.Delete(a.clock.Load(), func(e *conntrack.EntryInfo) bool { return e.Original == tcp }); n != 1 {
		t.Fatalf("deleted %d entries on a, want 1", n)
	}
	b.waitTable("the deletion", func() bool {
		_, ok := b.entry(tcp)
		return !ok
	})

	// Window edges move without an event: the dirty export carries them.
	a.see("tcp 198.18.0.1:40001 > 198.18.0.2:80 S seq=1000 win=8192")
	a.see("tcp 198.18.0.2:80 > 198.18.0.1:40001 SA seq=5000 ack=1001 win=8192")
	k2 := a.see("tcp 198.18.0.1:40001 > 198.18.0.2:80 A seq=1001 ack=5001 win=8192")
	b.waitTable("the second connection", func() bool {
		e, ok := b.entry(k2)
		return ok && e.TCPState == tcpstate.Established
	})
	merged := b.link(In, "a").Merged
	a.see("tcp 198.18.0.1:40001 > 198.18.0.2:80 PA seq=1001 ack=5001 win=8192 len=1000")
	b.waitTable("the data's bytes", func() bool {
		e, _ := b.entry(k2)
		return e.Packets[0] >= 3
	})

	sa, sb := a.link(Out, "b"), b.link(In, "a")
	if sa.RecordsSent == 0 || sa.DeletesSent != 1 || sa.State != StateConnected || sa.Name != "b" || sa.Node != "b" {
		t.Errorf("a's link out: %+v", sa)
	}
	if sb.Installed < 4 || sb.Merged <= merged || sb.DeletesReceived != 1 || sb.Removed != 1 || sb.State != StateConnected || sb.Node != "a" {
		t.Errorf("b's link in: %+v", sb)
	}
	if sb.CutOff.Total() != 0 || b.node.Stats().Refused.Total() != 0 {
		t.Errorf("b cut off or refused: %+v %+v", sb.CutOff, b.node.Stats().Refused)
	}
	// a waits for acks asynchronously: the lag of every frame b acked
	// is measured by then.
	if sa.Lag.Count == 0 || sa.Lag.P99Seconds < sa.Lag.P50Seconds {
		t.Errorf("a's lag: %+v", sa.Lag)
	}
	// b's own packets touched nothing: it sent a's connections back to a
	// in no record (its bulk was of an empty table).
	if bo := b.link(Out, "a"); bo.RecordsSent != 0 || bo.DeletesSent != 0 {
		t.Errorf("b sent a's entries back: %+v", bo)
	}
	if ai := a.link(In, "b"); ai.Installed+ai.Merged+ai.Stale != 0 {
		t.Errorf("a got records from b: %+v", ai)
	}
}

// TestBulkRefillsRestartedPeer: a peer that starts late, or restarts
// with an empty table, gets every connection in the bulk.
func TestBulkRefillsRestartedPeer(t *testing.T) {
	m := newMemNet()
	a := startNode(t, m, "a", []string{"b"}, nil)
	const n = 2000 // four RECORDS frames
	for i := range n {
		a.see(fmt.Sprintf("udp 198.18.%d.%d:4000 > 198.19.0.1:53", 1+i/250, 1+i%250))
	}
	b := startNode(t, m, "b", nil, nil)
	b.waitTable("the bulk", func() bool { return b.table.Len() == n })
	b.notes.wait(t, "bulk in", 1)
	if st := b.link(In, "a"); st.Bulks != 1 || st.LastBulkRecords != n || st.Installed != n {
		t.Errorf("b after the bulk: %+v", st)
	}

	b.stop()
	b2 := startNode(t, m, "b", nil, nil)
	b2.waitTable("the bulk after the restart", func() bool { return b2.table.Len() == n })
	a.notes.wait(t, "bulk out", 2)
	if st := a.link(Out, "b"); st.Bulks != 2 || st.LastBulkRecords != n || st.Sessions != 2 {
		t.Errorf("a after two bulks: %+v", st)
	}
}

// TestRefusesUnauthenticated: a client with a certificate from another
// CA, a plain TCP client, and one whose name is not allowed, get nothing
// in and nothing out, and are counted.
func TestRefusesUnauthenticated(t *testing.T) {
	m := newMemNet()
	b := startNode(t, m, "b", nil, func(c *Config) { c.AllowedPeers = []string{"a", "c"} })
	var k conntrack.Key
	{
		// The session a well-behaved peer would open, over each client.
		recs := testRecords(t, 3)
		k, _ = recs[0].Key()
		frames := append(appendHello(nil, 1, hello{version: Version, name: "a"}), recordsFrames(recs, 2, flagAck)...)

		wrongCA := tlsFor(t, "other", "a")
		wrongCA.RootCAs = tlsFor(t, "good", "a").RootCAs // it trusts b: only its own certificate is wrong
		wrongCA.ServerName = "b"
		p := dialRaw(t, m, b.addr, wrongCA)
		_ = p.write(frames)
		if err := p.closed(); err == nil {
			t.Error("wrong CA: connection not refused")
		}
		b.notes.wait(t, "refused handshake", 1)

		p = dialRaw(t, m, b.addr, nil)
		_ = p.write(frames)
		if err := p.closed(); err == nil {
			t.Error("plain TCP: connection not refused")
		}
		b.notes.wait(t, "refused handshake", 2)

		evil := tlsFor(t, "good", "evil")
		evil.ServerName = "b"
		p = dialRaw(t, m, b.addr, evil)
		_ = p.write(frames)
		if err := p.closed(); err == nil {
			t.Error("not allowed: connection not refused")
		}
		b.notes.wait(t, "refused not_allowed", 1)
	}
	if _, ok := b.entry(k); ok || b.table.Len() != 0 {
		t.Errorf("b installed %d entries from refused peers", b.table.Len())
	}
	st := b.node.Stats()
	if st.Refused.Handshake != 2 || st.Refused.NotAllowed != 1 || len(st.Peers) != 0 {
		t.Errorf("b's stats: %+v", st)
	}
}

// TestRefusesPlainTCPBytes: a plain TCP client reads nothing of the
// protocol back: no HELLO, no frame.
func TestRefusesPlainTCPBytes(t *testing.T) {
	m := newMemNet()
	b := startNode(t, m, "b", nil, nil)
	raw, err := m.Dial(context.Background(), "tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	got := make(chan []byte, 1)
	go func() {
		var all []byte
		buf := make([]byte, 4096)
		for {
			n, err := raw.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				got <- all
				return
			}
		}
	}()
	_, _ = raw.Write(appendHello(nil, 1, hello{version: Version, name: "a"}))
	b.notes.wait(t, "refused handshake", 1)
	if out := <-got; strings.Contains(string(out), magic) {
		t.Errorf("plain TCP client read sync frames: %q", out)
	}
}

// TestCutsOffBadPeer: an authenticated peer that breaks the protocol is
// cut off and counted, and b keeps installing a's changes.
func TestCutsOffBadPeer(t *testing.T) {
	m := newMemNet()
	b := startNode(t, m, "b", nil, nil)
	a := startNode(t, m, "a", []string{"b"}, nil)
	b.notes.wait(t, "bulk in", 1)

	badRec := testRecords(t, 1)
	badRec[0][37] = 9 // address family 9
	for i, c := range []struct {
		name   string
		frames func(p *rawPeer) []byte
		reason Reason
	}{
		{"garbage", func(p *rawPeer) []byte { return []byte("GET / HTTP/1.1\r\nHost: b\r\n\r\n") }, ReasonGarbage},
		{"unknown type", func(p *rawPeer) []byte { return appendValue(nil, 9, 0, p.nextSeq(), 0) }, ReasonGarbage},
		{"oversized", func(p *rawPeer) []byte { return appendHeader(nil, typeRecords, 0, p.nextSeq(), MaxFrame) }, ReasonOversized},
		{"replayed", func(p *rawPeer) []byte {
			s := p.nextSeq()
			return appendKeepalive(appendKeepalive(nil, s), s)
		}, ReasonReplayed},
		{"malformed record", func(p *rawPeer) []byte { return recordsFrames(badRec, p.nextSeq(), 0) }, ReasonMalformed},
		{"bulk end without a start", func(p *rawPeer) []byte { return appendValue(nil, typeBulkEnd, 0, p.nextSeq(), 0) }, ReasonGarbage},
		{"ack from a sender", func(p *rawPeer) []byte { return appendValue(nil, typeAck, 0, p.nextSeq(), 1) }, ReasonGarbage},
	} {
		cfg := tlsFor(t, "good", "c")
		p := dialRaw(t, m, b.addr, cfg)
		p.hello("c", Version)
		if f := p.next(); f.typ != typeHello {
			t.Fatalf("%s: b answered %s", c.name, typeName(f.typ))
		}
		p.drain()
		_ = p.write(c.frames(p))
		b.notes.wait(t, "cutoff in "+c.reason.String(), countReason(c.reason, i))

		// b still serves a.
		k := a.see(fmt.Sprintf("udp 198.18.0.1:%d > 198.18.0.2:53", 2000+i))
		b.waitTable("a's connection after "+c.name, func() bool {
			_, ok := b.entry(k)
			return ok
		})
	}
	cut := b.link(In, "c").CutOff
	if cut.Garbage != 4 || cut.Oversized != 1 || cut.Replayed != 1 || cut.Malformed != 1 {
		t.Errorf("c's cut-offs: %+v", cut)
	}
	if ps := b.link(In, "a"); ps.CutOff.Total() != 0 || ps.State != StateConnected {
		t.Errorf("a's link: %+v", ps)
	}
}

// countReason is how many cut-offs of reason the cases of
// TestCutsOffBadPeer up to case i make.
func countReason(r Reason, i int) int {
	reasons := []Reason{ReasonGarbage, ReasonGarbage, ReasonOversized, ReasonReplayed, ReasonMalformed, ReasonGarbage, ReasonGarbage}
	n := 0
	for _, x := range reasons[:i+1] {
		if x == r {
			n++
		}
	}
	return n
}

// TestRefusesOtherVersion: a HELLO of a later protocol version is
// refused, saying so.
func TestRefusesOtherVersion(t *testing.T) {
	m := newMemNet()
	b := startNode(t, m, "b", nil, nil)
	p := dialRaw(t, m, b.addr, tlsFor(t, "good", "a"))
	p.hello("a", Version+1)
	if err := p.closed(); err == nil {
		t.Error("connection not closed")
	}
	b.notes.wait(t, "refused version", 1)
	if st := b.node.Stats(); st.Refused.Version != 1 || len(st.Peers) != 0 {
		t.Errorf("b's stats: %+v", st)
	}
}

// TestAnnounceAcked: with a peer up, a deferred connection is acked.
func TestAnnounceAcked(t *testing.T) {
	a, b := startPair(t, func(c *Config) { c.Defer = waitLimit })
	k := a.see("tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000 win=8192")
	acked := make(chan bool, 1)
	a.node.Announce(k, func(ok bool) { acked <- ok })
	if !<-acked {
		t.Fatal("not acked")
	}
	// The ack means b has it.
	if _, ok := b.entry(k); !ok {
		t.Error("acked, but b has no entry")
	}
	st := a.node.Stats()
	if d := st.Defer; d.Deferred != 1 || d.Acked != 1 || d.TimedOut != 0 || d.Latency.Count != 1 {
		t.Errorf("defer stats: %+v", d)
	}
	if ps := a.link(Out, "b"); ps.Deferred != 1 || ps.Acked != 1 {
		t.Errorf("a's link: %+v", ps)
	}
}

// TestAnnounceNoPeer: without a peer session, done(false) at once.
func TestAnnounceNoPeer(t *testing.T) {
	m := newMemNet()
	a := startNode(t, m, "a", []string{"b"}, func(c *Config) { c.Defer = waitLimit })
	k := a.see("tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000 win=8192")
	called := false
	a.node.Announce(k, func(ok bool) {
		if ok {
			t.Error("acked without a peer")
		}
		called = true
	})
	if !called {
		t.Fatal("done not called at once")
	}
	if d := a.node.Stats().Defer; d.NoPeer != 1 || d.Deferred != 0 {
		t.Errorf("defer stats: %+v", d)
	}
}

// fakePeer listens at b's address in place of a node, for a to dial:
// it answers HELLO and reads a's bulk, then reads only when told.
func fakePeer(t *testing.T, m *memNet, a *tnode) *rawPeer {
	t.Helper()
	l := m.Listen(addrOf("b"))
	t.Cleanup(func() { l.Close() })
	p := acceptRaw(t, l, tlsFor(t, "good", "b"))
	if f := p.next(); f.typ != typeHello {
		t.Fatalf("a sent %s first", typeName(f.typ))
	}
	if err := p.write(appendHello(nil, p.nextSeq(), hello{version: Version, name: "b"})); err != nil {
		t.Fatal(err)
	}
	p.until(typeBulkEnd)
	a.notes.wait(t, "up out", 1)
	return p
}

// TestAnnounceTimesOut: a peer that stops reading does not ack, and the
// deferral ends with false after Defer.
func TestAnnounceTimesOut(t *testing.T) {
	m := newMemNet()
	const wait = 50 * time.Millisecond
	a := startNode(t, m, "a", []string{"b"}, func(c *Config) { c.Defer = wait })
	p := fakePeer(t, m, a)
	k := a.see("tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000 win=8192")
	start := time.Now()
	result := make(chan bool, 1)
	a.node.Announce(k, func(ok bool) { result <- ok })
	select {
	case ok := <-result:
		if ok {
			t.Fatal("acked by a peer that reads nothing")
		}
	case <-time.After(waitLimit):
		t.Fatal("no answer")
	}
	if d := time.Since(start); d < wait {
		t.Errorf("released after %v, before Defer (%v)", d, wait)
	}
	st := a.node.Stats()
	if d := st.Defer; d.Deferred != 1 || d.TimedOut != 1 || d.Acked != 0 {
		t.Errorf("defer stats: %+v", d)
	}
	if ps := a.link(Out, "b"); ps.TimedOut != 1 {
		t.Errorf("a's link: %+v", ps)
	}
	_ = p
}

// TestDroppedEventsResync: events lost while the peer was slow make a
// bulk that carries every entry.
func TestDroppedEventsResync(t *testing.T) {
	m := newMemNet()
	a := startNode(t, m, "a", []string{"b"}, func(c *Config) { c.MaxQueue = 1 })
	p := fakePeer(t, m, a)
	// p reads nothing now: a's writer blocks on its first frame, and the
	// events behind it overflow the queue of 1.
	const n = 50
	for i := range n {
		a.see(fmt.Sprintf("udp 198.18.0.1:%d > 198.18.0.2:53", 3000+i))
	}
	// Read on: whatever came before, then a bulk again, until every
	// entry has come.
	keys := map[conntrack.Key]bool{}
	bulks := 0
	for len(keys) < n {
		f := p.next()
		switch f.typ {
		case typeBulkStart:
			bulks++
		case typeRecords:
			fr := frame{header: header{typ: f.typ}, body: f.body}
			for i := range fr.count() {
				k, err := fr.record(i).Key()
				if err != nil {
					t.Fatal(err)
				}
				keys[k] = true
			}
		}
	}
	if bulks == 0 {
		t.Error("no bulk after the events were dropped")
	}
	if ps := a.link(Out, "b"); ps.ResyncsDropped == 0 {
		t.Errorf("no resync counted: %+v", ps)
	}
}

// TestStatsJSONAndCollector: Stats marshals with snake_case names and
// string states; the Collector's metrics gather without conflict.
func TestStatsJSONAndCollector(t *testing.T) {
	a, b := startPair(t, func(c *Config) { c.Defer = waitLimit })
	k := a.see("udp 198.18.0.1:5353 > 198.18.0.2:53")
	done := make(chan bool, 1)
	a.node.Announce(k, func(ok bool) { done <- ok })
	<-done
	_ = b
	st := a.node.Stats()
	j, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	// `statewall status` reads it back (text.go).
	var back Stats
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Peers) != len(st.Peers) {
		t.Fatalf("read back %d peers, want %d", len(back.Peers), len(st.Peers))
	}
	for i := range st.Peers {
		if g, w := back.Peers[i], st.Peers[i]; g.Direction != w.Direction || g.State != w.State || g.RecordsSent != w.RecordsSent {
			t.Errorf("peer %d read back as %v %v %d, want %v %v %d", i, g.Direction, g.State, g.RecordsSent, w.Direction, w.State, w.RecordsSent)
		}
	}
	for _, bad := range []string{`{"peers":[{"direction":"up"}]}`, `{"peers":[{"state":"asleep"}]}`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("%s read without an error", bad)
		}
	}
	for _, want := range []string{`"state":"connected"`, `"direction":"out"`, `"records_sent":`, `"cut_off":{"handshake":0`, `"lag":{"count":`, `"p99_seconds":`, `"defer":{"deferred":1`} {
		if !strings.Contains(string(j), want) {
			t.Errorf("Stats JSON lacks %s: %s", want, j)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(a.node))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
		if !strings.HasPrefix(mf.GetName(), "statewall_sync_") {
			t.Errorf("metric %s", mf.GetName())
		}
	}
	for _, want := range []string{"statewall_sync_peers_connected", "statewall_sync_messages_total", "statewall_sync_bytes_total",
		"statewall_sync_refused_total", "statewall_sync_lag_seconds", "statewall_sync_defer_total", "statewall_sync_defer_latency_seconds"} {
		if !got[want] {
			t.Errorf("no %s among %v", want, got)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	table := conntrack.New(conntrack.Config{})
	good := Config{Name: "a", TLS: tlsFor(t, "good", "a"), Now: func() int64 { return 0 }}
	for name, mod := range map[string]func(*Config){
		"no Now":  func(c *Config) { c.Now = nil },
		"no name": func(c *Config) { c.Name = "" },
		"no TLS":  func(c *Config) { c.TLS = nil },
		"missing cert file": func(c *Config) {
			c.TLS, c.CertFile, c.KeyFile, c.CAFile = nil, "/nonexistent/a.crt", "/nonexistent/a.key", "/nonexistent/ca.crt"
		},
		"peer without port":    func(c *Config) { c.Peers = []string{"198.18.0.2"} },
		"DeadAfter too short":  func(c *Config) { c.KeepAlive, c.DeadAfter = time.Second, time.Second },
		"TLS without a CA":     func(c *Config) { c.TLS = c.TLS.Clone(); c.TLS.RootCAs, c.TLS.ClientCAs = nil, nil },
		"TLS without any cert": func(c *Config) { c.TLS = c.TLS.Clone(); c.TLS.Certificates = nil },
	} {
		cfg := good
		mod(&cfg)
		if _, err := New(cfg, table); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := New(good, table); err != nil {
		t.Errorf("good config: %v", err)
	}
}

// BenchmarkSyncPipe measures sync end to end: a bulk of 50000 records
// from a's table into a new b's, over TLS on a net.Pipe, per iteration
// (a's redial after the previous b stopped included: at most 20 ms).
func BenchmarkSyncPipe(b *testing.B) {
	const n = 50000
	quiet := func(c *Config) { c.Log = nil }
	m := newMemNet()
	a := startNode(b, m, "a", []string{"b"}, quiet)
	for i := range n {
		a.see(fmt.Sprintf("udp 198.18.%d.%d:%d > 198.19.0.1:53", i>>8&255, i&255, 1024+i>>16))
	}
	b.ResetTimer()
	for range b.N {
		r := startNode(b, m, "b", nil, quiet)
		r.notes.wait(b, "bulk in", 1)
		b.StopTimer()
		if r.table.Len() != n {
			b.Fatalf("b has %d entries, want %d", r.table.Len(), n)
		}
		r.stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}

// TestDeadPeerCutOff: a peer that falls silent (reads nothing, sends
// nothing) is cut off after DeadAfter, counted dead, and dialled again.
func TestDeadPeerCutOff(t *testing.T) {
	m := newMemNet()
	a := startNode(t, m, "a", []string{"b"}, func(c *Config) { c.KeepAlive, c.DeadAfter = 20*time.Millisecond, 100*time.Millisecond })
	fakePeer(t, m, a)
	a.notes.wait(t, "cutoff out dead", 1)
	if ps := a.link(Out, "b"); ps.CutOff.Dead != 1 || ps.Sessions != 1 {
		t.Errorf("a's link: %+v", ps)
	}
}

// TestFlushCoalesces: changes that come within FlushEvery of the last
// frame go out together; a connection made and gone in that time costs
// the peer nothing (no record, no delete), and one that stays goes out
// as it is at the flush, its changes merged into one record.
func TestFlushCoalesces(t *testing.T) {
	a, b := startPair(t, func(c *Config) { c.FlushEvery = time.Second })
	first := a.see("udp 198.18.0.1:5000 > 198.18.0.2:53 len=30")
	b.waitTable("the first entry (sent at once: nothing was held)", func() bool {
		_, ok := b.entry(first)
		return ok
	})
	// Within 1 s of that frame: held.
	gone := a.see("tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000 win=8192")
	if n := a.table.Delete(a.clock.Load(), func(e *conntrack.EntryInfo) bool { return e.Original == gone }); n != 1 {
		t.Fatalf("deleted %d entries, want 1", n)
	}
	stays := a.see("tcp 198.18.0.1:40001 > 198.18.0.2:80 S seq=1000 win=8192")
	a.see("tcp 198.18.0.2:80 > 198.18.0.1:40001 SA seq=5000 ack=1001 win=8192")
	a.see("tcp 198.18.0.1:40001 > 198.18.0.2:80 A seq=1001 ack=5001 win=8192")
	b.waitTable("the connection that stays, established", func() bool {
		e, ok := b.entry(stays)
		return ok && e.TCPState == tcpstate.Established
	})
	if _, ok := b.entry(gone); ok {
		t.Error("the connection made and gone between two frames reached b")
	}
	sa, sb := a.link(Out, "b"), b.link(In, "a")
	if sa.Coalesced != 1 || sa.DeletesSent != 0 || sb.Installed != 2 || sb.Merged != 0 {
		t.Errorf("a out: coalesced %d, deletes %d; b in: installed %d merged %d; want 1, 0, 2, 0", sa.Coalesced, sa.DeletesSent, sb.Installed, sb.Merged)
	}
}
