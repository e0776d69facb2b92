package conntrack

import (
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/conntrack/tcpstate"
)

// syncAll installs every live entry of from into to, as a bulk update
// does, and returns how many were installed.
func syncAll(t *testing.T, from, to *tbl) int {
	t.Helper()
	n := 0
	from.ExportAll(from.now(), func(rec *Record) bool {
		res, err := to.Install(rec, to.now())
		if err != nil {
			t.Fatalf("Install: %v", err)
		}
		if res == Installed {
			n++
		}
		return true
	})
	return n
}

// TestSyncTakeoverMidStream: node B, which never saw a packet of the
// connection, carries it on after a failover: its first packets pass
// although B's copy of the windows is stale (the connection went on
// through A after the last record), and once B has seen both directions
// the windows are learnt from them and strictly checked again.
func TestSyncTakeoverMidStream(t *testing.T) {
	a := newTbl(t, Config{Seed: 1})
	a.clock = clock(time.Hour)
	for _, s := range []string{cSyn, sSynAck, cAck, cData, sData} {
		a.see(s)
	}
	b := newTbl(t, Config{Seed: 2})
	b.clock = clock(7 * time.Hour) // another node, another clock
	if n := syncAll(t, a, b); n != 1 {
		t.Fatalf("installed %d entries, want 1", n)
	}
	if e, ok := b.entry(cData); !ok || !e.FromPeer || e.TCPState != tcpstate.Established || !e.Assured {
		t.Fatalf("installed entry: %+v %v", e, ok)
	}
	// The connection went on through A (19000 bytes) before A died: the
	// next segment is beyond the window of the last record.
	ahead := "tcp 198.18.0.1:40000 > 198.18.0.2:80 PA seq=20101 ack=5501 win=8192 len=100"
	if r := a.Track(pkt(ahead), a.now()); r.Label != LabelInvalid {
		t.Fatalf("A: %v, want invalid (the test's premise: beyond the record's window)", r.Label)
	}
	b.want(ahead, LabelEstablished, false)
	if st := b.Stats(); st.TakenOver != 1 || st.PickedUp != 0 {
		t.Errorf("after the first packet: taken over %d picked up %d, want 1 and 0", st.TakenOver, st.PickedUp)
	}
	if e, _ := b.entry(ahead); e.FromPeer {
		t.Errorf("entry still FromPeer after a packet of this node")
	}
	// Still liberal until the other direction is seen.
	b.want("tcp 198.18.0.1:40000 > 198.18.0.2:80 PA seq=900000 ack=5501 win=8192 len=100", LabelEstablished, false)
	if st := b.Stats(); st.Liberal != 1 {
		t.Errorf("liberal %d, want 1", st.Liberal)
	}
	b.want("tcp 198.18.0.2:80 > 198.18.0.1:40000 A seq=5501 ack=20201 win=8192", LabelEstablished, true)
	if st := b.Stats(); st.PickedUp != 1 || st.TakenOver != 1 {
		t.Errorf("picked up %d taken over %d, want 1 and 1", st.PickedUp, st.TakenOver)
	}
	// Both directions seen: strict again, with the live windows.
	b.wantInvalid("tcp 198.18.0.1:40000 > 198.18.0.2:80 PA seq=1900000 ack=5501 win=8192 len=100", ReasonTCP)
	b.want("tcp 198.18.0.1:40000 > 198.18.0.2:80 PA seq=20201 ack=5501 win=8192 len=100", LabelEstablished, false)
	b.want("tcp 198.18.0.2:80 > 198.18.0.1:40000 PA seq=5501 ack=20301 win=8192 len=10", LabelEstablished, true)
}

// TestSyncForwardOnly: a record older than the entry (an earlier TCP
// state, earlier edges) changes nothing; a later one moves it forward.
func TestSyncForwardOnly(t *testing.T) {
	a := newTbl(t, Config{Seed: 1})
	a.see(cSyn)
	var early Record
	if !a.Export(KeyOf(pkt(cSyn)), a.now(), &early) {
		t.Fatal("Export: no entry")
	}
	for _, s := range []string{sSynAck, cAck, cData} {
		a.see(s)
	}
	var late Record
	a.Export(KeyOf(pkt(cSyn)), a.now(), &late)

	b := newTbl(t, Config{Seed: 2})
	if res, err := b.Install(&late, b.now()); err != nil || res != Installed {
		t.Fatalf("Install late: %v %v", res, err)
	}
	if res, err := b.Install(&early, b.now()); err != nil || res != Stale {
		t.Fatalf("Install early after late: %v %v, want stale", res, err)
	}
	if e, _ := b.entry(cSyn); e.TCPState != tcpstate.Established {
		t.Errorf("state %v after a stale record, want ESTABLISHED", e.TCPState)
	}

	c := newTbl(t, Config{Seed: 3})
	c.Install(&early, c.now())
	if res, _ := c.Install(&late, c.now()); res != Merged {
		t.Fatalf("Install late after early: %v, want merged", res)
	}
	if e, _ := c.entry(cSyn); e.TCPState != tcpstate.Established || !e.Assured || !e.SeenReply {
		t.Errorf("merged: %+v", e)
	}
	if st := c.Stats(); st.PeerInstalled != 1 || st.PeerMerged != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestSyncEventsAndDirty: a peer's entries make events marked FromPeer
// (which a sender skips: no echo), and are not dirty; a packet of this
// node makes the entry its own and dirty, once per ExportDirty.
func TestSyncEventsAndDirty(t *testing.T) {
	a := newTbl(t, Config{Seed: 1})
	for _, s := range []string{cSyn, sSynAck, cAck} {
		a.see(s)
	}
	b := newTbl(t, Config{Seed: 2})
	sub := b.Subscribe(16, nil)
	defer sub.Close()
	syncAll(t, a, b)
	ev := <-sub.Events()
	if ev.Type != EventNew || !ev.Entry.FromPeer {
		t.Errorf("event of an installed entry: %v FromPeer=%v, want NEW from peer", ev.Type, ev.Entry.FromPeer)
	}
	if n := b.ExportDirty(b.now(), func(*Record) bool { return true }); n != 0 {
		t.Errorf("%d dirty entries before any packet, want 0", n)
	}
	b.see(cData)
	if n := b.ExportDirty(b.now(), func(*Record) bool { return true }); n != 1 {
		t.Errorf("%d dirty entries after a packet, want 1", n)
	}
	if n := b.ExportDirty(b.now(), func(*Record) bool { return true }); n != 0 {
		t.Errorf("%d dirty entries after ExportDirty, want 0", n)
	}
	// A's records never dirty A's copy: only its packets do.
	if n := a.ExportDirty(a.now(), func(*Record) bool { return true }); n != 1 {
		t.Errorf("A: %d dirty, want 1", n)
	}

	if !b.Remove(KeyOf(pkt(sSynAck)), b.now()) { // the reply tuple finds it too
		t.Fatal("Remove: no entry")
	}
	for ev := range sub.Events() {
		if ev.Type == EventDestroy {
			if !ev.Entry.FromPeer {
				t.Errorf("DESTROY on a peer's word not FromPeer")
			}
			break
		}
	}
	if b.Len() != 0 || b.Stats().PeerDeleted != 1 {
		t.Errorf("after Remove: %d entries, %d peer deletes", b.Len(), b.Stats().PeerDeleted)
	}
}

// TestSyncReverseRecord: both nodes saw the connection, one from each
// end's first packet (asymmetric paths): the record's directions are
// mapped onto the entry's.
func TestSyncReverseRecord(t *testing.T) {
	a := newTbl(t, Config{Seed: 1})
	a.see(cSyn)
	var rec Record
	a.Export(KeyOf(pkt(cSyn)), a.now(), &rec)
	k, err := rec.Key()
	if err != nil || k != KeyOf(pkt(cSyn)) {
		t.Fatalf("Record.Key: %v %v", k, err)
	}
	b := newTbl(t, Config{Seed: 2})
	// B's entry has the server's tuple as its original (a UDP-like
	// pickup is not possible for TCP SYN-ACK; use UDP).
	b.see("udp 198.18.0.2:53 > 198.18.0.1:5353 len=40")
	a.see("udp 198.18.0.1:5353 > 198.18.0.2:53 len=40")
	a.see("udp 198.18.0.2:53 > 198.18.0.1:5353 len=60")
	var u Record
	a.Export(KeyOf(pkt("udp 198.18.0.1:5353 > 198.18.0.2:53 len=40")), a.now(), &u)
	if res, err := b.Install(&u, b.now()); err != nil || res != Merged {
		t.Fatalf("Install reversed: %v %v", res, err)
	}
	e, _ := b.entry("udp 198.18.0.2:53 > 198.18.0.1:5353 len=40")
	// A counted 1 packet of 68 bytes original (client) and 1 of 88
	// reply; B's original is the server's direction.
	if e.Packets != [2]uint64{1, 1} || e.Bytes[0] != 88 || e.Bytes[1] != 68 || !e.SeenReply {
		t.Errorf("merged reversed record: %+v", e)
	}
}

// TestSyncInstallBounds: a malformed record is an error and changes
// nothing; a full table refuses a peer's new entry rather than evict.
func TestSyncInstallBounds(t *testing.T) {
	a := newTbl(t, Config{Seed: 1})
	a.see(cSyn)
	a.see("udp 198.18.0.1:6000 > 198.18.0.3:6001 len=40")
	var recs []Record
	a.ExportAll(a.now(), func(r *Record) bool { recs = append(recs, *r); return true })
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	bad := recs[0]
	bad[37] = 5 // family
	b := newTbl(t, Config{Seed: 2, Limit: 1})
	if _, err := b.Install(&bad, b.now()); err == nil {
		t.Error("malformed record installed")
	}
	if b.Len() != 0 {
		t.Fatalf("%d entries after a malformed record", b.Len())
	}
	if res, _ := b.Install(&recs[0], b.now()); res != Installed {
		t.Fatalf("first: %v", res)
	}
	if res, _ := b.Install(&recs[1], b.now()); res != Full {
		t.Errorf("second into a full table: %v, want full", res)
	}
	if b.Len() != 1 || b.Stats().PeerFull != 1 {
		t.Errorf("%d entries, %d full", b.Len(), b.Stats().PeerFull)
	}
	// Once the installed entry has expired, there is room.
	b.advance(200 * time.Second)
	if res, _ := b.Install(&recs[1], b.now()); res != Installed {
		t.Errorf("after expiry: %v, want installed", res)
	}
	checkCounts(t, b.Table)
}
