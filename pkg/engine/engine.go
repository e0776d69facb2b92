package engine

import (
	"sync/atomic"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/rules"
)

// ruleHolder holds the compiled ruleset so a reload can swap it atomically
// while packets are being decided: a packet sees either the old or the new
// ruleset, never a mix.
type ruleHolder struct{ rs atomic.Pointer[rules.Ruleset] }

// Rules returns the ruleset in force.
func (h *ruleHolder) Rules() *rules.Ruleset { return h.rs.Load() }

// SetRules replaces the ruleset; packets decided after it returns use rs.
// Connection state is kept.
func (h *ruleHolder) SetRules(rs *rules.Ruleset) { h.rs.Store(rs) }

// undecoded handles packets that never reach the rules: frames that carry
// no IP pass (netfilter's IP hooks never see them) and packets that could
// not be decoded get the `set invalid` verdict in both modes, so that a
// malformed packet cannot slip past a rule it would otherwise have hit.
func undecoded(d *Decision, p *packet.Packet, rs *rules.Ruleset) bool {
	switch p.Kind {
	case packet.KindOK:
		return false
	case packet.KindNotIP:
		d.Verdict, d.Cause = Pass, CauseNotIP
		return true
	}
	d.Verdict, d.Cause = verdictOf(rs.Invalid), CauseMalformed
	return true
}

// byRules is the rule lookup both engines share; it sets the verdict,
// cause and rule of d. newConn selects MatchNew, the stateful reading of
// the rules for the first packet of a connection.
func byRules(d *Decision, rs *rules.Ruleset, p *packet.Packet, dir rules.Dir, cause Cause, newConn bool) {
	var r *rules.Rule
	if newConn {
		r = rs.MatchNew(p, dir)
	} else {
		r = rs.Match(p, dir)
	}
	if r != nil {
		if cause == CauseDefault {
			cause = CauseRule
		}
		d.Verdict, d.Cause, d.Rule = verdictOf(r.Action), cause, r
		return
	}
	d.Verdict, d.Cause = verdictOf(rs.Default), cause
}

// Stateless judges every packet alone by the rules. It is safe for
// concurrent use.
type Stateless struct{ ruleHolder }

// NewStateless returns a stateless engine over rs.
func NewStateless(rs *rules.Ruleset) *Stateless {
	e := &Stateless{}
	e.SetRules(rs)
	return e
}

// Decide returns the verdict for p, travelling in direction dir relative to
// the host.
func (e *Stateless) Decide(p *packet.Packet, dir rules.Dir) (d Decision) {
	e.DecideInto(&d, p, dir)
	return d
}

// DecideInto is Decide storing the decision in *d, for the per-packet
// path: a Decision built whole and returned by value is assembled on the
// stack by narrow stores and copied by wide loads, a store-forwarding
// stall per packet (see conntrack.Table.TrackInto).
func (e *Stateless) DecideInto(d *Decision, p *packet.Packet, dir rules.Dir) {
	*d = Decision{}
	rs := e.Rules()
	if undecoded(d, p, rs) {
		return
	}
	byRules(d, rs, p, dir, CauseDefault, false)
}

// Stateful puts connection tracking in front of the rules, as the kernel's
// `ct state` would: established and related packets pass, invalid ones get
// `set invalid`, new ones go to the rules, and a pass creates state unless
// the rule says `no state`. It is safe for concurrent use (the table shards
// its own locks).
//
// Precondition: p is not an IP fragment. Fragments are reassembled first
// (package defrag in replay; the kernel's defragmentation before NFQUEUE in
// the daemon), as conntrack only ever sees whole datagrams.
type Stateful struct {
	ruleHolder
	CT *conntrack.Table
}

// NewStateful returns a stateful engine over rs that tracks connections in
// ct.
func NewStateful(rs *rules.Ruleset, ct *conntrack.Table) *Stateful {
	e := &Stateful{CT: ct}
	e.SetRules(rs)
	return e
}

// Prefetch announces the packets about to be decided, in order, so that
// their connection-table lookups overlap their cache misses (see
// conntrack.Table.Prefetch). Optional: it changes no decision.
func (e *Stateful) Prefetch(ps []packet.Packet) { e.CT.Prefetch(ps) }

// Decide returns the verdict for p at time now (nanoseconds, the caller's
// clock: packet timestamps in replay, the wall clock in the daemon).
func (e *Stateful) Decide(p *packet.Packet, dir rules.Dir, now int64) (d Decision) {
	e.DecideInto(&d, p, dir, now)
	return d
}

// DecideInto is Decide storing the decision in *d, for the per-packet
// path (see Stateless.DecideInto).
func (e *Stateful) DecideInto(d *Decision, p *packet.Packet, dir rules.Dir, now int64) {
	*d = Decision{}
	rs := e.Rules()
	if undecoded(d, p, rs) {
		return
	}
	var r conntrack.Result
	e.CT.TrackInto(&r, p, now)
	d.CT, d.Tracked = r.Summary(), true
	switch r.Label {
	case conntrack.LabelEstablished, conntrack.LabelRelated:
		d.Verdict, d.Cause = Pass, CauseState
		return
	case conntrack.LabelInvalid:
		d.Verdict, d.Cause = verdictOf(rs.Invalid), CauseInvalid
		return
	case conntrack.LabelUntracked:
		byRules(d, rs, p, dir, CauseUntracked, false)
		return
	}
	// New: the rules decide, read as for a connection's first packet
	// (MatchNew: a TCP pass rule without flags wants a SYN), and an accepted
	// first packet creates the entry.
	byRules(d, rs, p, dir, CauseDefault, true)
	d.Midstream = p.Proto == packet.ProtoTCP && p.TCPFlags&(packet.TCPSyn|packet.TCPAck) != packet.TCPSyn
	if d.Verdict == Pass && (d.Rule == nil || !d.Rule.NoState) {
		if !e.CT.Commit(p, &r, now) {
			d.Verdict, d.Cause = Block, CauseTableFull
		}
	}
}
