package engine

import (
	"net/netip"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/rules"
	"github.com/statewall/statewall/pkg/srctrack"
)

// Stateful tracking options (pf's max, max-src-nodes, max-src-states,
// max-src-conn, max-src-conn-rate, overload): pkg/srctrack counts, per
// rule tag and source, the states a rule made and the TCP connections
// among them that completed their handshake; the connection table tells
// it when each entry goes (Config.OnRemove). Stateless mode has no states,
// so the options do not apply there (the comparison says so).

// NewStatefulTable returns a stateful engine over rs with its own
// connection table made from cfg (the ruleset's limits and timeouts are
// the caller's to put in cfg), wired for the stateful tracking options:
// source nodes are bounded by rs's `set limit src-nodes` and kept `set
// timeout src.track` after their last state. cfg.OnRemove must be nil.
func NewStatefulTable(rs *rules.Ruleset, cfg conntrack.Config) *Stateful {
	e := &Stateful{}
	sc := srctrack.Config{}
	if rs != nil {
		sc.Limit, sc.Timeout = rs.LimitSrcNodes, rs.SrcTrack
	}
	e.src = srctrack.New(sc)
	cfg.OnRemove = e.onRemove
	e.CT = conntrack.New(cfg)
	e.SetRules(rs)
	return e
}

// Sources returns the source tracker, or nil.
func (e *Stateful) Sources() *srctrack.Tracker { return e.src }

// onRemove hears of every marked entry that leaves the table, with the
// entry's shard locked; srctrack's locks are leaves, so this is safe.
func (e *Stateful) onRemove(k *conntrack.Key, mark uint8, assured bool) {
	e.src.Release(mark, k.Src(), assured && k.Proto() == packet.ProtoTCP, e.CT.Now())
}

// busy reports whether a tag still has states or source nodes counted.
func (e *Stateful) busy(tag uint8) bool {
	if e.src == nil {
		return false
	}
	ri := e.src.Rule(tag)
	return ri.States > 0 || ri.Nodes > 0
}

// setLimits gives the tracker the options of every tagged rule, and
// forgets the tags no rule has now.
func (e *Stateful) setLimits(tg *tagging) {
	if e.src == nil {
		return
	}
	for t := 1; t <= MaxTags; t++ {
		r := tg.rule[t]
		if r == nil || !r.Limits.Any() {
			e.src.Forget(uint8(t))
			continue
		}
		l := r.Limits
		e.src.SetLimits(uint8(t), srctrack.Limits{
			Max: l.Max, MaxSrcNodes: l.MaxSrcNodes, MaxSrcStates: l.MaxSrcStates, MaxSrcConn: l.MaxSrcConn,
			ConnRate: l.ConnRate, ConnRatePer: l.ConnRatePer, Overload: l.Overload != "",
		})
	}
}

// adder is a table that can take addresses at run time (pkg/table).
type adder interface {
	Add(ps []netip.Prefix) (int, error)
}

// established counts a TCP connection of a limited rule that just
// completed its handshake (r.Assured). Beyond max-src-conn or
// max-src-conn-rate, as pf's pf_src_connlimit does, it kills the
// connection and blocks the packet, puts the source into the overload
// table, and flushes the source's states (of the rule, or all with
// global).
func (e *Stateful) established(d *Decision, tg *tagging, p *packet.Packet, r *conntrack.Result, now int64) {
	src := p.Src
	if r.Reply {
		src = p.Dst
	}
	ex := e.src.Established(r.Mark, src, now)
	if ex == 0 {
		return
	}
	rule := tg.rule[r.Mark]
	d.Verdict, d.Cause, d.Detail, d.Rule = Block, CauseOverload, ex.String(), rule
	e.CT.Kill(p, now)
	l := rule.Limits
	if l.Overload == "" {
		return
	}
	if t, ok := tg.rs.Table(l.Overload).(adder); ok {
		t.Add([]netip.Prefix{netip.PrefixFrom(src, src.BitLen())})
	}
	if l.Flush {
		mark := r.Mark
		e.CT.Delete(now, func(en *conntrack.EntryInfo) bool {
			return en.Original.Src() == src && (l.FlushGlobal || en.Mark == mark)
		})
	}
}
