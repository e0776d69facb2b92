package conntrack

import (
	"math"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/statewall/statewall/pkg/conntrack/tcpstate"
	"github.com/statewall/statewall/pkg/packet"
)

// Storage. Every connection lives in exactly one shard, picked by the low
// bits of its symmetric hash (so the original and the reply tuple agree).
// A shard is an open-addressing hash index of uint32 slots over a slab of
// fixed-size entries:
//
//	slots: [ fp<<24 | index+1 ] ...     4 bytes, linear probing, load <= 3/4
//	slab:  [entry] ...                  128 bytes per entry, no pointers
//
// A slot holds 8 bits of the hash (bits 24-31, the fingerprint) and the
// entry's index plus one (0 marks an empty slot), so a probe compares keys
// only when the fingerprints agree (1 in 256 for a stranger). The slot's
// position comes from bits 32-63. Deleting shifts the following slots back
// (no tombstones), recomputing their home position from the entry's key.
//
// Neither slots nor the slab contain pointers, so the garbage collector
// never scans connection state. The slab is one array (slab.go): entry i
// is at base + 128*i, page aligned, so an entry is exactly two cache lines.
// Past 64 KiB of entries it is a mapping that never moves; the index
// doubles (rehashing touches every entry of the shard once).
//
// Slots are stored atomically (and the index and the slab's base published
// whole) because Prefetch reads them without the lock; see prefetch.go.
// BenchmarkTrackEstablished reports the bytes per connection.
const (
	// A slot keeps the entry index in 24 bits; New sizes the shard count
	// so that no shard has to come near it.
	refBits         = 24
	refMask         = 1<<refBits - 1
	maxShardEntries = refMask - 1

	minSlots = 64

	// Incremental sweep: every sweepEvery packets that take a shard's lock,
	// sweepSlots slots of its index are checked for expired entries. At
	// load 1/2 that is an eighth of an entry per packet: cheap enough for
	// the hot path, and a shard with traffic is swept completely every
	// 4*slots packets. Shards without traffic keep their dead entries
	// until a packet, Sweep or a full table needs the room; memory stays
	// bounded by Limit either way.
	sweepEvery = 32
	sweepSlots = 8

	// evictScan is how many entries early drop looks at, starting at the
	// new connection's home slot, like the kernel's 8 hash buckets
	// (NF_CT_EVICTION_RANGE) of a few entries each.
	evictScan = 32
)

// Entry flags.
const (
	flagSeenReply uint8 = 1 << iota // IPS_SEEN_REPLY
	flagAssured                     // IPS_ASSURED: never evicted early
	// flagDirty: a packet of this node changed or refreshed the entry
	// since ExportDirty last took it (state sync, sync.go).
	flagDirty
	// flagPeer: installed or last changed by a peer (Install), not by a
	// packet of this node since: its events say FromPeer, so that state
	// sync does not send a peer's entries back to it.
	flagPeer
	// flagPickup: a TCP entry installed from a peer, tracked liberally
	// (PeerBeLiberal both ways) until a packet in each direction has been
	// seen here; flagPickupOrig and flagPickupReply record those seen.
	flagPickup
	flagPickupOrig
	flagPickupReply
)

// eventFlags are the flags whose change is an UPDATE event.
const eventFlags = flagSeenReply | flagAssured

// entry is one connection. 128 bytes, two cache lines: the key (38) and
// flags (2), the deadline (8), the counters (24) and the TCP state (56). A
// UDP packet reads the first 80 bytes, a TCP packet all of it. (With UDP's
// stream timestamp in a field of its own the entry was 144 bytes, and a
// TCP lookup cost a third cache line; it now lives in the TCP state's
// place, which a UDP entry does not use: see streamTS.) Packet counters are
// 32 bits (they wrap after 4G packets) to stay at 128.
type entry struct {
	key   Key // original tuple
	flags uint8
	mark  uint8 // the caller's, set at Commit (Result.Mark) and given back by every hit
	// expires is the deadline in the caller's clock (ns). While the entry
	// is on the free list it holds the next free index plus one instead.
	expires int64
	packets [2]uint32 // by direction: 0 original, 1 reply
	bytes   [2]uint64
	tcp     tcpstate.Conn // TCP entries; UDP's stream timestamp (streamTS) and SCTP's state (sctp) otherwise
}

// streamTS is a UDP entry's stream_ts (creation + 2 s: the flow is a
// stream once a packet arrives after it), kept in the first 8 bytes of the
// TCP state, which a UDP entry does not use. tcp sits at offset 72, so the
// int64 is aligned (TestEntryLayout).
func (e *entry) streamTS() *int64 { return (*int64)(unsafe.Pointer(&e.tcp)) }

func (e *entry) seenReply() bool { return e.flags&flagSeenReply != 0 }
func (e *entry) assured() bool   { return e.flags&flagAssured != 0 }

// setDeadline sets e's deadline, keeping the shard's and the table's lower
// bounds true. Every write of a deadline goes through here. On the packet
// path the new deadline is almost always later than the bound: one load
// and a compare.
func (s *shard) setDeadline(e *entry, at int64) {
	e.expires = at
	if at < s.soonest.Load() {
		s.soonest.Store(at)
		lowerBound(s.tableSoonest, at)
	}
}

// droppable reports whether a full table may drop the entry to make room:
// an unassured one, or, when closing is true, an assured TCP connection
// that is closing (FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE) or
// SCTP association that is shutting down (sctp_can_early_drop). The
// kernel's early_drop takes only unassured entries, but its garbage
// collector, once early drop has failed and with the table over 95% full,
// also drops what gc_worker_can_early_drop allows, which for TCP is
// tcp_can_early_drop's closing states. It computes 95% as max/100*95, so
// a limit under 100 never gets there: closing is limit >= 100. (The
// kernel drops the packet that found the table full and frees the room
// later, finding them anywhere in the table; here the room is made for
// it at once, near its slot, as for unassured entries.)
func (e *entry) droppable(closing bool) bool {
	if !e.assured() {
		return true
	}
	if closing && e.key.proto == packet.ProtoSCTP {
		return e.sctp().state.closing()
	}
	if !closing || e.key.proto != packet.ProtoTCP {
		return false
	}
	switch e.tcp.State {
	case tcpstate.FinWait, tcpstate.CloseWait, tcpstate.LastAck, tcpstate.TimeWait, tcpstate.Close:
		return true
	}
	return false
}

// expired reports whether the entry's timer has run out at now. Like the
// kernel's nf_ct_is_expired, an entry is dead at its deadline.
func (e *entry) expired(now int64) bool { return now >= e.expires }

// shard is one lock's worth of the table.
//
// Lock order: shard.mu is a leaf. No code path holds two shard locks, or
// calls out of the package (Walk's callback) with one held: both tuples of a
// connection hash to the same shard, and table-wide state (the entry count
// and the statistics) is atomic. (Table.makeRoom, which may have to reap
// other shards for a new connection at the limit, unlocks its own first and
// locks it again after.) Precondition of every method below that does not
// lock: s.mu is held.
//
// Who may touch what:
//
//   - mu guards every field below unless its comment says otherwise, and
//     the entries in the slab. The packet path takes it in Table.lookup,
//     which returns with it held: the tracker that called lookup ends with
//     the hit's unlock (a deferred c.unlock()), after it has labelled and
//     updated the entry. Commit, Walk, Get, Save, Load, reapExpired and
//     Counts take it themselves, one shard at a time.
//   - Prefetch (prefetch.go) takes no lock: it reads only view and the
//     slots, which writers store atomically (insertSlot, removeSlot,
//     compact), and only prefetches entries, never reads them.
//   - soonest is written under mu and read without it (reapExpired).
//   - st's counters are atomic: Stats reads them without the lock.
type shard struct {
	mu sync.Mutex

	slots []uint32             // guarded by mu; elements stored atomically for Prefetch
	n     uint32               // guarded by mu. Occupied slots: live entries, expired ones included until reaped
	used  uint32               // guarded by mu. Entries handed out of the slab so far
	free  uint32               // guarded by mu. Free-list head: index+1, 0 when empty
	hand  uint32               // guarded by mu. Incremental sweep position
	ticks uint32               // guarded by mu. Packets since the last incremental sweep
	hash  *hasher              // the table's, immutable
	count *atomic.Int64        // the table's entry count, for the limit (atomic)
	view  atomic.Pointer[view] // written under mu; slots and slab, for Prefetch (see prefetch.go)

	// The slab (slab.go), guarded by mu: entry i at base + 128*i, i <
	// cap; mapping is the memory mapped for it once it outgrew the heap
	// (nil before), slabMax the most entries the shard may hold (the
	// table's limit), which sizes the mapping.
	base    unsafe.Pointer
	cap     uint32
	slabMax uint32
	mapping []byte

	// soonest is a lower bound of the deadlines of this shard's entries
	// (math.MaxInt64: none), written under mu and read without it by
	// reapExpired; tableSoonest is the table's bound over all shards.
	// setDeadline lowers both, sweepAll makes the shard's exact.
	soonest      atomic.Int64
	tableSoonest *atomic.Int64

	// hitKind is the kind of the entry the last lookup found, for the
	// hit's recount: one packet holds the lock from lookup to unlock.
	// Guarded by mu. hitFlags are its flags then, for its UPDATE event.
	hitKind  uint16
	hitFlags uint8

	// kinds counts the shard's entries by kind (kindOf; see counts.go).
	// Guarded by mu.
	kinds [numKinds]int32

	st shardStats

	// onRemove is Config.OnRemove; called by remove with mu held.
	onRemove func(k *Key, mark uint8, assured bool)

	// events is the table's (immutable pointer); evScratch is where an
	// event is built, guarded by mu (see events.go).
	events    *eventHub
	evScratch Event

	_ [64]byte // keep the next shard's lock off this cache line
}

// shardStats are counted per shard, atomically so that Stats need not lock.
type shardStats struct {
	inserted, evicted, refused, expired, deleted, invalid, clash atomic.Uint64
	// restored: entries loaded from a state file; liberal: packets
	// accepted out of window by liberal tracking (restored entries and
	// mid-stream pickups).
	restored, liberal atomic.Uint64
	// State sync (sync.go): peer records installed, merged, stale, refused
	// for a full table; entries deleted on a peer's word; TCP entries
	// taken over (a first packet here), and back to strict tracking.
	installed, merged, peerStale, peerFull, peerDeleted, takenOver, pickedUp atomic.Uint64
}

func slotPos(h uint64) uint32 { return uint32(h >> 32) }
func slotFP(h uint64) uint32  { return uint32(h) & 0xff000000 }

// find looks k up. On a hit it returns the slot position, the entry index
// and the direction of k (0 original, 1 reply). It does not look at the
// timer.
func (s *shard) find(k *Key, h uint64) (pos, idx uint32, dir uint8, ok bool) {
	if s.n == 0 {
		return 0, 0, 0, false
	}
	mask := uint32(len(s.slots) - 1)
	fp := slotFP(h)
	for i := slotPos(h) & mask; ; i = (i + 1) & mask {
		sl := s.slots[i]
		if sl == 0 {
			return 0, 0, 0, false
		}
		if sl&^refMask != fp {
			continue
		}
		x := sl&refMask - 1
		if d, ok := s.at(x).key.dirOf(k); ok {
			return i, x, d, true
		}
	}
}

// home is the position an occupied slot hashes to.
func (s *shard) home(sl uint32) uint32 {
	return slotPos(s.hash.sum(&s.at(sl&refMask-1).key)) & uint32(len(s.slots)-1)
}

// remove deletes the slot at pos and frees its entry.
func (s *shard) remove(pos uint32) {
	i := s.slots[pos]&refMask - 1
	if e := s.at(i); e.mark != 0 && s.onRemove != nil {
		s.onRemove(&e.key, e.mark, e.assured())
	}
	if subs := s.events.subs.Load(); subs != nil {
		s.emit(subs, EventDestroy, s.at(i), s.events.clock.Load())
	}
	s.kinds[kindOf(s.at(i))]--
	s.release(i)
	s.removeSlot(pos)
	s.n--
	s.count.Add(-1)
}

// removeSlot empties pos by shifting back the slots of the probe run after
// it that may move (Knuth's algorithm R for linear probing).
func (s *shard) removeSlot(pos uint32) {
	mask := uint32(len(s.slots) - 1)
	i := pos
	for j := (i + 1) & mask; s.slots[j] != 0; j = (j + 1) & mask {
		h := s.home(s.slots[j])
		// The slot at j may fill the hole at i unless its home lies
		// cyclically in (i, j].
		if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			atomic.StoreUint32(&s.slots[i], s.slots[j])
			i = j
		}
	}
	atomic.StoreUint32(&s.slots[i], 0)
}

// insertSlot adds entry idx, filled in, with hash h, and counts it.
// Precondition: there is room (n < 3/4 of the slots) and the key is not
// present.
func (s *shard) insertSlot(h uint64, idx uint32) {
	s.kinds[kindOf(s.at(idx))]++
	mask := uint32(len(s.slots) - 1)
	i := slotPos(h) & mask
	for s.slots[i] != 0 {
		i = (i + 1) & mask
	}
	atomic.StoreUint32(&s.slots[i], slotFP(h)|(idx+1))
}

// alloc takes an entry off the free list or the slab. It reports false
// when the shard holds maxShardEntries entries.
func (s *shard) alloc() (uint32, bool) {
	if s.free != 0 {
		i := s.free - 1
		s.free = uint32(s.at(i).expires)
		return i, true
	}
	if s.used >= maxShardEntries || s.used == s.cap && !s.grow() {
		return 0, false
	}
	s.used++
	return s.used - 1, true
}

func (s *shard) release(i uint32) {
	e := s.at(i)
	*e = entry{expires: int64(s.free)}
	s.free = i + 1
}

// reserveSlot makes room in the index for one more entry: it first reaps
// expired entries when the index is about to grow (so dead entries never
// make it grow), then doubles it if it must.
func (s *shard) reserveSlot(now int64) {
	if len(s.slots) == 0 {
		s.resize(minSlots)
		return
	}
	if (s.n+1)*4 <= uint32(len(s.slots))*3 {
		return
	}
	s.sweepAll(now)
	if (s.n+1)*4 > uint32(len(s.slots))*3 {
		s.resize(len(s.slots) * 2)
	}
}

// resize rebuilds the index with size slots (a power of two).
func (s *shard) resize(size int) {
	old := s.slots
	s.slots = make([]uint32, size)
	mask := uint32(size - 1)
	for _, sl := range old {
		if sl == 0 {
			continue
		}
		i := s.home(sl)
		for s.slots[i] != 0 {
			i = (i + 1) & mask
		}
		s.slots[i] = sl
	}
	s.hand = 0
	s.publish()
}

// tick runs the incremental sweep every sweepEvery calls. It may move
// entries (compact): call it before looking anything up.
func (s *shard) tick(now int64) {
	s.ticks++
	if s.ticks < sweepEvery {
		return
	}
	s.ticks = 0
	s.sweep(now, sweepSlots)
}

// sweep checks n slots from the sweep hand and reaps expired entries. When
// the hand comes round, the shard gives memory back if it is mostly empty.
// It returns the number of entries reaped.
func (s *shard) sweep(now int64, n int) int {
	if s.n == 0 {
		return 0
	}
	mask := uint32(len(s.slots) - 1)
	reaped := 0
	for m := n; m > 0; m-- {
		i := s.hand & mask
		if sl := s.slots[i]; sl != 0 && s.at(sl&refMask-1).expired(now) {
			// The hole is refilled by the shift; look at i again.
			s.remove(i)
			reaped++
			continue
		}
		s.hand = (i + 1) & mask
		if s.hand == 0 {
			s.compact()
			mask = uint32(len(s.slots) - 1)
		}
	}
	// The slots are consecutive but their entries are scattered: start
	// loading the entries the next sweep will look at now, so that they
	// have arrived by then (sweepEvery packets later) and their misses do
	// not stall the packet that runs it. (A removal or compaction
	// meanwhile only wastes a prefetch.)
	mask = uint32(len(s.slots) - 1)
	for i, m := s.hand&mask, 0; m < n; i, m = (i+1)&mask, m+1 {
		if sl := s.slots[i]; sl != 0 {
			prefetch(unsafe.Pointer(s.at(sl&refMask - 1)))
		}
	}
	if reaped > 0 {
		s.st.expired.Add(uint64(reaped))
	}
	return reaped
}

// sweepAll reaps every expired entry of the shard and returns how many;
// the shard's deadline bound is then exact: the soonest deadline left.
// A removal only moves slots that follow the hole (cyclically) back into
// it, and the hole is looked at again, so no slot escapes the pass.
func (s *shard) sweepAll(now int64) int {
	reaped := 0
	soonest := int64(math.MaxInt64)
	for i := 0; i < len(s.slots); {
		if sl := s.slots[i]; sl != 0 {
			e := s.at(sl&refMask - 1)
			if e.expired(now) {
				s.remove(uint32(i))
				reaped++
				continue
			}
			soonest = min(soonest, e.expires)
		}
		i++
	}
	s.soonest.Store(soonest)
	if reaped > 0 {
		s.st.expired.Add(uint64(reaped))
	}
	return reaped
}

// compact gives memory back after many connections went away: it halves
// the index while it is under 1/8 full, and moves the live entries to the
// front of the slab when they fill under a quarter of it (compactSlab).
// Both cost one pass over the shard and run only when the sweep hand
// comes round, so they are amortized over at least a full sweep.
func (s *shard) compact() {
	size := len(s.slots)
	for size > minSlots && s.n*8 < uint32(size) {
		size /= 2
	}
	if size != len(s.slots) {
		s.resize(size)
	}
	if s.used <= 4*slabMin || s.n*4 >= s.used {
		return
	}
	s.compactSlab()
}

// evictNear makes room for a connection with hash h, like the kernel's
// early_drop: among the first evictScan entries from h's home position, it
// reaps an expired one, or else, when live is true, drops the first that
// may go early (droppable, closing TCP connections too when closing is
// true). It reports whether an entry went away. An expired entry anywhere
// in the scan goes before a live one: a live connection is never dropped
// for room that a dead one holds.
//
// It counts entries, not slots: in a sparse index (a small limit, or a
// table emptied by expiry) the neighbourhood of h may hold no entry at all,
// and scanning slots alone would refuse a connection while expired entries
// sit further on. Empty slots cost a load each; the scan stops after one
// turn.
func (s *shard) evictNear(h uint64, now int64, live, closing bool) bool {
	if s.n == 0 {
		return false
	}
	// While now is before the shard's deadline bound no entry here has
	// expired: the first droppable entry goes at once, without loading
	// the rest of the window (the common case of a flood against a full
	// table).
	noneExpired := now < s.soonest.Load()
	if noneExpired && !live {
		return false
	}
	mask := uint32(len(s.slots) - 1)
	i := slotPos(h) & mask
	seen := 0
	victim, found := uint32(0), false
	for n := 0; seen < evictScan && n < len(s.slots); n, i = n+1, (i+1)&mask {
		sl := s.slots[i]
		if sl == 0 {
			continue
		}
		seen++
		e := s.at(sl&refMask - 1)
		switch {
		case !noneExpired && e.expired(now):
			s.remove(i)
			s.st.expired.Add(1)
			return true
		case !found && e.droppable(closing):
			if noneExpired {
				s.remove(i)
				s.st.evicted.Add(1)
				return true
			}
			victim, found = i, true
		}
	}
	if !live || !found {
		return false
	}
	s.remove(victim)
	s.st.evicted.Add(1)
	return true
}
