package rules

import (
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/statewall/statewall/pkg/packet"
)

// pkt builds a decoded packet from a tcpdump-like line, without the decoder:
//
//	tcp 198.18.0.1:1234 > 198.18.0.2:80 S
//	udp [fd00:198:18::1]:5353 > [fd00:198:18::2]:53
//	icmp 198.18.0.1 > 198.18.0.2 echo-request      (or a number: 3/1 is type 3 code 1)
//	gre 198.18.0.1 > 198.18.0.2                    (or a protocol number)
//
// Trailing words: TCP flag letters (FSRPAUEW, "." for none), "frag" for a
// non-first fragment (no transport header), "nol4" for a packet whose
// transport header did not decode.
func pkt(s string) *packet.Packet {
	f := strings.Fields(s)
	if len(f) < 4 || f[2] != ">" {
		panic("pkt: want PROTO SRC > DST ...: " + s)
	}
	p := &packet.Packet{Kind: packet.KindOK}
	proto, ok := lookupName(protoNames, f[0])
	if !ok {
		n, err := strconv.ParseUint(f[0], 10, 8)
		if err != nil {
			panic("pkt: bad proto " + f[0])
		}
		proto = uint8(n)
	}
	p.Proto = proto
	addr := func(s string) (netip.Addr, uint16) {
		if hasPorts(proto) {
			ap := netip.MustParseAddrPort(s)
			return ap.Addr(), ap.Port()
		}
		return netip.MustParseAddr(s), 0
	}
	p.Src, p.SrcPort = addr(f[1])
	p.Dst, p.DstPort = addr(f[3])
	p.IPVersion = 4
	p.L4Off = 14 + 20
	if p.Src.Is6() {
		p.IPVersion = 6
		p.L4Off = 14 + 40
	}
	for _, w := range f[4:] {
		switch {
		case w == "frag":
			p.Frag = packet.Fragment{IsFragment: true, Offset: 1480}
			p.L4Off, p.SrcPort, p.DstPort, p.TCPFlags = 0, 0, 0, 0
		case w == "nol4":
			p.L4Off = 0
		case proto == packet.ProtoTCP:
			if w == "." {
				continue
			}
			fl, bad := parseFlagLetters(w)
			if bad >= 0 {
				panic("pkt: bad flags " + w)
			}
			p.TCPFlags = fl
		case proto == packet.ProtoICMP || proto == packet.ProtoICMPv6:
			tab := icmp4Names
			if proto == packet.ProtoICMPv6 {
				tab = icmp6Names
			}
			if n, ok := lookupName(tab, w); ok {
				p.ICMPType = n
				continue
			}
			t, c, _ := strings.Cut(w, "/")
			tn, err1 := strconv.ParseUint(t, 10, 8)
			cn, err2 := strconv.ParseUint(c, 10, 8)
			if err1 != nil || err2 != nil {
				panic("pkt: bad icmp type " + w)
			}
			p.ICMPType, p.ICMPCode = uint8(tn), uint8(cn)
		default:
			panic("pkt: unexpected " + w)
		}
	}
	return p
}

// refMatch is the language's meaning written as directly as possible over
// the AST. The compiled matchers must agree with it.
func refMatch(rs *Ruleset, p *packet.Packet, dir Dir) *Rule {
	for i := range rs.Rules {
		if refRule(&rs.Rules[i], p, dir) {
			return &rs.Rules[i]
		}
	}
	return nil
}

func refRule(r *Rule, p *packet.Packet, dir Dir) bool {
	if r.Dir != DirUnknown && r.Dir != dir {
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
	} else if !r.From.Contains(p.Src) || !r.To.Contains(p.Dst) {
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
		ra.Line, rb.Line = 0, 0
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
