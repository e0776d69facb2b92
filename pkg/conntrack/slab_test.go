package conntrack

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// udpFrom is a DNS query from 10.a.b.c, one flow per j.
func udpFrom(j int) string {
	a := netip.AddrFrom4([4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)})
	return "udp " + a.String() + ":5353 > 198.18.0.2:53 len=30"
}

// fill commits a query from each of n clients, from first on.
func (tb *tbl) fill(first, n int) {
	tb.t.Helper()
	for j := first; j < first+n; j++ {
		p := pkt(udpFrom(j))
		r := tb.Track(p, tb.now())
		if r.Label != LabelNew || !tb.Commit(p, &r, tb.now()) {
			tb.t.Fatalf("client %d: %v (%s)", j, r.Label, r.ReasonString())
		}
	}
}

// TestSlabAligned: every entry is two whole cache lines, whether the slab
// is a heap array (every size a multiple of 8 KiB, page aligned) or a
// mapping.
func TestSlabAligned(t *testing.T) {
	tb := newTbl(t, Config{Shards: 1, Limit: 1 << 20})
	for n := 1; n <= 40000; n += 1 + n/2 {
		tb.fill(tb.Len(), n-tb.Len())
		s := &tb.shards[0]
		if uintptr(s.base)%64 != 0 || uintptr(s.base)%4096 != 0 {
			t.Errorf("%d entries: slab at %#x, not page aligned", n, s.base)
		}
	}
}

// TestSlabMapped: a shard past 64 KiB of entries moves into a mapping
// (Linux), keeps every entry through the move, and compacts in place:
// the survivors keep their state, the pages above them go back.
func TestSlabMapped(t *testing.T) {
	if !slabMaps {
		t.Skip("slabs are mapped on Linux only, not under -race")
	}
	tb := newTbl(t, Config{Shards: 1, Limit: 1 << 20})
	const old, young = 40000, 5000
	tb.fill(0, old)
	s := &tb.shards[0]
	if s.mapping == nil {
		t.Fatalf("%d entries in one shard and no mapping", old)
	}
	if got, want := tb.MappedBytes(), int64(roundUp(uintptr(old)*entrySize, pageSize)); got != want {
		t.Errorf("MappedBytes %d, want %d", got, want)
	}
	base := s.base
	tb.advance(20 * time.Second)
	tb.fill(old, young)
	// The answers make the young flows replied: a state to keep.
	for j := old; j < old+young; j++ {
		tb.want(answerTo(j), LabelEstablished, true)
	}
	tb.advance(11 * time.Second) // the old queries expire (30 s)
	if got := tb.Sweep(tb.now()); got != old {
		t.Fatalf("Sweep reaped %d, want %d", got, old)
	}
	if s.base != base || s.used != young || s.free != 0 {
		t.Errorf("after compaction: base %p (was %p), used %d, free %d; want %d used, none free", s.base, base, s.used, s.free, young)
	}
	if got, want := tb.MappedBytes(), int64(roundUp(uintptr(young)*entrySize, pageSize)); got != want {
		t.Errorf("MappedBytes after compaction %d, want %d", got, want)
	}
	for j := old; j < old+young; j++ {
		e, ok := tb.entry(udpFrom(j))
		if !ok || !e.SeenReply || e.Packets != [2]uint64{1, 1} {
			t.Fatalf("client %d after compaction: %+v %v", j, e, ok)
		}
	}
	// The slab grows again over the pages it gave back.
	tb.fill(old+young, mapMinEntries)
	if tb.Len() != young+mapMinEntries {
		t.Errorf("Len %d", tb.Len())
	}
	checkBalance(t, tb.Table)
}

func answerTo(j int) string {
	a := netip.AddrFrom4([4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)})
	return "udp 198.18.0.2:53 > " + a.String() + ":5353 len=60"
}

// TestSlabUnmapped: a table's mappings go once the table is garbage.
func TestSlabUnmapped(t *testing.T) {
	if !slabMaps {
		t.Skip("slabs are mapped on Linux only, not under -race")
	}
	// Let the mappings of earlier tests' tables go first.
	settle := func() int64 {
		stable := 0
		for range 100 {
			n := vmMapped.Load()
			runtime.GC()
			time.Sleep(5 * time.Millisecond)
			if stable++; vmMapped.Load() != n {
				stable = 0
			}
			if stable == 3 {
				break
			}
		}
		return vmMapped.Load()
	}
	before := settle()
	func() {
		tb := newTbl(t, Config{Shards: 2, Limit: 1 << 20})
		tb.fill(0, 4*mapMinEntries)
		if vmMapped.Load() != before+2 {
			t.Fatalf("%d mappings, want %d", vmMapped.Load(), before+2)
		}
	}()
	if settle() == before {
		return
	}
	t.Errorf("%d mappings left, want %d", vmMapped.Load(), before)
}

// TestSlabChurnMatchesModel is TestChurnMatchesModel on a shard large
// enough to be mapped, shrinking and growing again: moves in place must
// keep every surviving entry where its slot says.
func TestSlabChurnMatchesModel(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	tb := newTbl(t, Config{Shards: 1, Limit: 1 << 20, Timeouts: Timeouts{Generic: 10 * time.Second}})
	rng := rand.New(rand.NewPCG(5, 6))
	model := map[netip.Addr]int64{}
	mk := func(a netip.Addr) string { return "proto=50 " + a.String() + " > 198.18.0.2" }
	mapped := false
	for step := range 600000 {
		// Waves: 40k addresses for a while, then 1k, then 40k...
		span := 40000
		if step/100000%2 == 1 {
			span = 1000
		}
		tb.advance(time.Duration(rng.IntN(int(200 * time.Microsecond))))
		j := rng.IntN(span)
		a := netip.AddrFrom4([4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)})
		exp, ok := model[a]
		alive := ok && tb.now() < exp
		p := pkt(mk(a))
		r := tb.Track(p, tb.now())
		if alive != (r.Reason == ReasonUnreplied) {
			t.Fatalf("step %d: %v alive %v, got %v (%s)", step, a, alive, r.Label, r.ReasonString())
		}
		if !alive {
			tb.Commit(p, &r, tb.now())
		}
		model[a] = tb.now() + int64(10*time.Second)
		mapped = mapped || tb.shards[0].mapping != nil
	}
	if slabMaps && !mapped {
		t.Error("the slab was never mapped")
	}
	live := 0
	for _, exp := range model {
		if tb.now() < exp {
			live++
		}
	}
	tb.Sweep(tb.now())
	if tb.Len() != live {
		t.Errorf("Len %d, model %d", tb.Len(), live)
	}
	checkBalance(t, tb.Table)
}
