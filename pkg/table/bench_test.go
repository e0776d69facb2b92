package table

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gaissmai/bart"
)

// The benchmarks need more addresses than the benchmarking ranges
// (198.18.0.0/15, fd00:198:18::/64) hold, and send nothing anywhere: they
// draw from the whole IPv4 space and from 2000::/3, in memory only.

// genMix returns n prefixes, a mix like a large blocklist: 40% IPv4 /32,
// 10% IPv4 /24, 25% IPv6 /64, 25% IPv6 /128, from a seeded generator (the
// same n and seed give the same prefixes). A few may repeat or nest.
func genMix(n int, seed uint64) []netip.Prefix {
	r := rand.New(rand.NewPCG(seed, 1))
	ps := make([]netip.Prefix, 0, n)
	for range n {
		switch k := r.IntN(100); {
		case k < 50:
			bits := 32
			if k >= 40 {
				bits = 24
			}
			u := r.Uint32()
			a := netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
			ps = append(ps, netip.PrefixFrom(a, bits).Masked())
		default:
			bits := 64
			if k >= 75 {
				bits = 128
			}
			var b [16]byte
			hi, lo := r.Uint64(), r.Uint64()
			for i := range 8 {
				b[i], b[8+i] = byte(hi>>(56-8*i)), byte(lo>>(56-8*i))
			}
			b[0] = 0x20 | b[0]&0x1f // 2000::/3
			ps = append(ps, netip.PrefixFrom(netip.AddrFrom16(b), bits).Masked())
		}
	}
	return ps
}

var sizes = []struct {
	name string
	n    int
}{{"10", 10}, {"100k", 100_000}, {"1M", 1_000_000}}

var tables sync.Map // size -> *Table, built once per process

func benchTable(b *testing.B, n int) *Table {
	if v, ok := tables.Load(n); ok {
		return v.(*Table)
	}
	tb, err := New(Config{}, genMix(n, 1))
	if err != nil {
		b.Fatal(err)
	}
	tables.Store(n, tb)
	return tb
}

// probes returns 4096 addresses of family v6 that the table contains
// (hit) or not (miss), inside entries drawn from all over it, so that a
// benchmark walks many paths rather than one cached one.
func probes(b *testing.B, tb *Table, v6, hit bool) []netip.Addr {
	r := rand.New(rand.NewPCG(2, 2))
	ps := tb.Prefixes()
	var out []netip.Addr
	for tries := 0; len(out) < 4096; tries++ {
		if tries > 1<<24 {
			b.Fatal("cannot find probes")
		}
		var a netip.Addr
		if hit {
			p := ps[r.IntN(len(ps))]
			if p.Addr().Is6() != v6 {
				continue
			}
			// A random address inside p.
			raw := p.Addr().As16()
			for i := p.Bits() + 96*boolInt(!v6); i < 128; i++ {
				if r.IntN(2) == 1 {
					raw[i/8] |= 0x80 >> (i % 8)
				}
			}
			a = netip.AddrFrom16(raw)
			if !v6 {
				a = a.Unmap()
			}
		} else {
			q := genMix(1, r.Uint64())[0]
			if q.Addr().Is6() != v6 {
				continue
			}
			a = q.Addr()
		}
		if tb.load().Contains(a) == hit {
			out = append(out, a)
		}
	}
	return out
}

// BenchmarkContains is the packet path: one lookup, counted in Stats.
func BenchmarkContains(b *testing.B) {
	for _, sz := range sizes {
		tb := benchTable(b, sz.n)
		for _, fam := range []string{"v4", "v6"} {
			for _, kind := range []string{"hit", "miss"} {
				as := probes(b, tb, fam == "v6", kind == "hit")
				b.Run(fmt.Sprintf("size=%s/%s/%s", sz.name, fam, kind), func(b *testing.B) {
					b.ReportAllocs()
					i := 0
					for b.Loop() {
						tb.Contains(as[i&4095])
						i++
					}
				})
			}
		}
	}
}

// BenchmarkContainsHot looks up a working set of hot addresses (a few
// busy sources) in a 1M-entry table: after the first lookups their paths
// stay in the caches, unlike BenchmarkContains' 4096 addresses spread
// over the whole table.
func BenchmarkContainsHot(b *testing.B) {
	tb := benchTable(b, 1_000_000)
	for _, fam := range []string{"v4", "v6"} {
		as := probes(b, tb, fam == "v6", true)
		for _, hot := range []int{64, 1024} {
			b.Run(fmt.Sprintf("size=1M/%s/hit/hot=%d", fam, hot), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					tb.Contains(as[i&(hot-1)])
					i++
				}
			})
		}
	}
}

// BenchmarkCount chooses how lookups are counted, all goroutines looking
// up at once (RunParallel, one per CPU): no counting, one shared stripe,
// a stripe by the address's last byte (Contains) and a stripe per
// goroutine (ContainsShard).
func BenchmarkCount(b *testing.B) {
	tb := benchTable(b, 100_000)
	as := probes(b, tb, false, true)
	var next atomic.Int64
	for _, tc := range []struct {
		name string
		f    func(a netip.Addr, shard int) bool
	}{
		{"none", func(a netip.Addr, _ int) bool { return tb.load().Contains(a) }},
		{"shared", func(a netip.Addr, _ int) bool { return tb.ContainsShard(a, 0) }},
		{"by-address", func(a netip.Addr, _ int) bool { return tb.Contains(a) }},
		{"by-shard", func(a netip.Addr, shard int) bool { return tb.ContainsShard(a, shard) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				shard := int(next.Add(1))
				i := shard * 997
				for pb.Next() {
					tc.f(as[i&4095], shard)
					i++
				}
			})
		})
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func tableText(ps []netip.Prefix) []byte {
	var buf bytes.Buffer
	for _, p := range ps {
		if p.IsSingleIP() {
			buf.WriteString(p.Addr().String())
		} else {
			buf.WriteString(p.String())
		}
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

// BenchmarkLoad parses a 1M-line table file (from memory) and builds the
// table, as a rules load does. MiB-kept is the heap the table keeps after
// a GC; MiB-peak adds the parsed slice, which lives until the table is
// built.
func BenchmarkLoad(b *testing.B) {
	text := tableText(genMix(1_000_000, 1))
	b.SetBytes(int64(len(text)))
	var kept, peak float64
	for b.Loop() {
		before := heapInUse()
		ps, err := Parse("bench", bytes.NewReader(text))
		if err != nil {
			b.Fatal(err)
		}
		tb, err := New(Config{}, ps)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		withSlice := heapInUse()
		runtime.KeepAlive(ps)
		ps = nil
		kept = float64(heapInUse()-before) / (1 << 20)
		peak = float64(withSlice-before) / (1 << 20)
		runtime.KeepAlive(tb)
		b.StartTimer()
	}
	b.ReportMetric(kept, "MiB-kept")
	b.ReportMetric(peak, "MiB-peak")
}

// BenchmarkReplace swaps a 1M-entry table for another: building the new
// version is the cost.
func BenchmarkReplace(b *testing.B) {
	tb, err := New(Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	sets := [2][]netip.Prefix{genMix(1_000_000, 1), genMix(1_000_000, 2)}
	i := 0
	for b.Loop() {
		if err := tb.Replace(sets[i&1]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkAddWhileReading adds 10k new entries to a 1M-entry table while
// a goroutine looks up without pause; ns/op is the time until Add has
// published them (they are visible to every lookup that starts after).
func BenchmarkAddWhileReading(b *testing.B) {
	tb, err := New(Config{}, genMix(1_000_000, 1))
	if err != nil {
		b.Fatal(err)
	}
	batch := genMix(10_000, 99)
	as := probes(b, tb, false, false)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			tb.Contains(as[i&4095])
		}
	})
	var worst time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := tb.Add(batch); err != nil {
			b.Fatal(err)
		}
		worst = max(worst, time.Since(start))
		b.StopTimer()
		if _, err := tb.Delete(batch); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	stop.Store(true)
	wg.Wait()
	b.ReportMetric(float64(worst)/1e6, "ms-worst")
}

// BenchmarkDelete removes 10k entries of a 1M-entry table (and puts them
// back, untimed).
func BenchmarkDelete(b *testing.B) {
	ps := genMix(1_000_000, 1)
	tb, err := New(Config{}, ps)
	if err != nil {
		b.Fatal(err)
	}
	gone := ps[:10_000]
	for b.Loop() {
		if _, err := tb.Delete(gone); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := tb.Add(gone); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkDeleteWays compares the two ways Delete can make the next
// version, to place deleteCloneRatio: copy-on-write steps, one per entry,
// and a full clone then deletes in place.
func BenchmarkDeleteWays(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		base := new(bart.Lite)
		ps := genMix(n, 1)
		for _, p := range ps {
			base.Insert(p)
		}
		for _, k := range []int{n / 1000, n / 256, n / 64, n / 16} {
			gone := ps[:k]
			b.Run(fmt.Sprintf("size=%d/k=%d/persist", n, k), func(b *testing.B) {
				for b.Loop() {
					next := base
					for _, p := range gone {
						next = next.DeletePersist(p)
					}
				}
			})
			b.Run(fmt.Sprintf("size=%d/k=%d/clone", n, k), func(b *testing.B) {
				for b.Loop() {
					next := base.Clone()
					for _, p := range gone {
						next.Delete(p)
					}
				}
			})
		}
	}
}
