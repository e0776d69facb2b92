package rules

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/statewall/statewall/pkg/packet"
)

// TestNodeFindHint: a node's bucket hint finds the same interval as a
// plain scan, for spread and clustered starts, values below, between, on
// and beyond them, and the edges of the 32-bit range.
func TestNodeFindHint(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	gens := map[string]func() uint32{
		"spread":    func() uint32 { return r.Uint32() },
		"one /16":   func() uint32 { return 0xc6120000 | r.Uint32()&0xffff },
		"clustered": func() uint32 { return []uint32{0x0a000000, 0xc6120000, 0xfffffff0}[r.IntN(3)] + r.Uint32N(64) },
		"ports":     func() uint32 { return r.Uint32N(1 << 16) },
		"near max":  func() uint32 { return ^uint32(0) - r.Uint32N(300) },
	}
	for name, gen := range gens {
		for _, n := range []int{hintMin - 1, hintMin, 100, 1000, 5000} {
			starts := []uint32{0}
			for range n {
				starts = append(starts, gen())
			}
			slices.Sort(starts)
			starts = slices.Compact(starts)
			nd := node{}
			for i, s := range starts {
				nd.ivs = append(nd.ivs, interval{s, ref(i)})
			}
			nd.hint = buildHint(nd.ivs)
			if (nd.hint != nil) != (len(nd.ivs) >= hintMin) {
				t.Fatalf("%s/%d: hint %v for %d intervals", name, n, nd.hint != nil, len(nd.ivs))
			}
			probes := []uint32{0, 1, ^uint32(0), ^uint32(0) - 1}
			for _, s := range starts {
				probes = append(probes, s, s-1, s+1)
			}
			for range 2000 {
				probes = append(probes, gen(), r.Uint32())
			}
			for _, v := range probes {
				want := 0
				for i, s := range starts {
					if s <= v {
						want = i
					}
				}
				if got := nd.find(v); got != ref(want) {
					t.Fatalf("%s/%d: find(%#x) = %d, want %d", name, n, v, got, want)
				}
			}
		}
	}
}

// clusteredRuleset is like randRuleset over a wider universe: hundreds of
// host addresses in two /24s and far outliers, and ports spread over the
// whole range, so that the index builds nodes with many intervals (and
// bucket hints) whose values bunch up.
func clusteredRuleset(t testing.TB, r *rand.Rand, n int) (*Ruleset, func() *packet.Packet) {
	host4 := func() string {
		switch r.IntN(8) {
		case 0:
			return pick(r, []string{"10.0.0.1", "198.19.255.255", "255.255.255.255", "0.0.0.0", "198.18.0.0/16"})
		case 1:
			return fmt.Sprintf("198.18.%d.%d/%d", r.IntN(2), r.IntN(256), 24+r.IntN(9))
		}
		return fmt.Sprintf("198.18.%d.%d", r.IntN(2), r.IntN(256))
	}
	host6 := func() string {
		if r.IntN(8) == 0 {
			return pick(r, []string{"fd00:198:18::/64", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"})
		}
		return fmt.Sprintf("fd00:198:18::%x", r.IntN(512))
	}
	portTerm := func() string {
		switch r.IntN(6) {
		case 0:
			lo := r.IntN(65536)
			return fmt.Sprintf("%d-%d", lo, lo+r.IntN(65536-lo))
		case 1:
			return fmt.Sprintf("{ %d, %d }", r.IntN(65536), r.IntN(65536))
		case 2:
			return fmt.Sprintf("!%d", r.IntN(65536))
		}
		return fmt.Sprint(r.IntN(1 << 16))
	}
	var lines []string
	for len(lines) < n {
		var b strings.Builder
		b.WriteString(pick(r, []string{"pass", "block"}))
		b.WriteString(pick(r, []string{"", " in", " out"}))
		proto := pick(r, []string{"tcp", "udp", "icmp", ""})
		if proto != "" {
			b.WriteString(" proto " + proto)
		}
		host := host4
		if r.IntN(3) == 0 && proto != "icmp" {
			host = host6
		}
		for _, kw := range []string{"from", "to"} {
			addr, port := r.IntN(3) != 0, (proto == "tcp" || proto == "udp") && r.IntN(2) == 0
			if !addr && !port {
				continue
			}
			b.WriteString(" " + kw)
			if addr {
				if r.IntN(6) == 0 {
					b.WriteString(" { " + host() + ", !" + host() + " }")
				} else {
					b.WriteString(" " + host())
				}
			}
			if port {
				b.WriteString(" port " + portTerm())
			}
		}
		if proto == "tcp" && r.IntN(4) == 0 {
			b.WriteString(" flags " + pick(r, randFlags))
		}
		if proto == "icmp" && r.IntN(2) == 0 {
			fmt.Fprintf(&b, " icmp-type %d", r.IntN(20))
		}
		if _, err := Parse("x", []byte(b.String())); err == nil {
			lines = append(lines, b.String())
		}
	}
	rs := mustParse(t, strings.Join(lines, "\n"))
	pktGen := func() *packet.Packet {
		v6 := r.IntN(3) == 0
		addr := func() netip.Addr {
			if v6 {
				if r.IntN(10) == 0 {
					return netip.MustParseAddr("2001:db8::1")
				}
				return netip.MustParseAddr(fmt.Sprintf("fd00:198:18::%x", r.IntN(520)))
			}
			if r.IntN(10) == 0 {
				return netip.MustParseAddr(pick(r, []string{"10.0.0.1", "198.19.255.255", "255.255.255.255", "0.0.0.0"}))
			}
			return netip.AddrFrom4([4]byte{198, 18, byte(r.IntN(2)), byte(r.IntN(256))})
		}
		p := &packet.Packet{Kind: packet.KindOK, Proto: pick(r, []packet.Proto{1, 6, 17, 58, 47}), Src: addr(), Dst: addr(),
			SrcPort: uint16(r.IntN(1 << 16)), DstPort: uint16(r.IntN(1 << 16)), TCPFlags: uint8(r.IntN(256)),
			ICMPType: uint8(r.IntN(20)), ICMPCode: uint8(r.IntN(3)), L4Off: 34}
		if r.IntN(20) == 0 {
			p.L4Off = 0
		}
		return p
	}
	return rs, pktGen
}

// TestIndexDifferentialClustered: on rulesets whose nodes hold many
// intervals, the index agrees with the linear scan for Match and MatchNew,
// and with the reference semantics for Match; half of the packets are
// aimed at a rule.
func TestIndexDifferentialClustered(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	rounds := 6
	if testing.Short() {
		rounds = 2
	}
	hinted := 0
	for round := 0; round < rounds; round++ {
		for _, n := range []int{50, 500, 3000} {
			rs, gen := clusteredRuleset(t, r, n)
			for i := range rs.m.idx.nodes {
				if rs.m.idx.nodes[i].hint != nil {
					hinted++
				}
			}
			for i := 0; i < 4000; i++ {
				p := gen()
				if i%2 == 1 {
					p = packetFor(&rs.Rules[r.IntN(len(rs.Rules))], r)
					p.TCPFlags = uint8(r.IntN(256))
				}
				dir := Dir(r.IntN(3))
				for _, newConn := range []bool{false, true} {
					var k pkey
					k.set(p, dir, 1, newConn)
					lin, idx := rs.m.matchLinear(&k), rs.m.idx.match(rs.m.rules, &k)
					if lin != idx {
						t.Fatalf("%d rules, newConn %v, packet %+v dir %v: linear %d, index %d", n, newConn, p, dir, lin, idx)
					}
					if newConn {
						continue
					}
					want := -1
					if ref := refMatch(rs, p, dir); ref != nil {
						want = ref.Index - 1
					}
					if lin != want {
						t.Fatalf("%d rules, packet %+v dir %v: linear %d, reference %d", n, p, dir, lin, want)
					}
				}
			}
		}
	}
	if hinted == 0 {
		t.Fatal("no node got a bucket hint: the test does not reach the hinted search")
	}
}
