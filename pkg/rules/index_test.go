package rules

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/statewall/statewall/pkg/packet"
)

// Small universes, so that random rules and random packets meet often.
var (
	randAddrs4 = []string{"198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.1.7", "198.19.255.255", "198.18.0.0/30", "198.18.0.0/24", "198.18.0.0/15", "198.18.1.0/24", "0.0.0.0/0"}
	randAddrs6 = []string{"fd00:198:18::1", "fd00:198:18::2", "fd00:198:18::/126", "fd00:198:18::/64", "fd00:198:18:0:8000::/65", "::/0", "fd00:198:18::ffff:ffff"}
	randPorts  = []string{"0", "22", "53", "80", "443", "1023", "1024", "65535", "1024-65535", "0-1023", "80-443", "ssh", "https"}
	randICMP   = []string{"echo-request", "echo-reply", "dest-unreach", "time-exceeded", "0", "3", "8", "128", "135"}
	randFlags  = []string{"S/SA", "A/A", "S", "/FSR", "SA/SA", "R/R", "F/F", "any", "FSRPAUEW/FSRPAUEW"}
	protoWords = []string{"tcp", "udp", "icmp", "icmp6", "47", "sctp"}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func randAddrTerm(r *rand.Rand, depth int) string {
	switch n := r.IntN(10); {
	case n < 5 || depth > 1:
		if r.IntN(2) == 0 {
			return pick(r, randAddrs4)
		}
		return pick(r, randAddrs6)
	case n < 7:
		return "!" + randAddrTerm(r, depth+1)
	default:
		k := 1 + r.IntN(3)
		items := make([]string, k)
		for i := range items {
			items[i] = randAddrTerm(r, depth+1)
		}
		return "{ " + strings.Join(items, ", ") + " }"
	}
}

func randPortTerm(r *rand.Rand, depth int) string {
	switch n := r.IntN(10); {
	case n < 5 || depth > 1:
		return pick(r, randPorts)
	case n < 7:
		return "!" + randPortTerm(r, depth+1)
	default:
		k := 1 + r.IntN(3)
		items := make([]string, k)
		for i := range items {
			items[i] = randPortTerm(r, depth+1)
		}
		return "{ " + strings.Join(items, " ") + " }"
	}
}

// randRule returns the text of a random rule; it may not parse (family
// conflicts, double negations), and callers skip those.
func randRule(r *rand.Rand) string {
	var b strings.Builder
	b.WriteString(pick(r, []string{"pass", "block"}))
	b.WriteString(pick(r, []string{"", "", " in", " out"}))
	b.WriteString(pick(r, []string{"", "", "", " inet", " inet6"}))
	proto := ""
	if r.IntN(4) != 0 {
		proto = pick(r, protoWords)
		b.WriteString(" proto " + proto)
	}
	ports := proto == "tcp" || proto == "udp" || proto == "sctp"
	for _, kw := range []string{"from", "to"} {
		addr, port := r.IntN(2) == 0, ports && r.IntN(2) == 0
		if !addr && !port {
			continue
		}
		b.WriteString(" " + kw)
		if addr {
			b.WriteString(" " + randAddrTerm(r, 0))
		}
		if port {
			b.WriteString(" port " + randPortTerm(r, 0))
		}
	}
	if proto == "tcp" && r.IntN(3) == 0 {
		b.WriteString(" flags " + pick(r, randFlags))
	}
	if (proto == "icmp" || proto == "icmp6") && r.IntN(2) == 0 {
		b.WriteString(" icmp-type " + pick(r, randICMP))
		if r.IntN(3) == 0 {
			fmt.Fprintf(&b, " code %d", r.IntN(3))
		}
	}
	return b.String()
}

func randRuleset(t testing.TB, r *rand.Rand, n int) *Ruleset {
	var lines []string
	for len(lines) < n {
		l := randRule(r)
		if _, err := Parse("x", []byte(l)); err == nil {
			lines = append(lines, l)
		}
	}
	return mustParse(t, strings.Join(lines, "\n"))
}

func randPacket(r *rand.Rand) *packet.Packet {
	hosts4 := []string{"198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.1.7", "198.18.1.8", "198.19.255.255", "198.20.0.1", "10.0.0.1"}
	hosts6 := []string{"fd00:198:18::1", "fd00:198:18::2", "fd00:198:18::3", "fd00:198:18::4", "fd00:198:18:0:8000::1", "fd00:198:18::ffff:ffff", "fd00:198:19::1", "2001:db8::1"}
	hosts := hosts4
	if r.IntN(2) == 0 {
		hosts = hosts6
	}
	p := &packet.Packet{
		Kind:     packet.KindOK,
		Proto:    pick(r, []packet.Proto{1, 6, 17, 58, 47, 132, 50}),
		Src:      netip.MustParseAddr(pick(r, hosts)),
		Dst:      netip.MustParseAddr(pick(r, hosts)),
		SrcPort:  pick(r, []uint16{0, 22, 53, 80, 443, 1023, 1024, 40000, 65535}),
		DstPort:  pick(r, []uint16{0, 22, 53, 80, 443, 1023, 1024, 40000, 65535}),
		TCPFlags: uint8(r.IntN(256)),
		ICMPType: pick(r, []uint8{0, 1, 3, 8, 11, 128, 129, 135}),
		ICMPCode: uint8(r.IntN(3)),
		L4Off:    34,
	}
	p.IPVersion = 4
	if p.Src.Is6() {
		p.IPVersion = 6
	}
	switch r.IntN(20) {
	case 0:
		p.Frag = packet.Fragment{IsFragment: true, Offset: 1480}
		p.L4Off = 0
	case 1:
		p.L4Off = 0
	case 2:
		p.Frag = packet.Fragment{IsFragment: true, More: true}
	}
	return p
}

// TestIndexDifferential: for random rulesets of several sizes and random
// packets, the index, the linear scan and the reference semantics return
// the same rule.
func TestIndexDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	sizes := []int{1, 5, 20, 100, 400}
	rounds := 40
	if testing.Short() {
		rounds = 5
	}
	for round := 0; round < rounds; round++ {
		for _, n := range sizes {
			rs := randRuleset(t, r, n)
			if rs.m.idx == nil {
				t.Fatalf("no index built for %d rules", n)
			}
			for i := 0; i < 300; i++ {
				p := randPacket(r)
				dir := Dir(r.IntN(3))
				k := makeKey(p, dir)
				lin, idx := rs.m.matchLinear(&k), rs.m.idx.match(rs.m.rules, &k)
				ref := refMatch(rs, p, dir)
				refIdx := -1
				if ref != nil {
					refIdx = ref.Index - 1
				}
				if lin != idx || lin != refIdx {
					t.Fatalf("packet %+v dir %v: linear %d, index %d, reference %d (0-based)\n%s", p, dir, lin, idx, refIdx, rs)
				}
			}
		}
	}
}

// genRules makes n rules that look like a big host or gateway policy:
// per-host, per-service passes and blocks over a /16 and a /64, with a few
// broad rules in between and at the end.
func genRules(n int) string {
	r := rand.New(rand.NewPCG(7, uint64(n)))
	var b strings.Builder
	b.WriteString("set default block\n")
	for i := 0; i < n; i++ {
		switch {
		case i%1000 == 999:
			b.WriteString("block in proto tcp from 198.18.200.0/24\n")
		case i%4 == 3:
			fmt.Fprintf(&b, "pass in inet6 proto udp from fd00:198:18::%x to fd00:198:18::%x port %d\n", r.IntN(4096), r.IntN(4096), 1024+r.IntN(60000))
		case i%4 == 2:
			fmt.Fprintf(&b, "block out proto tcp to 198.18.%d.0/24 port { %d, %d }\n", r.IntN(256), 1+r.IntN(1023), 1+r.IntN(1023))
		default:
			fmt.Fprintf(&b, "pass in proto tcp from 198.19.%d.%d to 198.18.%d.%d port %d flags S/SA\n", r.IntN(256), r.IntN(256), r.IntN(256), r.IntN(256), 1+r.IntN(65534))
		}
	}
	b.WriteString("pass proto icmp icmp-type echo-request\n")
	b.WriteString("pass out\n")
	return b.String()
}

func TestIndexDifferentialLarge(t *testing.T) {
	rs := mustParse(t, genRules(5000))
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20000; i++ {
		var p *packet.Packet
		if i%2 == 0 {
			p = randPacket(r)
		} else { // a packet aimed at a random rule
			p = packetFor(&rs.Rules[r.IntN(len(rs.Rules))], r)
		}
		dir := Dir(r.IntN(3))
		k := makeKey(p, dir)
		if lin, idx := rs.m.matchLinear(&k), rs.m.idx.match(rs.m.rules, &k); lin != idx {
			t.Fatalf("packet %+v dir %v: linear %d, index %d", p, dir, lin, idx)
		}
	}
}

// packetFor makes a packet that a rule's positive conditions would admit
// (negations and flags aside), so tests and benchmarks hit deep rules.
func packetFor(rule *Rule, r *rand.Rand) *packet.Packet {
	p := &packet.Packet{Kind: packet.KindOK, Proto: rule.Proto, L4Off: 34, TCPFlags: rule.Flags, ICMPType: rule.ICMPType, ICMPCode: rule.ICMPCode}
	if p.Proto == 0 {
		p.Proto = packet.ProtoTCP
	}
	addr := func(s AddrSpec, fam uint8) netip.Addr {
		for _, it := range s.Items {
			if !it.Neg {
				return it.Prefix.Addr()
			}
		}
		if fam == 6 {
			return netip.MustParseAddr("fd00:198:18::99")
		}
		return netip.MustParseAddr("198.18.99.99")
	}
	fam := rule.Family
	if fam == 0 {
		fam = 4
	}
	p.Src, p.Dst = addr(rule.From, fam), addr(rule.To, fam)
	if p.Src.Is4() != p.Dst.Is4() {
		p.Dst = p.Src
	}
	p.IPVersion = 4
	if p.Src.Is6() {
		p.IPVersion = 6
	}
	port := func(s PortSpec) uint16 {
		for _, it := range s.Items {
			if !it.Neg {
				return it.Lo
			}
		}
		return uint16(1024 + r.IntN(1000))
	}
	p.SrcPort, p.DstPort = port(rule.FromPorts), port(rule.ToPorts)
	return p
}
