package table

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// The IPv4 filter through its life: made by a build, marked by Adds,
// remade when the family grows past its blocks and when deletes pass half
// the entries; Contains agrees with a plain model throughout, hosts and
// prefixes of several lengths (a /0 included, then deleted).
func TestFilterAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	model := map[netip.Prefix]bool{}
	entry := func(bits int) netip.Prefix {
		a := netip.AddrFrom4([4]byte{10 + byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
		return netip.PrefixFrom(a, bits).Masked()
	}
	batch := func(n int) []netip.Prefix {
		ps := make([]netip.Prefix, n)
		for i := range ps {
			ps[i] = entry([]int{32, 32, 32, 24, 20}[r.IntN(5)])
		}
		return ps
	}
	tb := mustNew(t, Config{})
	check := func(step string) {
		t.Helper()
		for range 3000 {
			a := entry(32).Addr()
			if r.IntN(2) == 0 { // near an entry
				for p := range model {
					a = p.Addr().Next()
					break
				}
			}
			want := false
			for _, bits := range []int{0, 20, 24, 32} {
				want = want || model[netip.PrefixFrom(a, bits).Masked()]
			}
			if got := tb.Contains(a); got != want {
				t.Fatalf("%s: Contains(%s) = %v, want %v (filter %d blocks, %d stale)", step, a, got, want, len(tb.load().f4.words)*64, tb.load().f4.stale)
			}
		}
	}
	add := func(step string, ps []netip.Prefix) {
		t.Helper()
		if _, err := tb.Add(ps); err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			model[p] = true
		}
		check(step)
	}
	del := func(step string, ps []netip.Prefix) {
		t.Helper()
		if _, err := tb.Delete(ps); err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			delete(model, p)
		}
		check(step)
	}
	add("small, no filter", batch(1000))
	if tb.load().f4.words != nil {
		t.Fatal("a filter for 1000 entries")
	}
	add("past minFilter: made", batch(5000))
	blocks := len(tb.load().f4.words)
	if blocks == 0 {
		t.Fatal("no filter for 6000 entries")
	}
	add("marked", batch(500))
	if len(tb.load().f4.words) != blocks {
		t.Fatal("filter remade for 500 more")
	}
	add("grown: remade finer", batch(60_000))
	if len(tb.load().f4.words) <= blocks {
		t.Fatalf("filter of %d words for 66k entries, as for 6k", len(tb.load().f4.words))
	}
	all := netip.MustParsePrefix("0.0.0.0/0")
	add("a /0", []netip.Prefix{all})
	del("the /0 deleted: stale", []netip.Prefix{all})
	var gone []netip.Prefix
	for p := range model {
		if len(gone) < len(model)*3/4 {
			gone = append(gone, p)
		}
	}
	del("most deleted: remade", gone)
	if f := tb.load().f4; f.stale != 0 {
		t.Errorf("filter not remade after deleting 3/4: %d stale", f.stale)
	}
	if err := tb.Replace(batch(8000)); err != nil {
		t.Fatal(err)
	}
	clear(model)
	for _, p := range tb.Prefixes() {
		model[p] = true
	}
	check("replaced")
}
