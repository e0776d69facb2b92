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
func undecoded(p *packet.Packet, rs *rules.Ruleset) (Decision, bool) {
	switch p.Kind {
	case packet.KindOK:
		return Decision{}, false
	case packet.KindNotIP:
		return Decision{Verdict: Pass, Cause: CauseNotIP}, true
	}
	return Decision{Verdict: verdictOf(rs.Invalid), Cause: CauseMalformed}, true
}

// byRules is the rule lookup both engines share.
// newConn selects MatchNew, the stateful reading of the rules for the
// first packet of a connection.
func byRules(rs *rules.Ruleset, p *packet.Packet, dir rules.Dir, cause Cause, newConn bool) Decision {
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
		return Decision{Verdict: verdictOf(r.Action), Cause: cause, Rule: r}
	}
	return Decision{Verdict: verdictOf(rs.Default), Cause: cause}
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
func (e *Stateless) Decide(p *packet.Packet, dir rules.Dir) Decision {
	rs := e.Rules()
	if d, done := undecoded(p, rs); done {
		return d
	}
	return byRules(rs, p, dir, CauseDefault, false)
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
func (e *Stateful) Decide(p *packet.Packet, dir rules.Dir, now int64) Decision {
	rs := e.Rules()
	if d, done := undecoded(p, rs); done {
		return d
	}
	r := e.CT.Track(p, now)
	switch r.Label {
	case conntrack.LabelEstablished, conntrack.LabelRelated:
		return Decision{Verdict: Pass, Cause: CauseState, CT: r.Summary(), Tracked: true}
	case conntrack.LabelInvalid:
		return Decision{Verdict: verdictOf(rs.Invalid), Cause: CauseInvalid, CT: r.Summary(), Tracked: true}
	case conntrack.LabelUntracked:
		d := byRules(rs, p, dir, CauseUntracked, false)
		d.CT, d.Tracked = r.Summary(), true
		return d
	}
	// New: the rules decide, read as for a connection's first packet
	// (MatchNew: a TCP pass rule without flags wants a SYN), and an accepted
	// first packet creates the entry.
	d := byRules(rs, p, dir, CauseDefault, true)
	d.CT, d.Tracked = r.Summary(), true
	d.Midstream = p.Proto == packet.ProtoTCP && p.TCPFlags&(packet.TCPSyn|packet.TCPAck) != packet.TCPSyn
	if d.Verdict == Pass && (d.Rule == nil || !d.Rule.NoState) {
		if !e.CT.Commit(p, &r, now) {
			d.Verdict, d.Cause = Block, CauseTableFull
		}
	}
	return d
}
