package rules

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/statewall/statewall/pkg/packet"
)

var rulesFile = flag.String("rules", "../../rules/webserver.rules", "rules file for BenchmarkMatchFile")

// benchPackets are named packets a web server sees.
var benchPackets = []struct {
	name string
	pkt  string
	dir  Dir
}{
	{"https-syn-in", "tcp 198.18.0.9:40000 > 198.18.0.2:443 S", DirIn},
	{"dns-out", "udp 198.18.0.2:40000 > 198.18.0.53:53", DirOut},
	{"dns-reply-in", "udp 198.18.0.53:53 > 198.18.0.2:40000", DirIn},
	{"ping-in", "icmp 198.18.0.9 > 198.18.0.2 type=8", DirIn},
	{"smtp-in-nomatch", "tcp 198.18.0.9:40000 > 198.18.0.2:25 S", DirIn},
	{"v6-https-in", "tcp [fd00:198:18::9]:40000 > [fd00:198:18::2]:443 S", DirIn},
}

func BenchmarkMatch(b *testing.B) {
	rs, err := ParseFile("../../rules/webserver.rules")
	if err != nil {
		b.Fatal(err)
	}
	for _, bp := range benchPackets {
		p := pkt(bp.pkt)
		b.Run(bp.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rs.Match(p, bp.dir)
			}
		})
	}
}

// BenchmarkMatchFile matches packets built from the file's own rules (one
// aimed at each rule) plus the named packets, round robin:
//
//	go test -run NONE -bench MatchFile ./pkg/rules/ -args -rules ../../rules/router.rules
func BenchmarkMatchFile(b *testing.B) {
	rs, err := ParseFile(*rulesFile)
	if err != nil {
		b.Fatal(err)
	}
	pkts, dirs := packetsFor(rs)
	b.Logf("%s: %d rules, %d packets", *rulesFile, len(rs.Rules), len(pkts))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		rs.Match(pkts[i], dirs[i])
		if i++; i == len(pkts) {
			i = 0
		}
	}
}

func packetsFor(rs *Ruleset) ([]*packet.Packet, []Dir) {
	r := rand.New(rand.NewPCG(5, 6))
	var pkts []*packet.Packet
	var dirs []Dir
	for i := range rs.Rules {
		pkts = append(pkts, packetFor(&rs.Rules[i], r))
		dirs = append(dirs, rs.Rules[i].Dir)
	}
	for _, bp := range benchPackets {
		pkts = append(pkts, pkt(bp.pkt))
		dirs = append(dirs, bp.dir)
	}
	return pkts, dirs
}

// BenchmarkMatchScale compares rulesets of 10 to 10,000 generated rules,
// with the index and with the linear scan. Packets: one aimed at each of
// 1,000 random rules, and random ones (mostly no match, the worst case for
// a scan).
func BenchmarkMatchScale(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		rs := mustParse(b, genRules(n))
		r := rand.New(rand.NewPCG(9, 9))
		var keys []pkey
		for i := 0; i < 1000; i++ {
			rule := &rs.Rules[r.IntN(len(rs.Rules))]
			keys = append(keys, makeKey(packetFor(rule, r), rule.Dir))
			keys = append(keys, makeKey(randPacket(r), Dir(r.IntN(3))))
		}
		for _, linear := range []bool{false, true} {
			name := fmt.Sprintf("rules=%d/index", n)
			if linear {
				name = fmt.Sprintf("rules=%d/linear", n)
				if n > 1000 {
					continue
				}
			}
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if linear {
						rs.m.matchLinear(&keys[i])
					} else {
						rs.m.idx.match(rs.m.rules, &keys[i])
					}
					if i++; i == len(keys) {
						i = 0
					}
				}
			})
		}
	}
}

func BenchmarkParse(b *testing.B) {
	src := genRules(10000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("gen.rules", []byte(src)); err != nil {
			b.Fatal(err)
		}
	}
}
