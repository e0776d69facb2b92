package hasync

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statewall/statewall/pkg/conntrack"
)

// Deferral (pfsync's defer, ha-reference §1.6): the first packet of a new
// connection is held until every peer has the connection's entry, so
// that a reply that takes the other node's path finds it there. The
// daemon calls Announce after Commit and releases the packet in done;
// the entry's record goes out at once, ahead of the pending set and
// between a bulk's frames, in a frame that asks for an ack.
//
// The queue is a fixed ring of MaxDeferred slots, in Announce order,
// which is also deadline order (every deferral waits Config.Defer): one
// timer, for the oldest, times them all out. Full, the oldest is released
// early, as pfsync does past its 128. Nothing is allocated per deferral.

// MaxDeferred bounds the deferrals waiting at once (pfsync: 128 per
// slice).
const MaxDeferred = 128

// dref names one deferral: its slot, and the slot's generation when it
// was made (a slot reused since is another deferral).
type dref struct {
	slot uint16
	gen  uint32
}

type deferral struct {
	gen      uint32
	live     bool
	failed   bool
	key      conntrack.Key
	done     func(acked bool)
	at       int64  // Node.mono at Announce
	deadline int64  // Node.mono
	waiting  uint64 // peers (bit: index in Config.Peers) yet to ack
}

type deferCounters struct {
	deferred, acked, timedOut, failed, noPeer, overflow atomic.Uint64
	latency                                             histogram
}

type deferQueue struct {
	n     *Node
	c     deferCounters
	timer *time.Timer

	mu         sync.Mutex
	ring       [MaxDeferred]deferral
	head, size int
	gen        uint32
}

func (d *deferQueue) init(n *Node) {
	d.n = n
	d.timer = time.NewTimer(time.Hour)
	d.timer.Stop()
}

// Announce sends the record of the connection k (either tuple) to every
// peer at once and calls done(true) when each peer session up has acked
// it, or done(false) when one has not within Config.Defer, when none is
// up, when Defer is 0, when the entry is gone, or when MaxDeferred were
// already waiting (the oldest is released). It never blocks: done may be
// called before Announce returns, on the caller's goroutine, or later on
// one of the node's. done must be quick and must not call Announce.
func (n *Node) Announce(k conntrack.Key, done func(acked bool)) {
	d := &n.defers
	ss := n.active.Load()
	if n.cfg.Defer <= 0 || ss == nil || len(*ss) == 0 {
		d.c.noPeer.Add(1)
		done(false)
		return
	}
	var mask uint64
	for _, s := range *ss {
		mask |= 1 << s.idx
	}
	now := n.mono()
	var evicted func(bool)
	d.mu.Lock()
	d.compact()
	if d.size == len(d.ring) {
		h := &d.ring[d.head]
		evicted = h.done
		*h = deferral{gen: h.gen}
		d.head = (d.head + 1) % len(d.ring)
		d.size--
		d.c.overflow.Add(1)
	}
	i := (d.head + d.size) % len(d.ring)
	d.size++
	d.gen++
	d.ring[i] = deferral{gen: d.gen, live: true, key: k, done: done, at: now, deadline: now + int64(n.cfg.Defer), waiting: mask}
	ref := dref{slot: uint16(i), gen: d.gen}
	if d.size == 1 {
		d.timer.Reset(n.cfg.Defer)
	}
	d.mu.Unlock()
	d.c.deferred.Add(1)
	if evicted != nil {
		evicted(false)
	}
	for _, s := range *ss {
		select {
		case s.urgent <- ref:
		default:
			d.fail(ref, s.idx)
		}
	}
}

// compact drops the completed deferrals at the head. Precondition: d.mu
// is held.
func (d *deferQueue) compact() {
	for d.size > 0 && !d.ring[d.head].live {
		d.head = (d.head + 1) % len(d.ring)
		d.size--
	}
}

// get returns r's deferral if it still waits for peer idx. Precondition:
// d.mu is held.
func (d *deferQueue) get(r dref, idx int) *deferral {
	x := &d.ring[r.slot]
	if !x.live || x.gen != r.gen || x.waiting&(1<<idx) == 0 {
		return nil
	}
	return x
}

// keyOf returns the key and Announce time of r, if it still waits for
// peer idx.
func (d *deferQueue) keyOf(r dref, idx int) (conntrack.Key, int64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if x := d.get(r, idx); x != nil {
		return x.key, x.at, true
	}
	return conntrack.Key{}, 0, false
}

// ack records peer idx's ack of r at now; it reports whether r was
// waiting for it.
func (d *deferQueue) ack(r dref, idx int, now int64) bool {
	return d.settle(r, idx, now, false)
}

// fail records that peer idx will not ack r (its session ended, or the
// entry was gone): r completes with false once no other peer is awaited.
func (d *deferQueue) fail(r dref, idx int) {
	d.settle(r, idx, 0, true)
}

func (d *deferQueue) settle(r dref, idx int, now int64, failed bool) bool {
	d.mu.Lock()
	x := d.get(r, idx)
	if x == nil {
		d.mu.Unlock()
		return false
	}
	x.waiting &^= 1 << idx
	x.failed = x.failed || failed
	if x.waiting != 0 {
		d.mu.Unlock()
		return true
	}
	done, ok, at := x.done, !x.failed, x.at
	*x = deferral{gen: x.gen}
	d.compact()
	d.mu.Unlock()
	if ok {
		d.c.acked.Add(1)
		d.c.latency.observe(time.Duration(now - at))
	} else {
		d.c.failed.Add(1)
	}
	done(ok)
	return true
}

// run times deferrals out until ctx is done.
func (d *deferQueue) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.timer.C:
			d.expire()
		}
	}
}

// expire releases the deferrals past their deadline with done(false),
// counting a timeout for every peer they still waited for, and sets the
// timer for the next.
func (d *deferQueue) expire() {
	now := d.n.mono()
	var dones [MaxDeferred]func(bool)
	nd := 0
	d.mu.Lock()
	for d.size > 0 {
		x := &d.ring[d.head]
		if x.live {
			if x.deadline > now {
				d.timer.Reset(time.Duration(x.deadline - now))
				break
			}
			for i, l := range d.n.outs {
				if x.waiting&(1<<i) != 0 {
					l.c.timedOut.Add(1)
				}
			}
			dones[nd] = x.done
			nd++
			*x = deferral{gen: x.gen}
		}
		d.head = (d.head + 1) % len(d.ring)
		d.size--
	}
	d.mu.Unlock()
	d.c.timedOut.Add(uint64(nd))
	for _, f := range dones[:nd] {
		f(false)
	}
}

// releaseAll releases every deferral still waiting (the node stopped).
func (d *deferQueue) releaseAll() {
	var dones [MaxDeferred]func(bool)
	nd := 0
	d.mu.Lock()
	for ; d.size > 0; d.size-- {
		x := &d.ring[d.head]
		if x.live {
			dones[nd] = x.done
			nd++
			*x = deferral{gen: x.gen}
		}
		d.head = (d.head + 1) % len(d.ring)
	}
	d.timer.Stop()
	d.mu.Unlock()
	d.c.failed.Add(uint64(nd))
	for _, f := range dones[:nd] {
		f(false)
	}
}
