package links

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ifinfomsg builds an RTM_*LINK body as the kernel sends it.
func ifinfomsg(t testing.TB, family uint8, index int32, flags uint32, name string) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	b[0] = family
	binary.NativeEndian.PutUint32(b[4:8], uint32(index))
	binary.NativeEndian.PutUint32(b[8:12], flags)
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.IFLA_IFNAME, name)
	ae.Uint32(unix.IFLA_MTU, 1500)
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append(b, attrs...)
}

// ifaddrmsg builds an RTM_*ADDR body; local or address may be invalid to
// leave the attribute out.
func ifaddrmsg(t testing.TB, family uint8, bits uint8, index uint32, local, address netip.Addr) []byte {
	b := make([]byte, unix.SizeofIfAddrmsg)
	b[0], b[1] = family, bits
	binary.NativeEndian.PutUint32(b[4:8], index)
	ae := netlink.NewAttributeEncoder()
	if address.IsValid() {
		ae.Bytes(unix.IFA_ADDRESS, address.AsSlice())
	}
	if local.IsValid() {
		ae.Bytes(unix.IFA_LOCAL, local.AsSlice())
	}
	ae.Uint32(unix.IFA_FLAGS, unix.IFA_F_PERMANENT)
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append(b, attrs...)
}

func TestParseLink(t *testing.T) {
	l, ok, err := parseLink(ifinfomsg(t, unix.AF_UNSPEC, 3, unix.IFF_UP|unix.IFF_BROADCAST, "eth1"))
	if err != nil || !ok || l != (linkInfo{index: 3, name: "eth1", up: true}) {
		t.Errorf("parseLink = %+v, %v, %v", l, ok, err)
	}
	l, ok, err = parseLink(ifinfomsg(t, unix.AF_UNSPEC, 1, unix.IFF_LOOPBACK, "lo"))
	if err != nil || !ok || l != (linkInfo{index: 1, name: "lo", loopback: true}) {
		t.Errorf("parseLink(lo) = %+v, %v, %v", l, ok, err)
	}
	// The bridge's notice that a port left it: not a link removal.
	if _, ok, err := parseLink(ifinfomsg(t, unix.AF_BRIDGE, 3, 0, "eth1")); ok || err != nil {
		t.Errorf("an AF_BRIDGE link message was taken for the link: %v, %v", ok, err)
	}
	if _, _, err := parseLink(make([]byte, 8)); err == nil {
		t.Error("a short ifinfomsg decoded")
	}
}

func TestParseAddr(t *testing.T) {
	v4 := netip.MustParseAddr("198.18.1.1")
	peer := netip.MustParseAddr("198.18.1.2")
	v6 := netip.MustParseAddr("fd00:198:18::1")
	for _, tt := range []struct {
		name string
		b    []byte
		want addrInfo
	}{
		{"ipv4", ifaddrmsg(t, unix.AF_INET, 24, 2, v4, v4), addrInfo{2, addrKey{local: pfx("198.18.1.1/24")}}},
		{"ipv4 peer", ifaddrmsg(t, unix.AF_INET, 32, 2, v4, peer), addrInfo{2, addrKey{pfx("198.18.1.1/32"), peer}}},
		{"ipv6", ifaddrmsg(t, unix.AF_INET6, 64, 2, netip.Addr{}, v6), addrInfo{2, addrKey{local: pfx("fd00:198:18::1/64")}}},
	} {
		a, ok, err := parseAddr(tt.b)
		if err != nil || !ok || a != tt.want {
			t.Errorf("%s: parseAddr = %+v, %v, %v; want %+v", tt.name, a, ok, err, tt.want)
		}
	}
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"no address", ifaddrmsg(t, unix.AF_INET, 24, 2, netip.Addr{}, netip.Addr{})},
		{"v6 bytes in v4", ifaddrmsg(t, unix.AF_INET, 24, 2, netip.Addr{}, v6)},
		{"prefix too long", ifaddrmsg(t, unix.AF_INET, 33, 2, v4, v4)},
		{"short", make([]byte, 4)},
	} {
		if a, _, err := parseAddr(tt.b); err == nil {
			t.Errorf("%s: parseAddr = %+v, want an error", tt.name, a)
		}
	}
}

// FuzzParse: no input makes the decoders panic, and a decoded link or
// address is one the table can hold.
func FuzzParse(f *testing.F) {
	f.Add(ifinfomsg(f, unix.AF_UNSPEC, 3, unix.IFF_UP, "eth1"))
	f.Add(ifaddrmsg(f, unix.AF_INET6, 64, 2, netip.Addr{}, netip.MustParseAddr("fe80::1")))
	f.Add(ifaddrmsg(f, unix.AF_INET, 24, 2, netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.1")))
	f.Fuzz(func(t *testing.T, b []byte) {
		if l, ok, err := parseLink(b); ok && (err != nil || l.index <= 0) {
			t.Errorf("parseLink = %+v, %v, %v", l, ok, err)
		}
		if a, ok, err := parseAddr(b); ok && (err != nil || !a.key.local.IsValid()) {
			t.Errorf("parseAddr = %+v, %v, %v", a, ok, err)
		}
	})
}
