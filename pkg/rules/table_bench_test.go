package rules

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/table"
)

// BenchmarkMatchTable: what a rule that consults a 1M-prefix table costs
// per packet over the same ruleset with one address in its place, side by
// side (issue #13: at most 50 ns more, 0 allocations). The table is a
// deterministic mix of IPv4 /32 and /24 (IPv6 is pkg/table's benchmark);
// packets come from sources that miss it, from a hot set of 1024 that hit
// it, and from hits spread over the whole table.
//
//	go test -run NONE -bench MatchTable -benchmem ./pkg/rules
func BenchmarkMatchTable(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 1 << 20
	ps := make([]netip.Prefix, 0, n)
	for len(ps) < n {
		a := netip.AddrFrom4([4]byte{byte(rng.IntN(223) + 1), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
		bits := 32
		if rng.IntN(5) == 0 {
			bits = 24
		}
		ps = append(ps, netip.PrefixFrom(a, bits).Masked())
	}
	big, err := table.New(table.Config{Name: "big"}, ps)
	if err != nil {
		b.Fatal(err)
	}
	withTable, err := ParseWith("b.rules", []byte("table <big> persist\nblock in from <big>\npass\n"), ParseOptions{Tables: func(*TableDef) (Lookup, error) { return big, nil }})
	if err != nil {
		b.Fatal(err)
	}
	without := mustParse(b, "block in from 198.18.9.9\npass\n")
	srcs := func(pick func(i int) netip.Addr) []packet.Packet {
		out := make([]packet.Packet, 4096)
		base := pkt("tcp 198.18.0.1:1234 > 198.18.0.2:80 S")
		for i := range out {
			out[i] = *base
			out[i].Src = pick(i)
		}
		return out
	}
	miss := srcs(func(i int) netip.Addr { return netip.AddrFrom4([4]byte{240, byte(i >> 8), byte(i), 1}) })
	hot := srcs(func(i int) netip.Addr { return ps[(i%1024)*997].Addr() })
	spread := srcs(func(i int) netip.Addr { return ps[rng.IntN(n)].Addr() })
	for _, bc := range []struct {
		name string
		rs   *Ruleset
		pkts []packet.Packet
		want int
	}{
		{"no-table", without, miss, 2},
		{"table-1M/miss", withTable, miss, 2},
		{"table-1M/hot-hit", withTable, hot, 1},
		{"table-1M/spread-hit", withTable, spread, 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if r := bc.rs.Match(&bc.pkts[0], DirIn); r == nil || r.Index != bc.want {
				b.Fatalf("rule %v, want %d", r, bc.want)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				bc.rs.Match(&bc.pkts[i&4095], DirIn)
			}
		})
	}
}
