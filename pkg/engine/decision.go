// Package engine decides what happens to a packet. Two engines share one
// compiled ruleset: Stateless judges every packet alone by the rules;
// Stateful puts connection tracking in front of the same rules, as the
// kernel's `ct state` does. Compare runs both on the same packet.
//
// Deciding never allocates and never returns an error: every packet,
// including one that could not be decoded, gets a Decision whose reason says
// why. Reasons are rendered to text only when somebody asks (Reason).
package engine

import (
	"strconv"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/rules"
)

// Verdict is pass or block.
type Verdict uint8

const (
	Block Verdict = iota
	Pass
)

func (v Verdict) String() string {
	if v == Pass {
		return "pass"
	}
	return "block"
}

func verdictOf(a rules.Action) Verdict {
	if a == rules.Pass {
		return Pass
	}
	return Block
}

// Cause says what decided a packet.
type Cause uint8

const (
	// CauseRule: a rule matched (Decision.Rule).
	CauseRule Cause = iota
	// CauseDefault: no rule matched; `set default` decided.
	CauseDefault
	// CauseMalformed: the packet could not be decoded; `set invalid` decided.
	CauseMalformed
	// CauseNotIP: a frame that carries no IP (ARP, LLDP, ...): not the IP
	// filter's business, it passes, as netfilter never sees it.
	CauseNotIP
	// CauseState: conntrack recognised the packet as part of a known
	// connection (established or related): it passes.
	CauseState
	// CauseInvalid: conntrack called the packet invalid; `set invalid`
	// decided.
	CauseInvalid
	// CauseTableFull: the rules passed a new connection but the state table
	// is full and nothing could be evicted; the packet is dropped, as the
	// kernel does.
	CauseTableFull
	// CauseUntracked: conntrack does not track this packet (ICMPv6 neighbour
	// discovery, MLD); the rules decide.
	CauseUntracked
	// CauseFragment: an IP fragment that reassembly dropped (overlapping,
	// duplicate, incomplete when its time ran out); Decision.Detail says
	// which. It never reaches conntrack, as in the kernel.
	CauseFragment
	// CauseLimit: the rules passed a new connection, but a stateful
	// tracking option of the rule (max, max-src-nodes, max-src-states, or
	// set limit src-nodes) refused it; Detail names which. Stateless mode
	// has no states and never refuses so.
	CauseLimit
	// CauseOverload: the packet completed a TCP handshake beyond the rule's
	// max-src-conn or max-src-conn-rate: its connection is killed (and the
	// source goes into the overload table, its states flushed, if the rule
	// says so); Detail names the limit.
	CauseOverload
)

// Decision is a verdict and what it rests on. It is a small value (48
// bytes: TestDecisionSize), copied freely; Rule points into the immutable
// compiled ruleset.
type Decision struct {
	Verdict Verdict
	Cause   Cause
	// Dir is the direction of the rule evaluation that decided: the
	// packet's, or for a forwarded packet DirIn or DirOut (see Other).
	Dir  rules.Dir
	Rule *rules.Rule // the matching rule, when one decided (also for new/untracked packets)
	// Other is, for a forwarded packet matched both inbound and
	// outbound, the rule that matched the evaluation that did not decide
	// (nil when none did, or it was not made): the outbound rule of a
	// passed packet, the inbound one of a packet blocked outbound.
	Other *rules.Rule
	// CT is conntrack's result; meaningful only for the stateful engine
	// (Tracked is true).
	CT      conntrack.Summary
	Tracked bool
	// Midstream: a new TCP packet that is not a connection opener (no SYN,
	// or SYN+ACK): conntrack picked it up mid-stream, as it does an ACK
	// scan, and the stateful rules (MatchNew) wanted a SYN.
	Midstream bool
	// Detail qualifies CauseFragment ("overlapping fragments", ...). It is
	// always a constant string: setting it does not allocate.
	Detail string
}

// FragmentDropped is the stateful decision for a fragment that reassembly
// dropped: blocked, labelled invalid, with why.
func FragmentDropped(why string) Decision {
	return Decision{Verdict: Block, Cause: CauseFragment, Detail: why}
}

// Action is the verdict as a rule would write it: "pass", "block", or for
// a block by a rule that answers, "block return", "block return-rst",
// "block return-icmp" or "block return-icmp6" (pf's words). The daemon
// sends that answer; replay only shows it.
func (d *Decision) Action() string {
	if d.Verdict == Block && d.Rule != nil && d.Rule.Return != rules.ReturnNone && (d.Cause == CauseRule || d.Cause == CauseUntracked) {
		return "block " + d.Rule.Return.String()
	}
	return d.Verdict.String()
}

// Label is the packet's ct label as nftables would show it, or "" when no
// conntrack was consulted.
func (d Decision) Label() string {
	switch {
	case d.Cause == CauseNotIP:
		return "untracked"
	case d.Cause == CauseMalformed, d.Cause == CauseFragment:
		return "invalid"
	case !d.Tracked:
		return ""
	}
	return d.CT.Label.String()
}

// Reason renders why the packet got its verdict, for logs and reports:
// "rule 3 (line 7) \"ssh\"", "default", "conntrack: established",
// "conntrack: invalid (SYN+FIN)". It allocates; call it off the hot path.
func (d Decision) Reason() string {
	switch d.Cause {
	case CauseRule:
		return ruleReason(d.Rule)
	case CauseDefault:
		return "default"
	case CauseMalformed:
		return "malformed packet"
	case CauseNotIP:
		return "not IP"
	case CauseState:
		return "conntrack: " + d.CT.Label.String()
	case CauseInvalid:
		if s := d.CT.ReasonString(); s != "" {
			return "conntrack: invalid (" + s + ")"
		}
		return "conntrack: invalid"
	case CauseTableFull:
		return "conntrack: table full"
	case CauseFragment:
		return "defrag: " + d.Detail
	case CauseLimit:
		return ruleReason(d.Rule) + ": " + d.Detail + " reached"
	case CauseOverload:
		return "overload: " + d.Detail + " exceeded"
	case CauseUntracked:
		if d.Rule != nil {
			return "untracked, " + ruleReason(d.Rule)
		}
		return "untracked, default"
	}
	return "?"
}

func ruleReason(r *rules.Rule) string {
	if r == nil {
		return "rule ?"
	}
	s := "rule " + strconv.Itoa(r.Index) + " (line " + strconv.Itoa(r.Line) + ")"
	if r.Label != "" {
		s += " " + strconv.Quote(r.Label)
	}
	return s
}
