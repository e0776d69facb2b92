package conntrack

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/statewall/statewall/pkg/packet"
)

// benchTable is a table of n established connections, client
// 10.x.y.z:40000 to 198.18.0.2:80 (TCP, after a handshake) or :53 (UDP,
// query and answer), with the bytes per connection it took to build.
type benchTable struct {
	t           *Table
	n           int
	bytesPerCon float64
}

var benchTables = map[string]*benchTable{}

func client(j int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)})
}

// getBenchTable builds (once per process) the table for proto and n. The
// memory is the live heap after a GC, before and after building, and the
// slabs mapped outside it (MappedBytes): the shards' index and slab and
// nothing else.
func getBenchTable(b *testing.B, proto string, n int) *benchTable {
	name := fmt.Sprintf("%s/%d", proto, n)
	if bt := benchTables[name]; bt != nil {
		return bt
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	t := New(Config{Seed: 7, Limit: 2 * n})
	var steps []*packet.Packet
	if proto == "tcp" {
		steps = []*packet.Packet{pkt(cSyn), pkt(sSynAck), pkt(cAck)}
	} else {
		steps = []*packet.Packet{pkt(dnsQuery), pkt(dnsAnswer), pkt(dnsQuery)}
	}
	for j := range n {
		for i, p := range steps {
			if i == 1 {
				p.Dst = client(j)
			} else {
				p.Src = client(j)
			}
			r := t.Track(p, 0)
			if i == 0 && !t.Commit(p, &r, 0) {
				b.Fatalf("commit %d refused", j)
			}
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if t.Len() != n {
		b.Fatalf("built %d connections, want %d", t.Len(), n)
	}
	mem := int64(after.HeapAlloc) - int64(before.HeapAlloc) + t.MappedBytes()
	bt := &benchTable{t: t, n: n, bytesPerCon: float64(mem) / float64(n)}
	benchTables[name] = bt
	return bt
}

// BenchmarkTrackEstablished tracks packets of established connections
// picked in a scattered order (i*2654435761 mod n visits all of them), so
// the larger tables measure cache misses, not a hot entry.
//
// Measured on the development VM (2 vCPU Xeon, shared with other builds, so
// the times are rough), Go 1.26, 0 allocs/op everywhere:
//
//	           tcp ns/op  udp ns/op  B/conn   (batch: BenchmarkTrackEstablishedBatch)
//	conns=1k     ~105       ~75       290
//	conns=100k   ~360      ~320       144      tcp ~195, udp ~135-160
//	conns=1M     ~590      ~480       137      tcp ~215-285, udp ~160-200
//
// At 1M the time is memory latency (the index slot and the entry are two
// dependent cache and TLB misses: BenchmarkMemoryLatency). The 137 bytes
// per connection are the 128-byte entry, 4-byte index slots at a load of
// about 1/2 (8 bytes) and, then, the unused tail of each shard's last
// 128-entry chunk; a slab is now one array (slab.go), whose unused tail is
// under half of it below 64 KiB of entries and under a page above.
func BenchmarkTrackEstablished(b *testing.B) {
	for _, proto := range []string{"tcp", "udp"} {
		for _, n := range []int{1000, 100000, 1000000} {
			b.Run(fmt.Sprintf("%s/conns=%s", proto, count(n)), func(b *testing.B) {
				bt := getBenchTable(b, proto, n)
				var p *packet.Packet
				if proto == "tcp" {
					p = pkt(cData)
				} else {
					p = pkt(dnsQuery)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					p.Src = client(int(uint64(i) * 2654435761 % uint64(n)))
					if r := bt.t.Track(p, 1); r.Label != LabelEstablished {
						b.Fatalf("%v (%s)", r.Label, r.ReasonString())
					}
				}
				b.ReportMetric(bt.bytesPerCon, "B/conn")
			})
		}
	}
}

// BenchmarkTrackEstablishedBatch is BenchmarkTrackEstablished in batches
// of 16 packets, each batch announced with Prefetch before it is tracked:
// how replay and the NFQUEUE reader use the table. One op is one packet.
func BenchmarkTrackEstablishedBatch(b *testing.B) {
	for _, proto := range []string{"tcp", "udp"} {
		for _, n := range []int{1000, 100000, 1000000} {
			b.Run(fmt.Sprintf("%s/conns=%s", proto, count(n)), func(b *testing.B) {
				bt := getBenchTable(b, proto, n)
				tmpl := pkt(dnsQuery)
				if proto == "tcp" {
					tmpl = pkt(cData)
				}
				ps := make([]packet.Packet, prefetchBatch)
				b.ReportAllocs()
				b.ResetTimer()
				j := 0
				for i := 0; b.Loop(); i++ {
					k := i % len(ps)
					if k == 0 {
						for m := range ps {
							ps[m] = *tmpl
							ps[m].Src = client(int(uint64(j) * 2654435761 % uint64(n)))
							j++
						}
						bt.t.Prefetch(ps)
					}
					if r := bt.t.Track(&ps[k], 1); r.Label != LabelEstablished {
						b.Fatalf("%v (%s)", r.Label, r.ReasonString())
					}
				}
			})
		}
	}
}

func count(n int) string {
	switch {
	case n >= 1000000:
		return fmt.Sprintf("%dM", n/1000000)
	case n >= 1000:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// BenchmarkTrackEstablishedParallel is the 100k case from every P.
func BenchmarkTrackEstablishedParallel(b *testing.B) {
	bt := getBenchTable(b, "tcp", 100000)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		p := pkt(cData)
		i := 0
		for pb.Next() {
			p.Src = client(int(uint64(i) * 2654435761 % uint64(bt.n)))
			bt.t.Track(p, 1)
			i++
		}
	})
}

// BenchmarkNewConnection is a UDP flow's first packet: Track, then Commit,
// in a table kept at its limit so that every Commit early-drops an entry.
func BenchmarkNewConnection(b *testing.B) {
	t := New(Config{Seed: 7, Limit: 65536})
	p := pkt(dnsQuery)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.Src = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		p.SrcPort = uint16(i >> 24)
		r := t.Track(p, 0)
		if !t.Commit(p, &r, 0) {
			b.Fatal("refused")
		}
	}
}

// BenchmarkMemoryLatency is the floor under the large-table numbers: one
// op is one load from a random cache line of a table of the given size
// whose address depends on the load before (chain=1: a lookup's index slot
// then its entry, one packet at a time), or four such chains interleaved
// (chain=4: what Prefetch lets a batch do). On the development VM a
// dependent load beyond the caches costs ~160-190 ns, so a packet whose
// lookup misses twice cannot take less than ~350 ns without batching.
func BenchmarkMemoryLatency(b *testing.B) {
	for _, mb := range []int{1, 16, 64, 256} {
		n := mb << 20 / 64 // cache lines
		next := make([]uint64, n*8)
		// One random cycle through every line (Sattolo's algorithm).
		perm := make([]uint32, n)
		for i := range perm {
			perm[i] = uint32(i)
		}
		x := uint64(88172645463325252)
		for i := n - 1; i > 0; i-- {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			j := int(x % uint64(i))
			perm[i], perm[j] = perm[j], perm[i]
		}
		for i := range perm {
			next[int(perm[i])*8] = uint64(perm[(i+1)%n])
		}
		for _, chains := range []int{1, 4} {
			b.Run(fmt.Sprintf("MB=%d/chain=%d", mb, chains), func(b *testing.B) {
				var p [4]uint64
				for k := range p {
					p[k] = uint64(perm[k*n/4])
				}
				for i := 0; b.Loop(); i++ {
					if chains == 1 {
						p[0] = next[p[0]*8]
						continue
					}
					// Four loads an op would be four times the work:
					// advance one chain per op, round robin, so the other
					// three are in flight.
					k := i & 3
					p[k] = next[p[k]*8]
				}
				if p[0] == ^uint64(0) {
					b.Fatal("unreachable")
				}
			})
		}
	}
}
