package table

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// The host sets against a map, through growth, deletes that shift runs
// back, shrinking, and the zero key, on keys that crowd: a small universe
// of consecutive addresses around 0.
func TestHostSetsAgainstMap(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	key := func() uint32 { return uint32(r.IntN(3000)) - 100 } // wraps: 0 and 2^32-100.. included
	var s set32
	var s6 set128
	want := map[uint32]bool{}
	for round := range 300 {
		// A batch of adds or deletes into an unshared copy, as a mutation.
		k := r.IntN(200)
		if round%3 == 2 {
			c, c6 := s.clone(0), s6.clone(0)
			for range k {
				x := key()
				if got := c.remove(x); got != want[x] {
					t.Fatalf("remove(%d) = %v, want %v", x, got, want[x])
				}
				if got := c6.remove(key6{lo: uint64(x)}); got != want[x] {
					t.Fatalf("v6 remove(%d) = %v, want %v", x, got, want[x])
				}
				delete(want, x)
			}
			c.shrink()
			c6.shrink()
			s, s6 = c, c6
		} else {
			before := s.slots
			c, c6 := s.clone(k), s6.clone(k)
			for range k {
				x := key()
				if got := c.add(x); got == want[x] {
					t.Fatalf("add(%d) = %v with %d present: %v", x, got, x, want[x])
				}
				c6.add(key6{lo: uint64(x)})
				want[x] = true
			}
			// The old set is unchanged: the copy shares no slots.
			if len(before) > 0 && &before[0] == &c.slots[0] {
				t.Fatal("clone shares its slots")
			}
			s, s6 = c, c6
		}
		if s.n != len(want) || s6.n != len(want) {
			t.Fatalf("round %d: n = %d, %d, want %d", round, s.n, s6.n, len(want))
		}
		if len(s.slots) > 0 && s.n > len(s.slots)/2 {
			t.Fatalf("round %d: %d keys in %d slots", round, s.n, len(s.slots))
		}
		for x := ^uint32(0) - 199; x != 3100; x++ {
			if s.has(x) != want[x] || s6.has(key6{lo: uint64(x)}) != want[x] {
				t.Fatalf("round %d: has(%d) = %v, %v, want %v", round, x, s.has(x), s6.has(key6{lo: uint64(x)}), want[x])
			}
		}
	}
	var keys []uint32
	for x := range want {
		keys = append(keys, x)
	}
	slices.Sort(keys)
	var got []uint32
	if s.zero {
		got = append(got, 0)
	}
	for _, k := range s.slots {
		if k != 0 {
			got = append(got, k)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, keys) || s.n != len(keys) {
		t.Fatalf("sorted: %d keys, want %d", len(got), len(keys))
	}
}

// Consecutive addresses, the shape of a blocklist that lists a network
// host by host, must not make long probe runs (plain multiply-shift
// hashing does with linear probing).
func TestHostSetsSpreadRuns(t *testing.T) {
	var s set32
	var s6 set128
	const n = 1 << 16
	s.init(n)
	s6.init(n)
	for i := range uint32(n) {
		s.add(198<<24 | 18<<16 | i)
		s6.add(key6{hi: 0xfd00_0198_0018_0000, lo: uint64(i)})
	}
	probes := func(slots int, home func(i int) (uint, bool)) (mean float64, most uint) {
		m, sum, used := uint(slots-1), uint(0), 0
		for i := range slots {
			if h, ok := home(i); ok {
				d := (uint(i) - h) & m
				sum += d + 1
				most = max(most, d+1)
				used++
			}
		}
		return float64(sum) / float64(used), most
	}
	m4, w4 := probes(len(s.slots), func(i int) (uint, bool) { return s.home(s.slots[i]), s.slots[i] != 0 })
	m6, w6 := probes(len(s6.slots), func(i int) (uint, bool) { return s6.home(s6.slots[i]), s6.slots[i] != key6{} })
	// Random keys at load 1/2 average 1.5 probes a hit.
	if m4 > 2 || m6 > 2 || w4 > 100 || w6 > 100 {
		t.Errorf("probes per hit: v4 mean %.2f worst %d, v6 mean %.2f worst %d", m4, w4, m6, w6)
	}
}

// A table against a plain model, through every mutation, with hosts and
// prefixes of both families that nest: Contains and Test (the longest
// entry, a host beating the prefixes around it), Len and Prefixes. The
// menus of lengths keep both families in hash sets, or push them past
// maxLens (or, for IPv6, past /64) into bart and back on Replace.
func TestTableAgainstModel(t *testing.T) {
	for _, menu := range []struct {
		name   string
		v4, v6 []int
	}{
		{"sets", []int{32, 32, 32, 30, 24, 16}, []int{128, 128, 128, 64, 56, 48}},
		{"bart", []int{32, 32, 32, 31, 28, 24, 20, 16, 8, 0}, []int{128, 128, 128, 126, 64, 48}},
		{"mixed", []int{32, 32, 32, 32, 32, 32, 31, 28, 24, 20, 16, 0}, []int{128, 128, 64, 48, 32, 16, 8, 0}},
	} {
		t.Run(menu.name, func(t *testing.T) {
			inBart := testAgainstModel(t, menu.v4, menu.v6)
			// Which ways the families went: sets only, or both ways.
			if want := menu.name != "sets"; inBart[0] != want || inBart[1] != want {
				t.Errorf("some version kept prefixes in bart: v4 %v, v6 %v; want %v", inBart[0], inBart[1], want)
			}
		})
	}
}

// testAgainstModel reports whether a version had IPv4, IPv6 prefixes in
// bart.
func testAgainstModel(t *testing.T, lens4, lens6 []int) (inBart [2]bool) {
	r := rand.New(rand.NewPCG(9, 9))
	entry := func() netip.Prefix {
		first := byte(198)
		if r.IntN(8) == 0 {
			first = 0 // zero keys: 0.0.0.0, ::
		}
		if r.IntN(2) == 0 {
			a := netip.AddrFrom4([4]byte{first, 18 * (first / 198), byte(r.IntN(4)), byte(r.IntN(8))})
			return netip.PrefixFrom(a, lens4[r.IntN(len(lens4))]).Masked()
		}
		a := netip.AddrFrom16([16]byte{0xfd * (first / 198), 0, 0x01, 0x98, 0, 0x18, 8: byte(r.IntN(4)), 15: byte(r.IntN(8))})
		return netip.PrefixFrom(a, lens6[r.IntN(len(lens6))]).Masked()
	}
	model := map[netip.Prefix]bool{}
	tb := mustNew(t, Config{})
	for round := range 400 {
		ps := make([]netip.Prefix, r.IntN(12))
		for i := range ps {
			ps[i] = entry()
		}
		switch op := r.IntN(10); {
		case op < 5:
			n, err := tb.Add(ps)
			want := 0
			for _, p := range ps {
				if !model[p] {
					model[p] = true
					want++
				}
			}
			if n != want || err != nil {
				t.Fatalf("round %d: Add = %d, %v, want %d", round, n, err, want)
			}
		case op < 9:
			n, err := tb.Delete(ps)
			want := 0
			for _, p := range ps {
				if model[p] {
					delete(model, p)
					want++
				}
			}
			if n != want || err != nil {
				t.Fatalf("round %d: Delete = %d, %v, want %d", round, n, err, want)
			}
		default:
			if err := tb.Replace(ps); err != nil {
				t.Fatal(err)
			}
			clear(model)
			for _, p := range ps {
				model[p] = true
			}
		}
		v := tb.load()
		inBart[0] = inBart[0] || v.p4.nets != nil
		inBart[1] = inBart[1] || v.p6.nets != nil
		for p := range model {
			if !v.Get(p) {
				t.Fatalf("round %d: Get(%s) = false", round, p)
			}
		}
		if tb.Len() != len(model) {
			t.Fatalf("round %d: Len %d, want %d", round, tb.Len(), len(model))
		}
		var want []netip.Prefix
		for p := range model {
			want = append(want, p)
		}
		slices.SortFunc(want, func(a, b netip.Prefix) int {
			if c := a.Addr().Compare(b.Addr()); c != 0 {
				return c
			}
			return a.Bits() - b.Bits()
		})
		if got := tb.Prefixes(); !slices.Equal(got, want) {
			t.Fatalf("round %d: Prefixes\n got %v\nwant %v", round, got, want)
		}
		for _, a := range []netip.Addr{entry().Addr(), entry().Addr(), netip.AddrFrom4([4]byte{198, 18, 1, 3}), netip.IPv6Unspecified(), netip.IPv4Unspecified()} {
			var best netip.Prefix
			for p := range model {
				if p.Contains(a) && p.Bits() > best.Bits() {
					best = p
				}
			}
			got, ok := tb.Test(a)
			if ok != best.IsValid() || ok && got != best {
				t.Fatalf("round %d: Test(%s) = %v, %v, want %v", round, a, got, ok, best)
			}
			if tb.Contains(a) != ok {
				t.Fatalf("round %d: Contains(%s) = %v, Test %v", round, a, !ok, ok)
			}
		}
	}
	return inBart
}
