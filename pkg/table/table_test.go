package table

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestContains(t *testing.T) {
	tb := mustNew(t, Config{Name: "t"}, "198.18.0.1", "198.18.1.0/24", "fd00:198:18::/64", "fd00:198:18:1::5")
	for _, tc := range []struct {
		a    string
		want bool
	}{
		{"198.18.0.1", true},
		{"198.18.0.2", false},
		{"198.18.1.0", true},
		{"198.18.1.255", true},
		{"198.18.2.0", false},
		{"fd00:198:18::1", true},
		{"fd00:198:18:0:ffff:ffff:ffff:ffff", true},
		{"fd00:198:18:1::5", true},
		{"fd00:198:18:1::6", false},
		// net/netip semantics: a 4-in-6 address is IPv6.
		{"::ffff:198.18.0.1", false},
		// A zone does not matter.
		{"fd00:198:18::1%eth0", true},
	} {
		if got := tb.Contains(addr(tc.a)); got != tc.want {
			t.Errorf("Contains(%s) = %v, want %v", tc.a, got, tc.want)
		}
	}
	if tb.Contains(netip.Addr{}) {
		t.Error("the zero Addr matched")
	}
}

func TestZeroValue(t *testing.T) {
	var tb Table
	if tb.Contains(addr("198.18.0.1")) || tb.Len() != 0 || len(tb.Prefixes()) != 0 || tb.Limit() != DefaultLimit {
		t.Fatal("zero Table is not empty with the default limit")
	}
	if n, err := tb.Add(pfx(t, "198.18.0.1")); n != 1 || err != nil {
		t.Fatalf("Add = %d, %v", n, err)
	}
	if !tb.Contains(addr("198.18.0.1")) {
		t.Error("added entry not found")
	}
	if n, err := tb.Flush(); n != 1 || err != nil || tb.Contains(addr("198.18.0.1")) {
		t.Errorf("Flush = %d, %v", n, err)
	}
}

func TestMasked(t *testing.T) {
	tb := mustNew(t, Config{})
	raw := []netip.Prefix{netip.PrefixFrom(addr("198.18.0.5"), 24), netip.PrefixFrom(addr("fd00:198:18::77"), 64)}
	if n, err := tb.Add(raw); n != 2 || err != nil {
		t.Fatalf("Add = %d, %v", n, err)
	}
	want := pfx(t, "198.18.0.0/24", "fd00:198:18::/64")
	if got := tb.Prefixes(); !slices.Equal(got, want) {
		t.Errorf("Prefixes = %v, want %v", got, want)
	}
	// The masked form is already there.
	if n, err := tb.Add(pfx(t, "198.18.0.0/24")); n != 0 || err != nil {
		t.Errorf("re-Add = %d, %v; want 0", n, err)
	}
	// Delete masks too.
	if n, err := tb.Delete([]netip.Prefix{netip.PrefixFrom(addr("198.18.0.9"), 24)}); n != 1 || err != nil {
		t.Errorf("Delete = %d, %v; want 1", n, err)
	}
}

func TestAddDeleteCounts(t *testing.T) {
	tb := mustNew(t, Config{Name: "t"}, "198.18.0.1")
	n, err := tb.Add(pfx(t, "198.18.0.1", "198.18.0.2", "198.18.0.2", "fd00:198:18::2"))
	if n != 2 || err != nil || tb.Len() != 3 {
		t.Fatalf("Add = %d, %v (Len %d); want 2 new, 3 in all", n, err, tb.Len())
	}
	n, err = tb.Delete(pfx(t, "198.18.0.1", "198.18.0.1", "198.18.0.9", "198.18.0.0/24"))
	if n != 1 || err != nil || tb.Len() != 2 {
		t.Fatalf("Delete = %d, %v (Len %d); want 1 gone, 2 left", n, err, tb.Len())
	}
	// Delete is exact: an entry inside a deleted prefix stays.
	if !tb.Contains(addr("198.18.0.2")) || tb.Contains(addr("198.18.0.1")) {
		t.Error("Delete removed the wrong entries")
	}
}

// Delete has two ways to make the next version: copy-on-write steps for
// a few entries, a clone for many. Both must give the same table.
func TestDeleteBothWays(t *testing.T) {
	all := genMix(4096, 7)
	for _, k := range []int{1, 10, 63, 64, 65, 1000, 4096} {
		tb, err := New(Config{}, all)
		if err != nil {
			t.Fatal(err)
		}
		before := tb.Len()
		n, err := tb.Delete(all[:k])
		if err != nil {
			t.Fatal(err)
		}
		if tb.Len() != before-n {
			t.Errorf("k=%d: Len %d after deleting %d of %d", k, tb.Len(), n, before)
		}
		for _, p := range all[:k] {
			if tb.load().Get(p) {
				t.Fatalf("k=%d: %s still there", k, p)
			}
		}
		for _, p := range all[k:] {
			if !tb.load().Get(p) && !slices.Contains(all[:k], p) {
				t.Fatalf("k=%d: %s gone", k, p)
			}
		}
	}
}

func TestConstRefuses(t *testing.T) {
	tb := mustNew(t, Config{Name: "bad", Const: true}, "198.18.0.1")
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, ErrConst) || err.Error() != "table <bad>: const tables cannot be changed" {
			t.Errorf("%s: err = %v, want ErrConst", op, err)
		}
	}
	_, err := tb.Add(pfx(t, "198.18.0.2"))
	check("Add", err)
	_, err = tb.Delete(pfx(t, "198.18.0.1"))
	check("Delete", err)
	check("Replace", tb.Replace(nil))
	_, err = tb.Flush()
	check("Flush", err)
	if got := tb.Prefixes(); !slices.Equal(got, pfx(t, "198.18.0.1")) {
		t.Errorf("const table changed: %v", got)
	}
}

func TestLimitAllOrNothing(t *testing.T) {
	tb := mustNew(t, Config{Name: "small", Limit: 3}, "198.18.0.1", "198.18.0.2")
	_, err := tb.Add(pfx(t, "198.18.0.3", "198.18.0.4"))
	if !errors.Is(err, ErrLimit) || err.Error() != "table <small>: adding 2 entries would pass the limit of 3 (it has 2)" {
		t.Fatalf("err = %v, want ErrLimit", err)
	}
	if tb.Len() != 2 || tb.Contains(addr("198.18.0.3")) {
		t.Fatal("a refused Add changed the table")
	}
	// Entries already there do not count against the limit.
	if n, err := tb.Add(pfx(t, "198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.3")); n != 1 || err != nil {
		t.Fatalf("Add to exactly the limit = %d, %v", n, err)
	}
	if err := tb.Replace(pfx(t, "198.18.0.5", "198.18.0.6", "198.18.0.7", "198.18.0.8")); !errors.Is(err, ErrLimit) {
		t.Fatalf("Replace past the limit: err = %v", err)
	}
	if tb.Len() != 3 || tb.Contains(addr("198.18.0.5")) {
		t.Fatal("a refused Replace changed the table")
	}
	if _, err := New(Config{Limit: 1}, pfx(t, "198.18.0.1", "198.18.0.2")); !errors.Is(err, ErrLimit) {
		t.Errorf("New past the limit: err = %v", err)
	}
	if _, err := New(Config{Limit: -1}, nil); err == nil {
		t.Error("New with a negative limit succeeded")
	}
}

func TestInvalidRefused(t *testing.T) {
	tb := mustNew(t, Config{Name: "t"}, "198.18.0.1")
	bad := []netip.Prefix{netip.MustParsePrefix("198.18.0.2/32"), {}}
	if _, err := tb.Add(bad); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "entry 2") {
		t.Errorf("Add: err = %v", err)
	}
	if _, err := tb.Delete(bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("Delete: err = %v", err)
	}
	if err := tb.Replace(bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("Replace: err = %v", err)
	}
	if !slices.Equal(tb.Prefixes(), pfx(t, "198.18.0.1")) {
		t.Error("a refused mutation changed the table")
	}
}

func TestFlushReplace(t *testing.T) {
	tb := mustNew(t, Config{}, "198.18.0.1", "198.18.0.2", "fd00:198:18::1")
	if err := tb.Replace(pfx(t, "198.19.0.0/16", "198.19.0.0/16")); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tb.Prefixes(), pfx(t, "198.19.0.0/16")) || tb.Contains(addr("198.18.0.1")) || !tb.Contains(addr("198.19.3.4")) {
		t.Fatalf("after Replace: %v", tb.Prefixes())
	}
	if n, err := tb.Flush(); n != 1 || err != nil || tb.Len() != 0 || tb.Contains(addr("198.19.3.4")) {
		t.Fatalf("Flush = %d, %v; Len %d", n, err, tb.Len())
	}
	if n, err := tb.Flush(); n != 0 || err != nil {
		t.Fatalf("second Flush = %d, %v", n, err)
	}
}

func TestTestLongestMatch(t *testing.T) {
	tb := mustNew(t, Config{}, "198.18.0.0/15", "198.18.0.0/16", "198.18.7.0/24", "198.18.7.7", "fd00:198:18::/64", "fd00:198:18::/48")
	for _, tc := range []struct{ a, want string }{
		{"198.18.7.7", "198.18.7.7/32"},
		{"198.18.7.8", "198.18.7.0/24"},
		{"198.18.8.1", "198.18.0.0/16"},
		{"198.19.0.1", "198.18.0.0/15"},
		{"fd00:198:18::1", "fd00:198:18::/64"},
		{"fd00:198:18:1::1", "fd00:198:18::/48"},
		{"fd00:198:18::1%eth0", "fd00:198:18::/64"},
		{"198.20.0.1", ""},
		{"::ffff:198.18.7.7", ""},
	} {
		p, ok := tb.Test(addr(tc.a))
		if got := map[bool]string{true: p.String(), false: ""}[ok]; got != tc.want {
			t.Errorf("Test(%s) = %q, want %q", tc.a, got, tc.want)
		}
	}
	if _, ok := tb.Test(netip.Addr{}); ok {
		t.Error("Test(zero Addr) matched")
	}
	if s := tb.Stats(); s.Evaluations != 0 {
		t.Errorf("Test counted in Stats: %+v", s)
	}
}

func TestPrefixesSorted(t *testing.T) {
	tb := mustNew(t, Config{}, "fd00:198:18::1", "198.19.0.0/16", "198.18.0.0/15", "fd00:198:18::/64", "198.18.0.9", "198.18.0.0/24", "198.18.0.10")
	want := pfx(t, "198.18.0.0/15", "198.18.0.0/24", "198.18.0.9", "198.18.0.10", "198.19.0.0/16", "fd00:198:18::/64", "fd00:198:18::1")
	if got := tb.Prefixes(); !slices.Equal(got, want) {
		t.Errorf("Prefixes\n got %v\nwant %v", got, want)
	}
}

func TestStats(t *testing.T) {
	tb := mustNew(t, Config{}, "198.18.0.0/24")
	for i := range 10 {
		tb.Contains(netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}))
		tb.ContainsShard(netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}), i-3)
	}
	if s := tb.Stats(); s != (Stats{Evaluations: 20, Hits: 10}) {
		t.Errorf("Stats = %+v, want 20 evaluations, 10 hits", s)
	}
	// Counters belong to the table, not to a version.
	if err := tb.Replace(nil); err != nil {
		t.Fatal(err)
	}
	tb.Contains(addr("198.18.0.1"))
	if s := tb.Stats(); s != (Stats{Evaluations: 21, Hits: 10}) {
		t.Errorf("Stats after Replace = %+v", s)
	}
	tb.ZeroStats()
	if s := tb.Stats(); s != (Stats{}) {
		t.Errorf("Stats after ZeroStats = %+v", s)
	}
}

func TestConfigAccessors(t *testing.T) {
	tb := mustNew(t, Config{Name: "bad", Const: true, Persist: true, Limit: 10})
	if tb.Name() != "bad" || !tb.Const() || !tb.Persist() || tb.Limit() != 10 {
		t.Errorf("accessors: %q %v %v %d", tb.Name(), tb.Const(), tb.Persist(), tb.Limit())
	}
}

func TestNoAllocs(t *testing.T) {
	tb, err := New(Config{}, genMix(10000, 3))
	if err != nil {
		t.Fatal(err)
	}
	v4, v6 := addr("198.18.0.1"), addr("fd00:198:18::1")
	for name, f := range map[string]func(){
		"Contains/v4":      func() { tb.Contains(v4) },
		"Contains/v6":      func() { tb.Contains(v6) },
		"ContainsShard/v4": func() { tb.ContainsShard(v4, 1) },
		"Test/v6":          func() { tb.Test(v6) },
		"Stats":            func() { tb.Stats() },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocs, want 0", name, n)
		}
	}
}
