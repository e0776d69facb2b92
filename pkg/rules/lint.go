package rules

import (
	"fmt"
	"net/netip"

	"github.com/statewall/statewall/pkg/packet"
)

// Lint: rules that parse but can never match where they run. A firewall
// that says nothing about them protects less than its author thinks (a
// pf-style `block in from $srvnet` on the forward hook once matched
// nothing, silently), so check, run and reload report them as warnings,
// and `check --strict` makes them errors.

// Warning is one such finding, at the rule (or statement) it is about.
type Warning struct {
	File      string
	Line, Col int
	Msg       string
}

func (w Warning) String() string {
	return fmt.Sprintf("%s:%d:%d: warning: %s", w.File, w.Line, w.Col, w.Msg)
}

// LintConfig says where the ruleset runs.
type LintConfig struct {
	// In and Out: packets are decided inbound / outbound there (the
	// daemon's input hook is in, output out, forward both; replay's
	// `set local` gives both). Neither: only packets of no direction
	// (replay without `set local`), which in and out rules never match.
	In, Out bool
	// Local: the host's own traffic is decided (the input or output
	// hook), so IPv6 neighbour discovery passes through the rules.
	Local bool
	// Where names the place for messages: "the hooks input, output".
	Where string
	// Ifaces are the interfaces there, with their addresses; nil when
	// they are not known (then missing interfaces are not reported).
	Ifaces []Iface
}

// Lint returns the warnings for rs running as c says, in file order.
func (rs *Ruleset) Lint(c LintConfig) []Warning {
	var ws []Warning
	file := rs.File
	warn := func(line, col int, format string, args ...any) {
		ws = append(ws, Warning{File: file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
	}
	if len(rs.Rules) == 0 {
		warn(1, 1, "no rules: every packet gets the default (%s)", rs.Default)
		return ws
	}
	tagged := 0
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if r.LogAll || r.Limits.Any() {
			if tagged++; tagged == 256 {
				file = r.where(rs)
				warn(r.Line, r.Col, "rule %d: more than 255 rules use log (all) or stateful tracking options; from this one on, those have no effect", r.Index)
			}
		}
	}
	for _, d := range rs.Tables {
		if !d.Used && !d.Persist {
			file = d.where(rs)
			warn(d.Line, d.Col, "table <%s> is used by no rule and not persist, so it is not created (write persist to keep it for run-time use)", d.Name)
		}
	}
	var byName map[string]*Iface
	if c.Ifaces != nil {
		byName = map[string]*Iface{}
		for i := range c.Ifaces {
			byName[c.Ifaces[i].Name] = &c.Ifaces[i]
		}
	}
	var last *Antispoof
	for i := range rs.Rules {
		r := &rs.Rules[i]
		file = r.where(rs)
		if a := r.Antispoof; a != nil {
			if a == last {
				continue
			}
			last = a
			if !c.In {
				warn(a.Line, a.Col, "antispoof blocks inbound packets, and %s decides none: it never matches", c.Where)
			}
			for _, name := range a.Ifaces {
				f, known := byName[name]
				switch {
				case byName == nil:
				case !known:
					warn(a.Line, a.Col, "antispoof for %s: there is no interface %s (yet); it blocks nothing until there is", name, name)
				case spoofAddrs(spoofNet, a.Family, f.Addrs).Any():
					warn(a.Line, a.Col, "antispoof for %s: %s has no %saddresses now (link-local ones do not count); it blocks nothing until it has", name, name, famWord(a.Family))
				}
			}
			continue
		}
		switch r.Dir {
		case DirIn:
			if !c.In {
				warn(r.Line, r.Col, "rule %d matches only inbound packets ('in'), and %s decides none: it never matches", r.Index, c.Where)
			}
		case DirOut:
			if !c.Out {
				warn(r.Line, r.Col, "rule %d matches only outbound packets ('out'), and %s decides none: it never matches", r.Index, c.Where)
			}
		}
		for _, it := range r.On.Items {
			if byName == nil {
				break
			}
			if _, ok := byName[it.Name]; ok {
				continue
			}
			if it.Neg {
				warn(r.Line, r.Col, "rule %d: there is no interface %s (yet), so 'on !%s' excludes nothing", r.Index, it.Name, it.Name)
			} else {
				warn(r.Line, r.Col, "rule %d: there is no interface %s (yet); 'on %s' matches nothing until there is", r.Index, it.Name, it.Name)
			}
		}
	}
	if c.Local && rs.passesIPv6() {
		if w, ok := rs.blocksND(c); ok {
			ws = append(ws, w)
		}
	}
	return ws
}

func famWord(f uint8) string {
	switch f {
	case 4:
		return "IPv4 "
	case 6:
		return "IPv6 "
	}
	return ""
}

// passesIPv6 reports whether rs is an IPv6 ruleset that may pass IPv6:
// one that says IPv6 somewhere (inet6, icmp6, an IPv6 address, an IPv6
// `set local`) and passes some of it. A ruleset that never mentions IPv6
// blocks it whole by its default, and neighbour discovery with it, as its
// author presumably meant.
func (rs *Ruleset) passesIPv6() bool {
	mentions := false
	for _, p := range rs.Local {
		mentions = mentions || p.Addr().Is6()
	}
	passes := rs.Default == Pass
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if r.Family == 6 || r.From.has6() || r.To.has6() {
			mentions = true
		}
		if r.Action == Pass && r.Family != 4 {
			passes = true
		}
	}
	return mentions && passes
}

// blocksND reports, with a warning at the rule (or default) that does it,
// whether the rules block IPv6 neighbour discovery (solicitation and
// advertisement, in and out) on any of the interfaces. Conntrack does not
// track it, so in stateful mode the rules decide it packet by packet, and
// without it IPv6 stops working after a few seconds.
func (rs *Ruleset) blocksND(c LintConfig) (Warning, bool) {
	b := rs
	idx := []uint32{0}
	if len(c.Ifaces) > 0 {
		b = rs.Bind(c.Ifaces)
		idx = idx[:0]
		for _, f := range c.Ifaces {
			if f.Name != LoopbackName {
				idx = append(idx, f.Index)
			}
		}
	}
	ll1, ll2 := netip.MustParseAddr("fe80::1"), netip.MustParseAddr("fe80::2")
	sol := netip.MustParseAddr("ff02::1:ff00:2")
	for _, typ := range []uint8{135, 136} {
		dst := ll1
		if typ == 135 {
			dst = sol
		}
		p := packet.Packet{Kind: packet.KindOK, IPVersion: 6, Proto: packet.ProtoICMPv6, Src: ll2, Dst: dst, ICMPType: typ, L4Off: 40}
		for _, dir := range []Dir{DirIn, DirOut} {
			if dir == DirIn && !c.In || dir == DirOut && !c.Out {
				continue
			}
			for _, i := range idx {
				r := b.MatchOn(&p, dir, i, false)
				if r != nil && r.Action == Pass || r == nil && rs.Default == Pass {
					continue
				}
				what := "neighbor-solicit"
				if typ == 136 {
					what = "neighbor-advert"
				}
				msg := fmt.Sprintf("IPv6 neighbour discovery (%s %s) is blocked by the default, so IPv6 stops working on %s; add 'pass inet6 proto icmp6 icmp-type %s no state' (and the same for neighbor-advert) before the blocks", what, dir, c.Where, what)
				line, col := 1, 1
				if r != nil {
					line, col = r.Line, r.Col
					msg = fmt.Sprintf("rule %d blocks IPv6 neighbour discovery (%s %s), so IPv6 stops working on %s; pass icmp6 types neighbor-solicit and neighbor-advert before it", r.Index, what, dir, c.Where)
				}
				file := rs.File
				if r != nil {
					file = r.where(rs)
				}
				return Warning{File: file, Line: line, Col: col, Msg: msg}, true
			}
		}
	}
	return Warning{}, false
}
