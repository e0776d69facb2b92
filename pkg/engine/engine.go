package engine

import (
	"sync/atomic"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/rules"
	"github.com/statewall/statewall/pkg/srctrack"
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
// cause, rule and direction of d. newConn selects MatchNew, the stateful
// reading of the rules for the first packet of a connection.
//
// A forwarded packet is matched twice, as pf filters it twice: inbound on
// the interface it arrived on, then, if that passed, outbound on the one it
// leaves by; it passes only if both pass. d.Rule and d.Dir are those of the
// evaluation that decided (the inbound one when both pass); d.Other is the
// other evaluation's rule when there was one. With no rule that says in,
// out or on, both evaluations are the same and the first serves for both.
func byRules(d *Decision, rs *rules.Ruleset, p *packet.Packet, w rules.Where, cause Cause, newConn bool) {
	if w.Dir != rules.DirForward {
		r := rs.MatchOn(p, w.Dir, w.IfaceOf(), newConn)
		d.Dir = w.Dir
		setRule(d, rs, r, cause)
		return
	}
	in := rs.MatchOn(p, rules.DirIn, w.In, newConn)
	d.Dir = rules.DirIn
	if setRule(d, rs, in, cause); d.Verdict == Block {
		return
	}
	out := in
	if rs.Directional() {
		out = rs.MatchOn(p, rules.DirOut, w.Out, newConn)
	}
	if actionOf(rs, out) == rules.Block {
		setRule(d, rs, out, cause)
		d.Dir, d.Other = rules.DirOut, in
		return
	}
	d.Other = out
}

func actionOf(rs *rules.Ruleset, r *rules.Rule) rules.Action {
	if r == nil {
		return rs.Default
	}
	return r.Action
}

func setRule(d *Decision, rs *rules.Ruleset, r *rules.Rule, cause Cause) {
	if r != nil {
		if cause == CauseDefault {
			cause = CauseRule
		}
		d.Verdict, d.Cause, d.Rule = verdictOf(r.Action), cause, r
		return
	}
	d.Verdict, d.Cause, d.Rule = verdictOf(rs.Default), cause, nil
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
	e.DecideAt(d, p, rules.Where{Dir: dir})
}

// DecideAt is DecideInto for a packet at w: its direction and
// interfaces, which `on` rules and forwarded packets need.
func (e *Stateless) DecideAt(d *Decision, p *packet.Packet, w rules.Where) {
	*d = Decision{}
	rs := e.Rules()
	if undecoded(d, p, rs) {
		return
	}
	byRules(d, rs, p, w, CauseDefault, false)
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
	CT *conntrack.Table

	// cur is the ruleset in force with its tags (tags.go), swapped as one
	// so that a packet never sees a ruleset with another's tags.
	cur  atomic.Pointer[tagging]
	tags tagRegistry
	// src counts states and connections per rule and source for the
	// stateful tracking options (limits.go); nil without NewStatefulTable.
	src *srctrack.Tracker

	// pickupUntil: before this time (conntrack's clock), a TCP packet of
	// an unknown connection that is not a SYN is matched as the rules
	// match it statelessly (SetPickup); pickups counts the connections so
	// picked up.
	pickupUntil atomic.Int64
	pickups     atomic.Uint64
}

// SetPickup lets, until the time until (conntrack's clock), the rules
// pick up TCP connections mid-stream: a packet of an unknown connection
// that is not a SYN is matched as Match matches it, not MatchNew (a pass
// rule's default flags S/SA do not apply), and a pass makes an entry with
// liberal window tracking, as the kernel's nf_conntrack_tcp_loose does.
// The daemon sets it for a while after a restart, so that connections
// made after its last state save (or all of them, without a state file)
// survive a crash. After until, rules want a SYN again.
func (e *Stateful) SetPickup(until int64) { e.pickupUntil.Store(until) }

// Pickups returns how many TCP connections were picked up mid-stream
// because of SetPickup.
func (e *Stateful) Pickups() uint64 { return e.pickups.Load() }

// NewStateful returns a stateful engine over rs that tracks connections in
// ct.
func NewStateful(rs *rules.Ruleset, ct *conntrack.Table) *Stateful {
	e := &Stateful{CT: ct}
	e.SetRules(rs)
	return e
}

// Rules returns the ruleset in force.
func (e *Stateful) Rules() *rules.Ruleset { return e.cur.Load().rs }

// SetRules replaces the ruleset; packets decided after it returns use rs.
// Connection state is kept, and so are the tags of unchanged rules.
// Calls must not overlap (the daemon serialises them).
func (e *Stateful) SetRules(rs *rules.Ruleset) {
	tg := e.tags.tag(rs, e.busy)
	e.setLimits(tg)
	e.cur.Store(tg)
}

// Prefetch announces the packets about to be decided, in order, so that
// their connection-table lookups overlap their cache misses (see
// conntrack.Table.Prefetch). Optional: it changes no decision.
func (e *Stateful) Prefetch(ps []packet.Packet) { e.CT.Prefetch(ps) }

// PrefetchBatch is Prefetch for at most conntrack.BatchSize packets,
// keeping what it computes for each in b, for DecideBatch
// (conntrack.Table.PrefetchBatch).
func (e *Stateful) PrefetchBatch(b *conntrack.Batch, ps []packet.Packet) { e.CT.PrefetchBatch(b, ps) }

// Decide returns the verdict for p at time now (nanoseconds, the caller's
// clock: packet timestamps in replay, the wall clock in the daemon).
func (e *Stateful) Decide(p *packet.Packet, dir rules.Dir, now int64) (d Decision) {
	e.DecideInto(&d, p, dir, now)
	return d
}

// DecideInto is Decide storing the decision in *d, for the per-packet
// path (see Stateless.DecideInto).
func (e *Stateful) DecideInto(d *Decision, p *packet.Packet, dir rules.Dir, now int64) {
	e.DecideAt(d, p, rules.Where{Dir: dir}, now)
}

// DecideAt is DecideInto for a packet at w: its direction and
// interfaces, which `on` rules and forwarded packets need.
func (e *Stateful) DecideAt(d *Decision, p *packet.Packet, w rules.Where, now int64) {
	e.decide(d, p, nil, 0, w, now)
}

// DecideBatch is DecideAt for packet i of the batch PrefetchBatch announced
// (b.Packet(i)), reusing what PrefetchBatch computed for it. The same
// decision as DecideAt's, for less work.
func (e *Stateful) DecideBatch(d *Decision, b *conntrack.Batch, i int, w rules.Where, now int64) {
	e.decide(d, b.Packet(i), b, i, w, now)
}

// decide is DecideAt, for p = b.Packet(i) when b is not nil.
func (e *Stateful) decide(d *Decision, p *packet.Packet, b *conntrack.Batch, i int, w rules.Where, now int64) {
	*d = Decision{}
	tg := e.cur.Load()
	rs := tg.rs
	if undecoded(d, p, rs) {
		return
	}
	var r conntrack.Result
	if b != nil {
		e.CT.TrackBatchInto(&r, b, i, now)
	} else {
		e.CT.TrackInto(&r, p, now)
	}
	d.CT, d.Tracked = r.Summary(), true
	switch r.Label {
	case conntrack.LabelEstablished, conntrack.LabelRelated:
		d.Verdict, d.Cause = Pass, CauseState
		if r.Assured && r.Mark != 0 && tg.limited[r.Mark] {
			e.established(d, tg, p, &r, now)
		}
		return
	case conntrack.LabelInvalid:
		d.Verdict, d.Cause = verdictOf(rs.Invalid), CauseInvalid
		return
	case conntrack.LabelUntracked:
		byRules(d, rs, p, w, CauseUntracked, false)
		return
	}
	// New: the rules decide, read as for a connection's first packet
	// (MatchNew: a TCP pass rule without flags wants a SYN), and an accepted
	// first packet creates the entry.
	d.Midstream = p.Proto == packet.ProtoTCP && p.TCPFlags&(packet.TCPSyn|packet.TCPAck) != packet.TCPSyn
	pickup := d.Midstream && now < e.pickupUntil.Load()
	byRules(d, rs, p, w, CauseDefault, !pickup)
	if pickup && d.Verdict == Pass {
		e.pickups.Add(1)
	}
	if d.Verdict == Pass && (d.Rule == nil || !d.Rule.NoState) && (d.Other == nil || !d.Other.NoState) {
		r.Mark = tg.markOf(d)
		d.CT.Mark = r.Mark
		acquired := false
		if r.Mark != 0 && tg.limited[r.Mark] && e.src != nil {
			ok, why := e.src.Acquire(r.Mark, p.Src, now)
			if !ok {
				d.Verdict, d.Cause, d.Detail = Block, CauseLimit, why.String()
				d.Rule = tg.rule[r.Mark]
				return
			}
			acquired = true
		}
		if !e.CT.Commit(p, &r, now) {
			d.Verdict, d.Cause = Block, CauseTableFull
		}
		if acquired && (d.Verdict == Block || r.Pending()) {
			// No entry was made for this count (full, or a concurrent
			// packet made it first with its own).
			e.src.Release(r.Mark, p.Src, false, now)
		}
	}
}
