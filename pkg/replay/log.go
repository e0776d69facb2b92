package replay

import (
	"time"

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
// created, which pass by state with no rule: the stateful engine tags such
// a connection with its rule (engine.Stateful.LogAllRule, the conntrack
// entry's mark), so its packets, and ICMP errors related to it, are
// logged with that rule's number.

// logDecision writes the pflog records for p, decided d at w, and returns
// how many it wrote. stateful says d is the stateful engine's, whose new
// connections `log (all)` follows. It does not allocate.
func (r *Replayer) logDecision(p *packet.Packet, d *engine.Decision, w rules.Where, ts time.Time, stateful bool) (uint8, error) {
	if p.Kind != packet.KindOK {
		return 0, nil
	}
	var n uint8
	if d.Cause == engine.CauseState {
		if !stateful || r.stateful == nil {
			return 0, nil
		}
		ra := r.stateful.LogAllRule(d)
		if ra == nil {
			return 0, nil
		}
		dir, iface := rules.DirIn, w.In
		if w.Dir == rules.DirOut || w.Dir == rules.DirForward && ra.Dir == rules.DirOut {
			dir, iface = rules.DirOut, w.Out
		}
		if w.Dir == rules.DirUnknown {
			iface = w.IfaceOf()
		}
		return 1, r.writeLog(p, ra, engine.Pass, pflog.ReasonMatch, dir, iface, ts)
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
	return n, nil
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
