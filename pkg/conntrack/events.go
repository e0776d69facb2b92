package conntrack

import (
	"sync"
	"sync/atomic"
	"time"
)

// Events, as conntrack -E shows them: [NEW] when an entry is committed,
// [UPDATE] when a packet changes its state (the TCP or SCTP state, or
// whether it saw a reply or is assured), [DESTROY] when it leaves the
// table, however it leaves (expired, evicted, deleted, killed by the TCP
// state machine, replaced by a reopening SYN).
//
// Where they come from, all with the entry's shard locked:
//
//	NEW      Commit, once the entry is in the index
//	UPDATE   hit.unlock, at the end of every packet of a known connection:
//	         the entry's kind (counts.go) and flags against those lookup saw
//	DESTROY  shard.remove, the one way out of the table, beside OnRemove
//
// Cost. Without a subscriber every one of those places loads one atomic
// pointer (the table's subscriber list, read through the shard) and finds
// it nil; lookup also keeps the entry's flags beside its kind (one byte
// stored on a line it writes anyway). With subscribers, an event is one
// EntryInfo built in the shard's scratch space, each subscriber's match
// called on it, and a non-blocking send of a 136-byte value on each
// matching subscriber's buffered channel: nothing is allocated, and a
// subscriber whose queue is full loses the event, counted (Dropped),
// rather than holding up the packet. No event ever waits for a reader.
//
// Expired entries are reaped lazily (by the packets of their shard, by
// Sweep, by a full table), so a DESTROY for a timeout comes when the entry
// is reaped, not at its deadline: a subscriber that wants them on time
// calls Sweep periodically while it listens (the daemon does, once a
// second).
//
// Entries restored by Load make no event: they were not committed here.

// EventType is what happened to an entry. The zero value is not an event.
type EventType uint8

const (
	EventNew     EventType = iota + 1 // the entry was committed
	EventUpdate                       // a packet changed its state, seen-reply or assured
	EventDestroy                      // it left the table
)

var eventNames = [...]string{"", "NEW", "UPDATE", "DESTROY"}

// String returns the name conntrack -E prints, without its brackets.
func (t EventType) String() string {
	if int(t) < len(eventNames) && t != 0 {
		return eventNames[t]
	}
	return "EVENT?"
}

// Event is one change of one entry: a copy of the entry after the change
// (as it was when it left, for EventDestroy, with Timeout 0).
type Event struct {
	Type  EventType
	Entry EntryInfo
}

// DefaultEventQueue is a subscription's queue length when Subscribe is
// given 0.
const DefaultEventQueue = 4096

// Subscription receives the table's events until Close. Events,
// Dropped and Close are safe for concurrent use.
type Subscription struct {
	ch      chan Event
	match   func(*EntryInfo) bool
	dropped atomic.Uint64
	hub     *eventHub
}

// Events is the queue the events arrive on, oldest first. It is never
// closed (an event being sent as Close runs may still arrive): stop
// reading when you close the subscription.
func (s *Subscription) Events() <-chan Event { return s.ch }

// Dropped returns how many events matched but found the queue full, since
// Subscribe.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription: no event is queued after it returns. It
// may be called more than once.
func (s *Subscription) Close() { s.hub.remove(s) }

// eventHub is the table's list of subscriptions. The list is copied on
// write (Subscribe, Close: rare) and read with one atomic load on the
// paths that emit (frequent).
type eventHub struct {
	subs  atomic.Pointer[[]*Subscription] // nil when there is none
	mu    sync.Mutex                      // serialises writers of subs
	clock *atomic.Int64                   // the table's (Table.latest), for timeouts
}

func (h *eventHub) remove(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := h.subs.Load()
	if cur == nil {
		return
	}
	var next []*Subscription
	for _, o := range *cur {
		if o != s {
			next = append(next, o)
		}
	}
	if len(next) == len(*cur) {
		return
	}
	if len(next) == 0 {
		h.subs.Store(nil)
		return
	}
	h.subs.Store(&next)
}

// Subscribe starts a subscription to the table's events: those for which
// match returns true (every event when match is nil), in a queue of
// queue events (DefaultEventQueue when 0). match is called with the
// entry's shard locked, on the packet path: it must be quick, must not
// call the table, and must not keep the pointer. Close the subscription
// when done: until then every emitting path pays for it.
func (t *Table) Subscribe(queue int, match func(*EntryInfo) bool) *Subscription {
	if queue <= 0 {
		queue = DefaultEventQueue
	}
	s := &Subscription{ch: make(chan Event, queue), match: match, hub: &t.events}
	h := &t.events
	h.mu.Lock()
	defer h.mu.Unlock()
	var next []*Subscription
	if cur := h.subs.Load(); cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, s)
	h.subs.Store(&next)
	return s
}

// Subscribers returns how many subscriptions are open.
func (t *Table) Subscribers() int {
	if cur := t.events.subs.Load(); cur != nil {
		return len(*cur)
	}
	return 0
}

// emit sends an event about e to every subscriber whose match takes it.
// Precondition: s.mu is held and subs is the non-nil list just loaded.
// The event is built in the shard's scratch space, guarded by s.mu: built
// on the stack, it would escape to the heap through the pointer match
// gets (one allocation per event).
func (s *shard) emit(subs *[]*Subscription, typ EventType, e *entry, now int64) {
	ev := &s.evScratch
	ev.Type = typ
	ev.Entry = e.info(now)
	if typ == EventDestroy || ev.Entry.Timeout < 0 {
		ev.Entry.Timeout = 0
	}
	for _, sub := range *subs {
		if sub.match != nil && !sub.match(&ev.Entry) {
			continue
		}
		select {
		case sub.ch <- *ev:
		default:
			sub.dropped.Add(1)
		}
	}
}

// emitUpdate sends an UPDATE for the entry a packet just left, if the
// packet changed its kind or flags since lookup. Precondition: s.mu is
// held, e is the hit's live entry, and its kind is not recounted yet.
func (s *shard) emitUpdate(subs *[]*Subscription, e *entry) {
	if kindOf(e) == s.hitKind && (e.flags^s.hitFlags)&eventFlags == 0 {
		return
	}
	s.emit(subs, EventUpdate, e, s.events.clock.Load())
}

// SweepEvery is how often a subscriber that wants the DESTROY of an
// expired entry within a bounded delay calls Sweep (the daemon does while
// someone listens): each one then comes at most this long after the
// entry's deadline.
const SweepEvery = time.Second
