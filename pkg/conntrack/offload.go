package conntrack

import "time"

// For connections that another tracker carries for a while (the daemon's
// offload: the kernel's conntrack passes their packets without asking
// statewall), the table is told what the packets would have told it:
// that the connection is still alive (Refresh), or that it ended
// (Forget); and when such a connection comes back, that its TCP window
// edges are stale (PickUp).

// Refresh sets the time left of the live entry that tuple k (either
// direction) belongs to, to left from now, and reports whether there was
// one. It marks the entry changed for state sync (ExportDirty), as a
// packet would. An entry already expired is left for the reaper.
func (t *Table) Refresh(k Key, now int64, left time.Duration) bool {
	now = t.clock(now)
	s, _, e := t.locate(&k, now)
	defer s.mu.Unlock()
	if e == nil {
		return false
	}
	s.setDeadline(e, now+int64(left))
	e.flags = e.flags&^flagPeer | flagDirty
	return true
}

// Forget removes the entry that tuple k (either direction) belongs to,
// counted as deleted (Stats.Deleted), with its DESTROY event, and reports
// whether there was one: Kill for a connection known by its tuple, not by
// a packet.
func (t *Table) Forget(k Key, now int64) bool {
	t.clock(now)
	h := t.hash.sum(&k)
	s := t.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	pos, _, _, ok := s.find(&k, h)
	if ok {
		s.remove(pos)
		s.st.deleted.Add(1)
	}
	return ok
}

// PickUp marks the TCP entry that tuple k (either direction) belongs to
// as picked up mid-stream, and reports whether there is one: its window
// edges are as old as the last packet this table saw, while the
// connection went on elsewhere (offloaded to the kernel). At its next
// packet the edges are forgotten and learnt again from the packets,
// liberally until a packet in each direction has been seen, as for an
// entry taken over from a state-sync peer (see "Takeover" in sync.go;
// Stats counts both steps in TakenOver and PickedUp). Entries of other
// protocols have no edges: nothing to do.
func (t *Table) PickUp(k Key, now int64) bool {
	s, _, e := t.locate(&k, t.clock(now))
	defer s.mu.Unlock()
	if e == nil {
		return false
	}
	e.pickUp()
	return true
}
