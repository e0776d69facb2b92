package conntrack

import "time"

// For connections that another tracker carries for a while (the daemon's
// offload: the kernel's conntrack passes their packets without asking
// statewall), the table is told what the packets would have told it:
// that the connection is still alive (Refresh), or that it ended (Forget).

// Refresh sets the time left of the live entry that tuple k (either
// direction) belongs to, to left from now, and reports whether there was
// one. It marks the entry changed for state sync (ExportDirty), as a
// packet would. An entry already expired is left for the reaper.
func (t *Table) Refresh(k Key, now int64, left time.Duration) bool {
	now = t.clock(now)
	h := t.hash.sum(&k)
	s := t.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, idx, _, ok := s.find(&k, h)
	if !ok {
		return false
	}
	e := s.at(idx)
	if e.expired(now) {
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
