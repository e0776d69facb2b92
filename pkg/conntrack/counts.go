package conntrack

import (
	"github.com/statewall/statewall/pkg/conntrack/tcpstate"
	"github.com/statewall/statewall/pkg/packet"
)

// Counts by kind. Every shard keeps, under its lock, how many of its
// entries are of each kind: the protocol and the state a listing shows
// (the TCP or SCTP state, or ASSURED / REPLIED / UNREPLIED for the others). They
// change where entries change (insertion, removal, and the end of every
// packet's tracking, which compares the entry's kind before and after), so
// Counts costs one short lock per shard whatever the table's size: a
// metrics scrape of a million entries is a few microseconds, not a walk
// that holds each shard's lock for milliseconds and stalls its queue.

// Kind slots: 3 per IP protocol number (unreplied, replied, assured), then
// one per TCP state, then one per SCTP state.
const (
	kindTCP  = 256 * 3
	kindSCTP = kindTCP + int(tcpstate.NumStates)
	numKinds = kindSCTP + int(numSCTPStates)
)

// kindOf is e's kind slot.
func kindOf(e *entry) uint16 {
	switch e.key.proto {
	case packet.ProtoTCP:
		return kindTCP + uint16(e.tcp.State)
	case packet.ProtoSCTP:
		return uint16(kindSCTP) + uint16(e.sctp().state)
	}
	k := uint16(e.key.proto) * 3
	switch {
	case e.assured():
		k += 2
	case e.seenReply():
		k++
	}
	return k
}

// Count is how many live entries of one protocol are in one state.
type Count struct {
	Proto packet.Proto
	// State is what StateName shows: the TCP or SCTP state, or ASSURED,
	// REPLIED, UNREPLIED.
	State string
	N     int
}

var flagStates = [3]string{"UNREPLIED", "REPLIED", "ASSURED"}

// StateName is the state a listing shows: the TCP state for TCP, the SCTP
// state for SCTP, else ASSURED, REPLIED (a reply was seen) or UNREPLIED,
// as conntrack -L marks entries.
func (e EntryInfo) StateName() string {
	if s := e.State(); s != "" {
		return s
	}
	switch {
	case e.Assured:
		return flagStates[2]
	case e.SeenReply:
		return flagStates[1]
	}
	return flagStates[0]
}

// Counts reaps the entries expired at now (or at the table's clock, if
// later) and returns how many live entries there are of each protocol and
// state, leaving out the empty ones, in no particular order. It locks each
// shard just long enough to copy its counters.
func (t *Table) Counts(now int64) []Count {
	t.reapExpired(t.clock(now))
	var sum [numKinds]int64
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, n := range s.kinds {
			sum[k] += int64(n)
		}
		s.mu.Unlock()
	}
	var out []Count
	for k, n := range sum {
		if n == 0 {
			continue
		}
		c := Count{N: int(n)}
		switch {
		case k >= kindSCTP:
			c.Proto, c.State = packet.ProtoSCTP, SCTPState(k-kindSCTP).String()
		case k >= kindTCP:
			c.Proto, c.State = packet.ProtoTCP, tcpstate.State(k-kindTCP).String()
		default:
			c.Proto, c.State = packet.Proto(k/3), flagStates[k%3]
		}
		out = append(out, c)
	}
	return out
}
