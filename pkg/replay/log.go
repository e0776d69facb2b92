package replay

import (
	"time"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/pflog"
	"github.com/statewall/statewall/pkg/rules"
)

// Logging: with Config.Log, the packets that `log` rules decide are
// written to a pflog capture as the daemon logs them, synchronously (a
// replay is offline: it waits for its log rather than drop records).
//
// Which decision: the stateful engine's in modes compare and stateful, the
// stateless engine's in mode stateless. A packet decided by a rule with
// `log` gets one record: that rule's number and action, its direction
// (in, or out for an outbound evaluation; pflog has no "unknown", so a
// packet of no direction is logged in) and interface. A forwarded packet
// is matched twice, and each evaluation whose rule logs gets its own
// record, in on the interface it arrived on, out on the one it leaves by,
// as pf logs it. A fragmented datagram is logged once, whole, when the
// stateful engine decides it (pf filters reassembled packets); in
// stateless mode each fragment is.
//
// `log (all)` also logs the later packets of the connections its rule
// created, which pass by state with no rule: replay remembers, per
// connection, the rule that created it (logAll), and logs those packets
// with its number. ICMP errors related to such a connection are logged
// with it too.

// flowKey names a connection in both directions: the two endpoints in a
// fixed order (the smaller first), so a packet and its reply find the
// same key. ICMP queries key on their identifier, as both ports (a
// request and its reply differ in type). Comparable and pointer-free, as a map key.
type flowKey struct {
	a, b   [16]byte
	pa, pb uint16
	proto  packet.Proto
}

func makeFlowKey(src, dst [16]byte, sport, dport uint16, proto packet.Proto) flowKey {
	if string(src[:]) > string(dst[:]) || src == dst && sport > dport {
		src, dst, sport, dport = dst, src, dport, sport
	}
	return flowKey{a: src, b: dst, pa: sport, pb: dport, proto: proto}
}

// connKey is the key of the connection p belongs to: its own, or for an
// ICMP error the quoted packet's. ok is false when there is none.
func connKey(p *packet.Packet) (flowKey, bool) {
	if p.Inner.Valid && !p.Inner.NonFirstFragment {
		in := &p.Inner
		sp, dp := in.SrcPort, in.DstPort
		if in.Proto == packet.ProtoICMP || in.Proto == packet.ProtoICMPv6 {
			sp, dp = in.ICMPID, in.ICMPID
		}
		return makeFlowKey(in.Src.As16(), in.Dst.As16(), sp, dp, in.Proto), true
	}
	if p.Kind != packet.KindOK {
		return flowKey{}, false
	}
	sp, dp := p.SrcPort, p.DstPort
	if p.Proto == packet.ProtoICMP || p.Proto == packet.ProtoICMPv6 {
		sp, dp = p.ICMPID, p.ICMPID
	}
	return makeFlowKey(p.Src.As16(), p.Dst.As16(), sp, dp, p.Proto), true
}

// logAllState is the `log (all)` rule that created a connection, and the
// direction of the evaluation it matched in (for a forwarded packet, in or
// out).
type logAllState struct {
	rule *rules.Rule
	dir  rules.Dir
}

// hasLogAll reports whether some rule says `log (all)`.
func hasLogAll(rs *rules.Ruleset) bool {
	for i := range rs.Rules {
		if rs.Rules[i].LogAll {
			return true
		}
	}
	return false
}

// logDecision writes the pflog records for p, decided d at w, and returns
// how many it wrote. stateful says d is the stateful engine's, whose new
// connections `log (all)` follows. It does not allocate, but for the map
// entry of a connection that a `log (all)` rule creates.
func (r *Replayer) logDecision(p *packet.Packet, d *engine.Decision, w rules.Where, ts time.Time, stateful bool) (uint8, error) {
	if p.Kind != packet.KindOK {
		return 0, nil
	}
	var n uint8
	if d.Cause == engine.CauseState {
		if r.logAll == nil {
			return 0, nil
		}
		k, ok := connKey(p)
		if !ok {
			return 0, nil
		}
		st, ok := r.logAll[k]
		if !ok {
			return 0, nil
		}
		dir, iface := rules.DirIn, w.In
		if w.Dir == rules.DirOut || w.Dir == rules.DirForward && st.dir == rules.DirOut {
			dir, iface = rules.DirOut, w.Out
		}
		if w.Dir == rules.DirUnknown {
			iface = w.IfaceOf()
		}
		return 1, r.writeLog(p, st.rule, engine.Pass, pflog.ReasonMatch, dir, iface, ts)
	}
	reason := pflog.ReasonMatch
	if d.Cause == engine.CauseTableFull {
		reason = pflog.ReasonStateLimit
	}
	if w.Dir != rules.DirForward {
		if d.Rule != nil && d.Rule.Log {
			if err := r.writeLog(p, d.Rule, d.Verdict, reason, d.Dir, w.IfaceOf(), ts); err != nil {
				return 0, err
			}
			n = 1
		}
		r.rememberLogAll(p, d, d.Rule, d.Dir, stateful)
		return n, nil
	}
	// A forwarded packet's two evaluations, in the order pf makes them:
	// inbound, then outbound. The one that did not decide passed (the
	// outbound one is made only after an inbound pass).
	in, out := d.Rule, d.Other
	inV, outV, inReason, outReason := d.Verdict, engine.Pass, reason, pflog.ReasonMatch
	if d.Dir == rules.DirOut {
		in, out = d.Other, d.Rule
		inV, outV, inReason, outReason = engine.Pass, d.Verdict, pflog.ReasonMatch, reason
	}
	if in != nil && in.Log {
		if err := r.writeLog(p, in, inV, inReason, rules.DirIn, w.In, ts); err != nil {
			return n, err
		}
		n++
	}
	if out != nil && out.Log {
		if err := r.writeLog(p, out, outV, outReason, rules.DirOut, w.Out, ts); err != nil {
			return n, err
		}
		n++
	}
	switch {
	case in != nil && in.LogAll:
		r.rememberLogAll(p, d, in, rules.DirIn, stateful)
	case out != nil && out.LogAll:
		r.rememberLogAll(p, d, out, rules.DirOut, stateful)
	default:
		r.rememberLogAll(p, d, nil, 0, stateful)
	}
	return n, nil
}

// rememberLogAll notes, when d made a new connection, the `log (all)` rule
// that did (rule, matched in direction dir), or that none did (rule nil
// or without it: a connection under a tuple a `log (all)` one had
// before).
func (r *Replayer) rememberLogAll(p *packet.Packet, d *engine.Decision, rule *rules.Rule, dir rules.Dir, stateful bool) {
	if r.logAll == nil || !stateful || !d.Tracked || d.CT.Label != conntrack.LabelNew || d.Verdict != engine.Pass {
		return
	}
	k, ok := connKey(p)
	if !ok {
		return
	}
	if rule != nil && rule.LogAll {
		r.logAll[k] = logAllState{rule, dir}
	} else {
		delete(r.logAll, k)
	}
}

// writeLog writes one record: p from its IP header on.
func (r *Replayer) writeLog(p *packet.Packet, rule *rules.Rule, v engine.Verdict, reason pflog.Reason, dir rules.Dir, iface uint32, ts time.Time) error {
	rec := &r.logRec
	*rec = pflog.Record{Time: ts, Action: pflog.Block, Reason: reason, Dir: pflog.DirIn, Family: p.IPVersion, RuleNr: uint32(rule.Index)}
	if v == engine.Pass {
		rec.Action = pflog.Pass
	}
	if dir == rules.DirOut {
		rec.Dir = pflog.DirOut
	}
	if iface != 0 && int(iface) <= len(r.ifNames) {
		for len(r.pflogNames) < len(r.ifNames) {
			r.pflogNames = append(r.pflogNames, pflog.MakeIfname(r.ifNames[len(r.pflogNames)]))
		}
		rec.Ifname = r.pflogNames[iface-1]
	}
	end := len(p.Data)
	if p.IPLen > 0 && p.L3Off+p.IPLen < end {
		end = p.L3Off + p.IPLen // no Ethernet padding
	}
	rec.Packet = p.Data[p.L3Off:end]
	rec.Length = max(p.IPLen, len(rec.Packet))
	return r.cfg.Log.Write(rec)
}
