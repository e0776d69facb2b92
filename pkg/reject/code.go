package reject

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind is what a blocking rule answers, in pf's words (pf.conf(5),
// "block return..."). The zero value answers nothing: pf's "block drop".
type Kind uint8

// Kinds.
const (
	// Drop answers nothing.
	Drop Kind = iota
	// Return is pf's "return": a TCP RST for TCP, an ICMP or ICMPv6
	// destination unreachable for everything else.
	Return
	// ReturnRST is pf's "return-rst": a TCP RST for TCP, nothing for
	// other protocols (pf allows it only on TCP rules).
	ReturnRST
	// ReturnICMP is pf's "return-icmp" and "return-icmp6": an ICMP or
	// ICMPv6 destination unreachable for every protocol, TCP included.
	ReturnICMP
)

func (k Kind) String() string {
	switch k {
	case Drop:
		return "drop"
	case Return:
		return "return"
	case ReturnRST:
		return "return-rst"
	case ReturnICMP:
		return "return-icmp"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Code is a destination unreachable code together with its IP version:
// ICMP type 3 for IPv4, ICMPv6 type 1 for IPv6. The named codes are the
// ones statewall supports, named as pf names them (pfctl_parser.c,
// icmp_code and icmp6_code). The zero value is "no code given", which
// AppendICMP answers with port-unr of the packet's version, pf's default.
//
// A Code packs the version in the high byte and the code in the low byte,
// so that it is a comparable value that fits a rule's compiled form.
type Code uint16

// IPv4 codes (ICMP type 3, RFC 792 and RFC 1812).
const (
	NetUnr       Code = 4 << 8    // net-unr (code 0): network unreachable
	HostUnr      Code = 4<<8 | 1  // host-unr: host unreachable
	ProtoUnr     Code = 4<<8 | 2  // proto-unr: protocol unreachable
	PortUnr      Code = 4<<8 | 3  // port-unr: port unreachable, pf's default
	NetProhib    Code = 4<<8 | 9  // net-prohib: network administratively prohibited
	HostProhib   Code = 4<<8 | 10 // host-prohib: host administratively prohibited
	FilterProhib Code = 4<<8 | 13 // filter-prohib: communication administratively prohibited
)

// IPv6 codes (ICMPv6 type 1, RFC 4443).
const (
	NoRouteUnr6 Code = 6 << 8   // noroute-unr (code 0): no route to destination
	AdminUnr6   Code = 6<<8 | 1 // admin-unr: administratively prohibited
	AddrUnr6    Code = 6<<8 | 3 // addr-unr: address unreachable
	PortUnr6    Code = 6<<8 | 4 // port-unr: port unreachable, pf's default
)

var codeNames = []struct {
	code Code
	name string
}{
	{NetUnr, "net-unr"},
	{HostUnr, "host-unr"},
	{ProtoUnr, "proto-unr"},
	{PortUnr, "port-unr"},
	{NetProhib, "net-prohib"},
	{HostProhib, "host-prohib"},
	{FilterProhib, "filter-prohib"},
	{NoRouteUnr6, "noroute-unr"},
	{AdminUnr6, "admin-unr"},
	{AddrUnr6, "addr-unr"},
	{PortUnr6, "port-unr"},
}

// Version is the code's IP version, 4 or 6; 0 for the zero Code.
func (c Code) Version() int { return int(c >> 8) }

// Value is the code as it goes into the ICMP or ICMPv6 header.
func (c Code) Value() uint8 { return uint8(c) }

// String is pf's name of the code ("port-unr"), or "code(N/V)" for a code
// without one (V the IP version), "default" for the zero Code.
func (c Code) String() string {
	if c == 0 {
		return "default"
	}
	for _, n := range codeNames {
		if n.code == c {
			return n.name
		}
	}
	return "code(" + strconv.Itoa(int(c.Value())) + "/" + strconv.Itoa(c.Version()) + ")"
}

// valid reports whether c is one of the named codes.
func (c Code) valid() bool {
	for _, n := range codeNames {
		if n.code == c {
			return true
		}
	}
	return false
}

// ParseCode returns the code pf calls name for IP version 4 (return-icmp)
// or 6 (return-icmp6). The names are pf's: net-unr, host-unr, proto-unr,
// port-unr, net-prohib, host-prohib, filter-prohib for IPv4; noroute-unr,
// admin-unr, addr-unr, port-unr for IPv6. pf also accepts other names and
// plain numbers; statewall supports only these.
func ParseCode(version int, name string) (Code, error) {
	if version != 4 && version != 6 {
		return 0, fmt.Errorf("reject: IP version %d (want 4 or 6)", version)
	}
	var known []string
	for _, n := range codeNames {
		if n.code.Version() != version {
			continue
		}
		if n.name == name {
			return n.code, nil
		}
		known = append(known, n.name)
	}
	what := "return-icmp"
	if version == 6 {
		what = "return-icmp6"
	}
	return 0, fmt.Errorf("reject: unknown %s code %q (want one of %s)", what, name, strings.Join(known, ", "))
}
