package pflog

import (
	"sync/atomic"
	"time"
)

// ring is a bounded multi-producer, single-consumer queue of records with
// the packet bytes copied into preallocated storage: Dmitry Vyukov's
// bounded queue, where each slot's sequence number says whose turn it is.
// A producer claims a position with one CAS on tail, copies the record
// into the slot and publishes it by storing the sequence; it never waits
// for the consumer or for another producer, and when the slot it would
// claim still holds an unread record the ring is full and it gives up.
//
// Why not a mutex around a plain ring: it costs the same uncontended (13
// ns against 12 ns a record, BenchmarkLog/accept and
// BenchmarkLogMutexRing/accept), but a producer preempted while holding
// the mutex stalls every other queue's goroutine, which is exactly the
// blocking the log must never add to the packet path. Here a preempted
// producer holds up only the consumer (which stops at its unpublished
// slot); other producers claim later slots. Under contention on a 2-CPU
// machine the comparison is dominated by how often the ring is full and
// is not conclusive (BenchmarkLog/contended reports drops/op).
//
// The happens-before edges the race detector sees are the atomic seq
// store (producer, after the copy) and load (consumer, before the read),
// and the reverse for the release.
type ring struct {
	slots []slot
	data  []byte // len(slots)*snap bytes: slot i's packet is data[i*snap:]
	snap  int
	mask  uint64

	_    [64]byte // keep tail, written by every producer, off the read-only fields' cache line
	tail atomic.Uint64
	_    [56]byte

	head uint64 // owned by the consumer
}

// slot is one record; 64 bytes, one cache line, so producers filling
// neighbouring slots do not share a line.
type slot struct {
	seq    atomic.Uint64
	time   int64
	length uint32 // on the wire
	n      uint32 // bytes in data
	ruleNr uint32
	action Action
	reason Reason
	dir    Dir
	family uint8
	ifname Ifname
	_      [16]byte
}

func newRing(size, snap int) *ring {
	n := 1
	for n < size {
		n <<= 1
	}
	q := &ring{slots: make([]slot, n), data: make([]byte, n*snap), snap: snap, mask: uint64(n - 1)}
	for i := range q.slots {
		q.slots[i].seq.Store(uint64(i))
	}
	return q
}

// push copies r into the ring; false when the ring is full.
func (q *ring) push(r *Record) bool {
	pos := q.tail.Load()
	var s *slot
claim:
	for {
		s = &q.slots[pos&q.mask]
		seq := s.seq.Load()
		switch d := int64(seq - pos); {
		case d == 0:
			if q.tail.CompareAndSwap(pos, pos+1) {
				break claim
			}
			pos = q.tail.Load()
		case d < 0:
			return false // the slot still holds the record from a lap ago
		default:
			pos = q.tail.Load() // another producer took pos
		}
	}
	if r.Time.IsZero() {
		s.time = time.Now().UnixNano()
	} else {
		s.time = r.Time.UnixNano()
	}
	i := int(pos & q.mask)
	s.n = uint32(copy(q.data[i*q.snap:(i+1)*q.snap], r.Packet))
	s.length = uint32(min(r.length(), 1<<32-1))
	s.ruleNr = r.RuleNr
	s.action, s.reason, s.dir, s.family = r.Action, r.Reason, r.Dir, r.family()
	s.ifname = r.Ifname
	s.seq.Store(pos + 1)
	return true
}

// ready reports whether the record at head is published. Consumer only.
func (q *ring) ready() bool {
	return q.slots[q.head&q.mask].seq.Load() == q.head+1
}

// peek fills rec from the record at head (rec.Packet aliases the ring)
// and reports whether there was one. The slot stays the consumer's until
// release. Consumer only.
func (q *ring) peek(rec *Record) bool {
	s := &q.slots[q.head&q.mask]
	if s.seq.Load() != q.head+1 {
		return false
	}
	i := int(q.head & q.mask)
	*rec = Record{
		Time:   time.Unix(0, s.time),
		Action: s.action,
		Reason: s.reason,
		Dir:    s.dir,
		Family: s.family,
		RuleNr: s.ruleNr,
		Ifname: s.ifname,
		Length: int(s.length),
		Packet: q.data[i*q.snap : i*q.snap+int(s.n)],
	}
	return true
}

// release hands the slot at head back to the producers. Consumer only.
func (q *ring) release() {
	q.slots[q.head&q.mask].seq.Store(q.head + uint64(len(q.slots)))
	q.head++
}
