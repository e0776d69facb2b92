package table

import (
	"net/netip"
	"runtime"
	"testing"

	"github.com/gaissmai/bart"
)

// BenchmarkBartVariants is why the table is a bart.Lite: lookups (hits on
// random addresses of a 1M-entry table) in bart's three table types, and
// the heap each keeps for the same entries.
func BenchmarkBartVariants(b *testing.B) {
	ps := genMix(1_000_000, 1)
	tb := benchTable(b, 1_000_000)
	type variant struct {
		name     string
		contains func(netip.Addr) bool
		mib      float64
	}
	var vs []variant
	h := heapInUse()
	l := new(bart.Lite)
	for _, p := range ps {
		l.Insert(p)
	}
	vs = append(vs, variant{"lite", l.Contains, float64(heapInUse()-h) / (1 << 20)})
	h = heapInUse()
	tt := new(bart.Table[struct{}])
	for _, p := range ps {
		tt.Insert(p, struct{}{})
	}
	vs = append(vs, variant{"table", tt.Contains, float64(heapInUse()-h) / (1 << 20)})
	h = heapInUse()
	f := new(bart.Fast[struct{}])
	for _, p := range ps {
		f.Insert(p, struct{}{})
	}
	vs = append(vs, variant{"fast", f.Contains, float64(heapInUse()-h) / (1 << 20)})
	runtime.KeepAlive(ps) // else freed while f is built, and f's MiB wrong
	for _, fam := range []string{"v4", "v6"} {
		as := probes(b, tb, fam == "v6", true)
		for _, v := range vs {
			b.Run(fam+"/"+v.name, func(b *testing.B) {
				i := 0
				for b.Loop() {
					v.contains(as[i&4095])
					i++
				}
				b.ReportMetric(v.mib, "MiB")
			})
		}
	}
}
