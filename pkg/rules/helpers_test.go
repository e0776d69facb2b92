package rules

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	"github.com/statewall/statewall/internal/pkttest"
	"github.com/statewall/statewall/pkg/packet"
)

// pkt builds a decoded packet without bytes from a line in pkttest's
// notation (see package pkttest), for example
//
//	tcp 198.18.0.1:1234 > 198.18.0.2:80 S
//	icmp 198.18.0.1 > 198.18.0.2 type=3 code=1
//	udp 198.18.0.1 > 198.18.0.2 frag=1480      (a non-first fragment: no ports)
//	tcp 198.18.0.1:1234 > 198.18.0.2:80 S nol4 (the transport header did not decode)
//
// It panics on a bad line rather than taking a testing.TB, so that
// package variables and benchmark setup can use it.
func pkt(s string) *packet.Packet {
	p, err := pkttest.Fields(s)
	if err != nil {
		panic(err)
	}
	return p
}

// refMatch is the language's meaning written as directly as possible over
// the AST. The compiled matchers must agree with it.
func refMatch(rs *Ruleset, p *packet.Packet, dir Dir) *Rule {
	for i := range rs.Rules {
		if refRule(&rs.Rules[i], p, dir, rs.Table) {
			return &rs.Rules[i]
		}
	}
	return nil
}

func refRule(r *Rule, p *packet.Packet, dir Dir, tables func(string) Lookup) bool {
	if r.Dir != DirUnknown && r.Dir != dir {
		return false
	}
	// Unbound, a packet is on no interface ("" is in no positive item),
	// and antispoof knows no addresses (it blocks nothing).
	if !r.On.Contains("") || r.spoof != spoofNone && r.From.Any() {
		return false
	}
	var fam uint8
	switch {
	case p.Src.Is4() && p.Dst.Is4():
		fam = 4
	case p.Src.Is6() && p.Dst.Is6():
		fam = 6
	}
	if r.Family != 0 && r.Family != fam {
		return false
	}
	if r.Proto != 0 && r.Proto != p.Proto {
		return false
	}
	if fam == 0 {
		if !r.From.Any() || !r.To.Any() {
			return false
		}
	} else if !r.From.Contains(p.Src, tables) || !r.To.Contains(p.Dst, tables) {
		return false
	}
	if !r.needsL4() {
		return true
	}
	if p.L4Off == 0 || p.Frag.IsFragment && p.Frag.Offset != 0 {
		return false
	}
	if !r.FromPorts.Contains(p.SrcPort) || !r.ToPorts.Contains(p.DstPort) {
		return false
	}
	if r.HasFlags && p.TCPFlags&r.FlagsMask != r.Flags {
		return false
	}
	if r.HasICMPType && (p.ICMPType != r.ICMPType || r.HasICMPCode && p.ICMPCode != r.ICMPCode) {
		return false
	}
	return true
}

// sameRuleset reports how a and b differ in what they mean (not in File or
// line numbers), or "".
func sameRuleset(a, b *Ruleset) string {
	if a.Default != b.Default || a.Invalid != b.Invalid || a.LimitStates != b.LimitStates || a.Timeouts != b.Timeouts || a.has != b.has {
		return fmt.Sprintf("settings differ: %+v vs %+v", *a, *b)
	}
	if !reflect.DeepEqual(a.Local, b.Local) {
		return fmt.Sprintf("local: %v vs %v", a.Local, b.Local)
	}
	if len(a.Rules) != len(b.Rules) {
		return fmt.Sprintf("%d rules vs %d", len(a.Rules), len(b.Rules))
	}
	for i := range a.Rules {
		ra, rb := a.Rules[i], b.Rules[i]
		ra.Line, rb.Line, ra.Col, rb.Col = 0, 0, 0, 0
		if (ra.Antispoof == nil) != (rb.Antispoof == nil) || ra.Antispoof != nil && ra.Antispoof.String() != rb.Antispoof.String() {
			return fmt.Sprintf("rule %d: antispoof %v vs %v", i+1, ra.Antispoof, rb.Antispoof)
		}
		ra.Antispoof, rb.Antispoof = nil, nil
		if !reflect.DeepEqual(ra, rb) {
			return fmt.Sprintf("rule %d:\n%#v\n%#v", i+1, ra, rb)
		}
	}
	return ""
}

func mustParse(t testing.TB, src string) *Ruleset {
	t.Helper()
	rs, err := Parse("test.rules", []byte(src))
	if err != nil {
		t.Fatalf("Parse(%q): %v", src, err)
	}
	return rs
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
