package hasync

import (
	"cmp"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Reason says why a connection was refused or a session cut off.
type Reason uint8

const (
	// ReasonHandshake: the TLS handshake failed: no certificate, one not
	// signed by the CA, not TLS at all (plain TCP), or too slow.
	ReasonHandshake Reason = iota
	// ReasonNotAllowed: a valid certificate whose names are not in
	// Config.AllowedPeers.
	ReasonNotAllowed
	// ReasonBusy: too many handshakes under way at once.
	ReasonBusy
	// ReasonVersion: the peer speaks another protocol version.
	ReasonVersion
	// ReasonGarbage: a frame that breaks the format (bad magic, unknown
	// type, bad body, a HELLO out of place, a gap in the seqs).
	ReasonGarbage
	// ReasonOversized: a frame longer than MaxFrame.
	ReasonOversized
	// ReasonReplayed: a seq not above the last one (a replayed or
	// duplicated frame).
	ReasonReplayed
	// ReasonMalformed: a record or key that conntrack refuses.
	ReasonMalformed
	// ReasonDead: nothing heard for Config.DeadAfter, or a write blocked
	// that long (the peer stopped reading).
	ReasonDead
	numReasons
)

var reasonNames = [numReasons]string{"handshake", "not_allowed", "busy", "version", "garbage", "oversized", "replayed", "malformed", "dead"}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "reason?"
}

// Reasons counts refusals or cut-offs by Reason.
type Reasons struct {
	Handshake  uint64 `json:"handshake"`
	NotAllowed uint64 `json:"not_allowed"`
	Busy       uint64 `json:"busy"`
	Version    uint64 `json:"version"`
	Garbage    uint64 `json:"garbage"`
	Oversized  uint64 `json:"oversized"`
	Replayed   uint64 `json:"replayed"`
	Malformed  uint64 `json:"malformed"`
	Dead       uint64 `json:"dead"`
}

// Total is the sum of the counts.
func (r Reasons) Total() uint64 {
	return r.Handshake + r.NotAllowed + r.Busy + r.Version + r.Garbage + r.Oversized + r.Replayed + r.Malformed + r.Dead
}

type reasonCounts [numReasons]atomic.Uint64

func (c *reasonCounts) get() Reasons {
	return Reasons{
		Handshake: c[ReasonHandshake].Load(), NotAllowed: c[ReasonNotAllowed].Load(), Busy: c[ReasonBusy].Load(),
		Version: c[ReasonVersion].Load(), Garbage: c[ReasonGarbage].Load(), Oversized: c[ReasonOversized].Load(),
		Replayed: c[ReasonReplayed].Load(), Malformed: c[ReasonMalformed].Load(), Dead: c[ReasonDead].Load(),
	}
}

// Direction is which way a link carries changes.
type Direction uint8

const (
	// Out: this node's changes to the peer, on the connection this node
	// dials.
	Out Direction = iota
	// In: the peer's changes to this node, on the connection the peer
	// dials.
	In
)

func (d Direction) String() string {
	if d == In {
		return "in"
	}
	return "out"
}

// MarshalText makes the direction a string in JSON.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// State is a link's state.
type State uint8

const (
	StateDown          State = iota // no session
	StateConnecting                 // dialling or in the TLS handshake (Out)
	StateBulkSending                // sending the bulk, not yet acked (Out)
	StateBulkReceiving              // between BULK_START and BULK_END (In)
	StateConnected                  // streaming changes
)

var stateNames = [...]string{"down", "connecting", "bulk-sending", "bulk-receiving", "connected"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state?"
}

// MarshalText makes the state a string in JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Stats is a snapshot of a Node's state and counters.
type Stats struct {
	Name string `json:"name"`
	// Connected counts the links in a session (connected or in a bulk).
	Connected int `json:"connected"`
	// Peers has one link per configured peer (Out) and one per peer
	// that connected to this node (In), by certificate name.
	Peers []PeerStats `json:"peers"`
	// Refused counts connections turned away before a session began
	// (handshake, not_allowed, busy, version).
	Refused Reasons `json:"refused"`
	// Defer: Announce's deferrals.
	Defer DeferStats `json:"defer"`
}

// PeerStats is one link to one peer, across its sessions.
type PeerStats struct {
	Direction Direction `json:"direction"`
	// Address: the configured one (Out), the remote one of the last
	// session (In).
	Address string `json:"address"`
	// Name is the peer certificate's common name; Node the name its HELLO
	// gave.
	Name  string    `json:"name"`
	Node  string    `json:"node"`
	State State     `json:"state"`
	Since time.Time `json:"since"`
	// Sessions counts the sessions that got past the handshake.
	Sessions uint64 `json:"sessions"`
	// Frames and their bytes (frame bytes: TLS adds its own).
	MessagesSent     uint64 `json:"messages_sent"`
	MessagesReceived uint64 `json:"messages_received"`
	BytesSent        uint64 `json:"bytes_sent"`
	BytesReceived    uint64 `json:"bytes_received"`
	// Out: records and deletes sent.
	RecordsSent uint64 `json:"records_sent"`
	DeletesSent uint64 `json:"deletes_sent"`
	// In: what Install made of the records received, and deletes
	// received (Removed: of those, the ones that found an entry).
	Installed       uint64 `json:"installed"`
	Merged          uint64 `json:"merged"`
	Stale           uint64 `json:"stale"`
	Full            uint64 `json:"full"`
	DeletesReceived uint64 `json:"deletes_received"`
	Removed         uint64 `json:"removed"`
	// CutOff counts sessions ended for a breach, by reason (and dead
	// ones).
	CutOff Reasons `json:"cut_off"`
	// Bulks counts the bulks sent (Out) or received (In) to their end;
	// LastBulkSeconds is how long the last took (Out: from BULK_START
	// to the peer's ack of BULK_END; In: from BULK_START to BULK_END),
	// LastBulkRecords how many records it carried.
	Bulks           uint64  `json:"bulks"`
	LastBulkSeconds float64 `json:"last_bulk_seconds"`
	LastBulkRecords uint64  `json:"last_bulk_records"`
	// Out: bulks scheduled again because the event queue dropped events
	// (ResyncsDropped) or the pending set overflowed (ResyncsOverflow).
	ResyncsDropped  uint64 `json:"resyncs_dropped"`
	ResyncsOverflow uint64 `json:"resyncs_overflow"`
	// Out: connections made and gone between two flushes, of which
	// nothing was sent (the peer never needed them).
	Coalesced uint64 `json:"coalesced"`
	// Out: the sync lag (doc.go): from an entry's change to the peer's
	// ack of the frame that carried it.
	Lag Quantiles `json:"lag"`
	// Out: deferrals sent to this peer, acked by it, and timed out
	// while waiting for it.
	Deferred uint64 `json:"deferred"`
	Acked    uint64 `json:"acked"`
	TimedOut uint64 `json:"timed_out"`
}

// DeferStats counts Announce's deferrals.
type DeferStats struct {
	// Deferred: records sent with an ack requested and a caller waiting.
	Deferred uint64 `json:"deferred"`
	// Acked by every peer they went to, in time; TimedOut: not acked
	// within Config.Defer; Failed: a session went down, or the entry
	// left the table before it was sent.
	Acked    uint64 `json:"acked"`
	TimedOut uint64 `json:"timed_out"`
	Failed   uint64 `json:"failed"`
	// NoPeer: released at once, no peer session being up (or Defer
	// off); Overflow: released early because MaxDeferred were waiting.
	NoPeer   uint64 `json:"no_peer"`
	Overflow uint64 `json:"overflow"`
	// Latency: from Announce to the last peer's ack, of the acked ones.
	Latency Quantiles `json:"latency"`
}

// Quantiles summarises a histogram: how many values, and the bucket
// bounds under which half and 99% of them fall (the largest value seen
// when that is past the last bound).
type Quantiles struct {
	Count      uint64  `json:"count"`
	P50Seconds float64 `json:"p50_seconds"`
	P99Seconds float64 `json:"p99_seconds"`
}

// histBounds are the histogram buckets' upper bounds: 100 µs to 10 s,
// about three per decade.
var histBounds = [...]time.Duration{
	100 * time.Microsecond, 200 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second,
}

// histogram counts durations in histBounds' buckets, lock-free: one
// atomic add for the bucket, one for the sum.
type histogram struct {
	counts [len(histBounds) + 1]atomic.Uint64
	sum    atomic.Int64 // ns
	max    atomic.Int64 // ns
}

func (h *histogram) observe(d time.Duration) {
	d = max(d, 0)
	i, _ := slices.BinarySearch(histBounds[:], d)
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// snapshot returns the per-bucket counts (the last past every bound),
// their total and the sum in seconds.
func (h *histogram) snapshot() (counts [len(histBounds) + 1]uint64, total uint64, sum float64) {
	for i := range h.counts {
		counts[i] = h.counts[i].Load()
		total += counts[i]
	}
	return counts, total, time.Duration(h.sum.Load()).Seconds()
}

func (h *histogram) quantiles() Quantiles {
	counts, total, _ := h.snapshot()
	q := Quantiles{Count: total}
	if total == 0 {
		return q
	}
	at := func(p float64) float64 {
		want := uint64(math.Ceil(p * float64(total)))
		var cum uint64
		for i, c := range counts {
			cum += c
			if cum >= want {
				if i < len(histBounds) {
					return histBounds[i].Seconds()
				}
				break
			}
		}
		return time.Duration(h.max.Load()).Seconds()
	}
	q.P50Seconds, q.P99Seconds = at(0.50), at(0.99)
	return q
}

// counters are a link's counters, shared by its sessions one after the
// other, and read by Stats while they run.
type counters struct {
	sessions                                        atomic.Uint64
	msgsSent, msgsRecv, bytesSent, bytesRecv        atomic.Uint64
	recordsSent, deletesSent                        atomic.Uint64
	installed, merged, stale, full, delRecv, remove atomic.Uint64
	cutOff                                          reasonCounts
	bulks, lastBulkRecords                          atomic.Uint64
	lastBulk                                        atomic.Int64 // ns
	resyncDropped, resyncOverflow                   atomic.Uint64
	coalesced                                       atomic.Uint64
	deferred, acked, timedOut                       atomic.Uint64
	lag                                             histogram
}

// link is one direction of sync with one peer, across its sessions.
type link struct {
	dir Direction
	c   counters

	mu    sync.Mutex
	addr  string
	name  string // certificate CN
	node  string // HELLO name
	state State
	since time.Time
	// cancel ends the current session, gen counts them (In: a peer that
	// connects again replaces its session).
	cancel func()
	gen    uint64
	// lastErr is the last failure logged, so that a peer failing the
	// same way every retry is logged once, not every 2 s.
	lastErr string
}

func (l *link) setState(s State) {
	l.mu.Lock()
	if l.state != s {
		l.state, l.since = s, time.Now()
	}
	l.mu.Unlock()
}

func (l *link) stats() PeerStats {
	l.mu.Lock()
	ps := PeerStats{Direction: l.dir, Address: l.addr, Name: l.name, Node: l.node, State: l.state, Since: l.since}
	l.mu.Unlock()
	c := &l.c
	ps.Sessions = c.sessions.Load()
	ps.MessagesSent, ps.MessagesReceived = c.msgsSent.Load(), c.msgsRecv.Load()
	ps.BytesSent, ps.BytesReceived = c.bytesSent.Load(), c.bytesRecv.Load()
	ps.RecordsSent, ps.DeletesSent = c.recordsSent.Load(), c.deletesSent.Load()
	ps.Installed, ps.Merged, ps.Stale, ps.Full = c.installed.Load(), c.merged.Load(), c.stale.Load(), c.full.Load()
	ps.DeletesReceived, ps.Removed = c.delRecv.Load(), c.remove.Load()
	ps.CutOff = c.cutOff.get()
	ps.Bulks, ps.LastBulkRecords = c.bulks.Load(), c.lastBulkRecords.Load()
	ps.LastBulkSeconds = time.Duration(c.lastBulk.Load()).Seconds()
	ps.ResyncsDropped, ps.ResyncsOverflow = c.resyncDropped.Load(), c.resyncOverflow.Load()
	ps.Coalesced = c.coalesced.Load()
	ps.Lag = c.lag.quantiles()
	ps.Deferred, ps.Acked, ps.TimedOut = c.deferred.Load(), c.acked.Load(), c.timedOut.Load()
	return ps
}

// label is how metrics name the link's peer: its certificate name once
// known, else its address.
func (ps *PeerStats) label() string {
	if ps.Name != "" {
		return ps.Name
	}
	return ps.Address
}

// Stats returns a snapshot of the node's links and counters. It is safe
// to call at any time, concurrently with everything else.
func (n *Node) Stats() Stats {
	st := Stats{Name: n.cfg.Name, Refused: n.refused.get()}
	for _, l := range n.links() {
		ps := l.stats()
		if ps.State != StateDown && ps.State != StateConnecting {
			st.Connected++
		}
		st.Peers = append(st.Peers, ps)
	}
	slices.SortFunc(st.Peers, func(a, b PeerStats) int {
		if a.Direction != b.Direction {
			return int(a.Direction) - int(b.Direction)
		}
		if c := cmp.Compare(a.label(), b.label()); c != 0 {
			return c
		}
		return cmp.Compare(a.Address, b.Address)
	})
	d := &n.defers.c
	st.Defer = DeferStats{
		Deferred: d.deferred.Load(), Acked: d.acked.Load(), TimedOut: d.timedOut.Load(), Failed: d.failed.Load(),
		NoPeer: d.noPeer.Load(), Overflow: d.overflow.Load(), Latency: d.latency.quantiles(),
	}
	return st
}
