package conntrack

import (
	"math"
	"time"

	"github.com/statewall/statewall/pkg/conntrack/tcpstate"
	"github.com/statewall/statewall/pkg/packet"
)

// State sync: what a second statewall needs to carry this table's
// connections on after a failover (package hasync moves it). An entry
// travels as a Record, the state file's record format (snapshot.go): its
// tuple, flags, time left, counters and the whole TCP or SCTP state,
// windows included, so that a peer applies the same checks.
//
// What goes out:
//   - events (Subscribe) say which entries were created, changed state or
//     left; the sender exports the entry as it is when it sends (Export),
//     so updates of an entry waiting to go out merge, as conntrackd's
//     resend queue does;
//   - ExportDirty takes, at a bounded rate chosen by the caller, every
//     entry a packet of this node refreshed since (window edges, timers);
//   - ExportAll is the bulk snapshot for a peer that (re)joins.
//
// What comes in: Install stores or merges a peer's record, Remove a peer's
// delete. Both mark the entry FromPeer, and its events say so: the sender
// does not echo a peer's entries back to it (pfsync's PFSYNC_S_PFSYNC,
// conntrackd's origin checks). A packet of this node clears the mark.
//
// Takeover: a TCP entry installed from a peer has window edges as old as
// its last record, and the connection went on through the peer since. At
// the first packet this node sees of it, its edges are forgotten
// (takeOver) and learnt again from the packets, as the kernel learns them
// for a connection it picks up mid-stream (tcp_new with
// nf_conntrack_tcp_loose); until a packet has been seen in each
// direction it is also tracked liberally both ways (the kernel's
// IP_CT_TCP_FLAG_BE_LIBERAL, which conntrackd sets on the entries it
// commits), so that no packet of the takeover is invalid; then it is
// tracked strictly, as any other. (Liberal tracking alone would never end:
// a packet it lets through out of window updates no edge.) Stats counts
// both steps (TakenOver, PickedUp), and the packets liberal tracking let
// through out of window (Liberal).

// RecordSize is the size of a Record.
const RecordSize = snapshotRecordSize

// Record is one entry in the state file's record format (snapshot.go),
// with its time left relative to the exporting node's clock.
type Record [RecordSize]byte

// ErrRecord is wrapped by every error about a record's contents.
var ErrRecord = ErrSnapshot

// Key decodes the record's original tuple and checks it.
func (r *Record) Key() (Key, error) {
	var k Key
	copy(k.src[:], r[0:16])
	copy(k.dst[:], r[16:32])
	k.sport, k.dport = uint16(r[32])|uint16(r[33])<<8, uint16(r[34])|uint16(r[35])<<8
	k.proto, k.family = packet.Proto(r[36]), r[37]
	if err := checkKey(&k); err != nil {
		return Key{}, snapErr("%v", err)
	}
	return k, nil
}

// Export writes the live entry that tuple k (either direction) belongs to
// into rec, and reports whether there is one.
func (t *Table) Export(k Key, now int64, rec *Record) bool {
	now = t.clock(now)
	s, _, e := t.locate(&k, now)
	defer s.mu.Unlock()
	if e == nil {
		return false
	}
	encodeEntry((*[snapshotRecordSize]byte)(rec), e, now)
	return true
}

// locate locks the shard of tuple k (either direction) and finds its
// entry: e is nil when there is none or it has expired at now (left for
// the reaper). The caller unlocks s.mu whatever it found.
func (t *Table) locate(k *Key, now int64) (s *shard, pos uint32, e *entry) {
	h := t.hash.sum(k)
	s = t.shard(h)
	s.mu.Lock()
	pos, idx, _, ok := s.find(k, h)
	if !ok {
		return s, 0, nil
	}
	if e = s.at(idx); e.expired(now) {
		return s, 0, nil
	}
	return s, pos, e
}

// ExportAll calls fn with every live entry's record until fn returns
// false: the bulk update for a peer that (re)joins. Entries are copied
// one shard at a time under its lock; fn is called with no lock held, and
// the record is valid only during the call.
func (t *Table) ExportAll(now int64, fn func(rec *Record) bool) {
	t.export(now, false, fn)
}

// ExportDirty is ExportAll for the entries a packet of this node changed
// or refreshed since they were last exported by ExportDirty, which it
// marks clean; it returns how many it exported. Called at a bounded rate,
// it carries window edges and timers to a peer at that rate, however fast
// the packets come.
func (t *Table) ExportDirty(now int64, fn func(rec *Record) bool) int {
	return t.export(now, true, fn)
}

func (t *Table) export(now int64, dirty bool, fn func(rec *Record) bool) int {
	now = t.clock(now)
	var buf []Record
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		buf = buf[:0]
		s.mu.Lock()
		for _, sl := range s.slots {
			if sl == 0 {
				continue
			}
			e := s.at(sl&refMask - 1)
			if e.expired(now) || dirty && e.flags&flagDirty == 0 {
				continue
			}
			if dirty {
				e.flags &^= flagDirty
			}
			buf = append(buf, Record{})
			encodeEntry((*[snapshotRecordSize]byte)(&buf[len(buf)-1]), e, now)
		}
		s.mu.Unlock()
		for j := range buf {
			n++
			if !fn(&buf[j]) {
				return n
			}
		}
	}
	return n
}

// InstallResult says what Install did with a record.
type InstallResult uint8

const (
	// Installed: a new entry.
	Installed InstallResult = iota + 1
	// Merged: the entry was there; the record moved it forward.
	Merged
	// Stale: the entry was there and newer than the record in every
	// respect: nothing changed.
	Stale
	// Full: no entry was there and the table is full.
	Full
)

var installNames = [...]string{"", "installed", "merged", "stale", "full"}

func (r InstallResult) String() string {
	if int(r) < len(installNames) && r != 0 {
		return installNames[r]
	}
	return "install?"
}

// Install stores a peer's record at now: a new entry, or, for a
// connection the table holds, a forward-only merge (never an older TCP
// state or an earlier window edge over a later one; pfsync_upd_tcp). The
// time left is capped at what a packet could give the entry under this
// table's timeouts. A new entry needs room under the limit (expired
// entries are reaped for it, live ones are never evicted for a peer's).
// The entry's mark (the peer's rule tag) is not carried: it means nothing
// to this node's rules. An error means the record is malformed; nothing
// changed.
func (t *Table) Install(rec *Record, now int64) (InstallResult, error) {
	l, err := decodeEntry(rec[:], 0)
	if err != nil {
		return 0, err
	}
	if sctpLegacy(&l.e) {
		return 0, snapErr("SCTP entry without its state")
	}
	now = t.clock(now)
	l.remaining = min(l.remaining, int64(t.maxTimeout(&l.e)))
	if now > 0 && l.remaining > math.MaxInt64-now {
		return 0, snapErr("timeout %v overflows the clock", time.Duration(l.remaining))
	}
	k := l.e.key
	h := t.hash.sum(&k)
	s := t.shard(h)
	s.mu.Lock()
	pos, idx, dir, ok := s.find(&k, h)
	if ok && s.at(idx).expired(now) {
		s.remove(pos)
		s.st.expired.Add(1)
		ok = false
	}
	if ok {
		res := s.merge(s.at(idx), &l, dir, now)
		s.mu.Unlock()
		return res, nil
	}
	if t.count.Load() >= t.limit {
		s.mu.Unlock()
		t.reapExpired(now)
		s.mu.Lock()
		if _, _, _, again := s.find(&k, h); again || t.count.Load() >= t.limit {
			s.mu.Unlock()
			s.st.peerFull.Add(1)
			return Full, nil
		}
	}
	defer s.mu.Unlock()
	s.reserveSlot(now)
	idx, ok = s.alloc()
	if !ok {
		s.st.peerFull.Add(1)
		return Full, nil
	}
	e := s.at(idx)
	*e = l.e
	e.flags |= flagPeer
	e.pickUp()
	s.setDeadline(e, now+l.remaining)
	if k.proto == packet.ProtoUDP {
		*e.streamTS() = now + l.aux
	}
	s.insertSlot(h, idx)
	s.n++
	t.count.Add(1)
	s.st.installed.Add(1)
	if subs := s.events.subs.Load(); subs != nil {
		s.emit(subs, EventNew, e, now)
	}
	return Installed, nil
}

// merge moves e forward with a peer's record l of the same connection (dir:
// 1 when the record's original tuple is e's reply tuple, as when both
// nodes saw the connection start from opposite ends). Precondition: s.mu
// is held.
func (s *shard) merge(e *entry, l *loaded, dir uint8, now int64) InstallResult {
	if dir != 0 {
		// Record from the other end: its directions are the other way
		// round. Counters and windows are per direction.
		l.e.packets[0], l.e.packets[1] = l.e.packets[1], l.e.packets[0]
		l.e.bytes[0], l.e.bytes[1] = l.e.bytes[1], l.e.bytes[0]
		c := &l.e.tcp
		c.Peer[0], c.Peer[1] = c.Peer[1], c.Peer[0]
		c.Scale[0], c.Scale[1] = c.Scale[1], c.Scale[0]
		c.Flags[0], c.Flags[1] = c.Flags[1], c.Flags[0]
	}
	oldKind, oldFlags := kindOf(e), e.flags
	changed := false
	if f := e.flags | l.e.flags&eventFlags; f != e.flags {
		e.flags, changed = f, true
	}
	if at := now + l.remaining; at > e.expires {
		s.setDeadline(e, at)
		changed = true
	}
	for i := range 2 {
		if l.e.packets[i] > e.packets[i] {
			e.packets[i], changed = l.e.packets[i], true
		}
		if l.e.bytes[i] > e.bytes[i] {
			e.bytes[i], changed = l.e.bytes[i], true
		}
	}
	switch e.key.proto {
	case packet.ProtoTCP:
		if mergeTCP(&e.tcp, &l.e.tcp) {
			changed = true
		}
	case packet.ProtoSCTP:
		if p := l.e.sctp(); p.state != e.sctp().state && sctpRank(p.state) > sctpRank(e.sctp().state) {
			*e.sctp() = *p
			changed = true
		}
	}
	if !changed {
		s.st.peerStale.Add(1)
		return Stale
	}
	// A peer's change does not make the entry this node's to send back.
	e.flags |= flagPeer
	if k := kindOf(e); k != oldKind {
		s.kinds[oldKind]--
		s.kinds[k]++
	}
	s.st.merged.Add(1)
	if subs := s.events.subs.Load(); subs != nil && (kindOf(e) != oldKind || (e.flags^oldFlags)&eventFlags != 0) {
		s.emit(subs, EventUpdate, e, now)
	}
	return Merged
}

// tcpRank orders TCP states by how far a connection has got, for the
// forward-only merge: a record in an earlier state does not take an
// entry back.
func tcpRank(st tcpstate.State) int {
	switch st {
	case tcpstate.SynSent, tcpstate.SynSent2:
		return 1
	case tcpstate.SynRecv:
		return 2
	case tcpstate.Established:
		return 3
	case tcpstate.FinWait, tcpstate.CloseWait:
		return 4
	case tcpstate.LastAck:
		return 5
	case tcpstate.TimeWait:
		return 6
	case tcpstate.Close:
		return 7
	}
	return 0
}

// mergeTCP moves c forward with a peer's copy p: the later state, and per
// direction the later window edges and the larger window. It keeps c's
// liberal flags and sets liberal tracking where the peer has it. It
// reports whether c changed.
func mergeTCP(c, p *tcpstate.Conn) bool {
	old := *c
	if tcpRank(p.State) > tcpRank(c.State) {
		c.State = p.State
		c.LastDir, c.LastIndex, c.LastFlags, c.LastWin = p.LastDir, p.LastIndex, p.LastFlags, p.LastWin
		c.LastSeq, c.LastAck, c.LastEnd, c.LastWScale = p.LastSeq, p.LastAck, p.LastEnd, p.LastWScale
		c.Retrans = 0
	}
	for i := range c.Peer {
		a, b := &c.Peer[i], &p.Peer[i]
		if a.End == 0 && a.MaxEnd == 0 {
			// Nothing seen in this direction here yet: take the peer's.
			*a = *b
			c.Scale[i] = p.Scale[i]
			c.Flags[i] |= p.Flags[i]
			continue
		}
		if b.End.After(a.End) {
			a.End = b.End
		}
		if b.MaxEnd.After(a.MaxEnd) {
			a.MaxEnd = b.MaxEnd
		}
		if b.MaxAck.After(a.MaxAck) {
			a.MaxAck = b.MaxAck
		}
		a.MaxWin = max(a.MaxWin, b.MaxWin)
		c.Flags[i] |= p.Flags[i] & tcpstate.PeerBeLiberal
	}
	return *c != old
}

// sctpRank orders SCTP states for the forward-only merge.
func sctpRank(st SCTPState) int { return int(st) }

// Remove deletes the entry that tuple k (either direction) belongs to, on
// a peer's word: its DESTROY event says FromPeer. It reports whether there
// was one.
func (t *Table) Remove(k Key, now int64) bool {
	s, pos, e := t.locate(&k, t.clock(now))
	defer s.mu.Unlock()
	if e == nil {
		return false
	}
	e.flags |= flagPeer
	s.remove(pos)
	s.st.peerDeleted.Add(1)
	return true
}

// pickUp marks a TCP entry whose window edges are stale (a peer's, or
// its own from before the connection went on elsewhere) for takeover at
// its next packet (see "Takeover" above): liberal both ways until a
// packet in each direction has been seen here. Entries of other
// protocols have no edges: nothing to do.
func (e *entry) pickUp() {
	if e.key.proto != packet.ProtoTCP {
		return
	}
	e.flags = e.flags&^(flagPickupOrig|flagPickupReply) | flagPickup
	e.tcp.Flags[0] |= tcpstate.PeerBeLiberal
	e.tcp.Flags[1] |= tcpstate.PeerBeLiberal
}

// takeOver forgets the window edges of a TCP entry taken over from a peer
// at the first packet this node sees of it, so that they are learnt from
// the packets (see "Takeover" above). Precondition: s.mu is held.
func (s *shard) takeOver(e *entry) {
	for i := range e.tcp.Peer {
		e.tcp.Peer[i] = tcpstate.Peer{}
		e.tcp.Flags[i] &^= tcpstate.PeerMaxAckSet | tcpstate.PeerDataUnacked
	}
	s.st.takenOver.Add(1)
}

// pickedUp records the direction of the packet that just passed a TCP
// entry taken over from a peer (flags f, flagPickup set), and once both
// directions have been seen here ends its liberal tracking: the edges are
// this node's own again. It returns the entry's new flags.
func (h *hit) pickedUp(f uint8) uint8 {
	if h.dir == 0 {
		f |= flagPickupOrig
	} else {
		f |= flagPickupReply
	}
	if f&(flagPickupOrig|flagPickupReply) == flagPickupOrig|flagPickupReply {
		f &^= flagPickup | flagPickupOrig | flagPickupReply
		h.e.tcp.Flags[0] &^= tcpstate.PeerBeLiberal
		h.e.tcp.Flags[1] &^= tcpstate.PeerBeLiberal
		h.s.st.pickedUp.Add(1)
	}
	return f
}
