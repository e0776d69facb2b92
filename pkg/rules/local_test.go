package rules

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

// TestIsLocalDifferential: IsLocal over compiled ranges says what a scan
// of the `set local` prefixes with netip.Prefix.Contains says, on random
// sets (1 to 20 prefixes of every length, both families, clustered so
// that addresses fall near their edges) and random addresses, IPv4-mapped
// IPv6 ones included.
func TestIsLocalDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	addr := func() netip.Addr {
		switch r.IntN(3) {
		case 0:
			return netip.AddrFrom4([4]byte{198, 18, byte(r.IntN(4)), byte(r.IntN(256))})
		case 1:
			return netip.AddrFrom16(netip.AddrFrom4([4]byte{198, 18, byte(r.IntN(4)), byte(r.IntN(256))}).As16()) // ::ffff:198.18.x.y
		}
		b := netip.MustParseAddr("fd00:198:18::").As16()
		b[14], b[15] = byte(r.IntN(4)), byte(r.IntN(256))
		return netip.AddrFrom16(b)
	}
	locals := 0
	for set := range 300 {
		var items []string
		for range 1 + r.IntN(20) {
			a := addr()
			bits := 24 + r.IntN(9)
			switch {
			case a.Is6() && !a.Is4In6():
				bits = 112 + r.IntN(17)
			case a.Is4In6():
				bits = 120 + r.IntN(9)
			}
			items = append(items, netip.PrefixFrom(a, bits).Masked().String())
		}
		rs, err := Parse("local.rules", []byte("set local { "+strings.Join(items, ", ")+" }\n"))
		if err != nil {
			t.Fatalf("set %d: %v", set, err)
		}
		for range 200 {
			a := addr()
			want := false
			for _, p := range rs.Local {
				want = want || p.Contains(a)
			}
			if want {
				locals++
			}
			if got := rs.IsLocal(a); got != want {
				t.Fatalf("set %d %v: IsLocal(%v) = %v, Contains says %v", set, rs.Local, a, got, want)
			}
		}
	}
	if rs := mustParse(t, "set local fd00:198:18::1\n"); rs.IsLocal(netip.MustParseAddr("fd00:198:18::1%eth0")) {
		t.Error("an address with a zone is local: Contains says no")
	}
	if rs := mustParse(t, "pass all\n"); rs.IsLocal(netip.MustParseAddr("198.18.0.1")) {
		t.Error("local without `set local`")
	}
	if locals < 1000 || locals > 59000 {
		t.Errorf("%d of 60000 addresses local: the sets and addresses do not exercise both answers", locals)
	}
}

// TestDirection: from a local address out, to one in, between two local
// addresses out, otherwise (and without `set local`) unknown.
func TestDirection(t *testing.T) {
	rs := mustParse(t, "set local { 198.18.0.2, 198.18.0.3 }\n")
	a := netip.MustParseAddr
	for _, tt := range []struct {
		src, dst string
		want     Dir
	}{
		{"198.18.0.2", "198.18.1.1", DirOut},
		{"198.18.1.1", "198.18.0.3", DirIn},
		{"198.18.0.2", "198.18.0.3", DirOut},
		{"198.18.1.1", "198.18.1.2", DirUnknown},
	} {
		if got := rs.Direction(a(tt.src), a(tt.dst)); got != tt.want {
			t.Errorf("Direction(%s, %s) = %v, want %v", tt.src, tt.dst, got, tt.want)
		}
	}
	if got := mustParse(t, "pass all\n").Direction(a("198.18.0.2"), a("198.18.0.3")); got != DirUnknown {
		t.Errorf("without set local: %v", got)
	}
	var zero netip.Addr
	if got := rs.Direction(zero, zero); got != DirUnknown {
		t.Errorf("undecoded packet (zero addresses): %v", got)
	}
}
