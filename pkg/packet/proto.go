package packet

import "strconv"

// Proto is an IP protocol number: IPv4's protocol field, or the last next
// header of an IPv6 packet's chain (the transport protocol).
type Proto uint8

// IP protocol numbers the firewall treats specially.
const (
	ProtoICMP   Proto = 1
	ProtoTCP    Proto = 6
	ProtoUDP    Proto = 17
	ProtoGRE    Proto = 47
	ProtoICMPv6 Proto = 58
	// ProtoIPv6NoNext is IPv6's "no next header": nothing follows.
	ProtoIPv6NoNext Proto = 59
	ProtoSCTP       Proto = 132
	ProtoUDPLite    Proto = 136
)

// protoNames are the names statewall knows for protocols: the first for a
// number is its canonical name (String; pf's spelling, as the rules
// language writes it), the others are accepted aliases (nft's and
// /etc/protocols' spellings).
var protoNames = []struct {
	name string
	num  Proto
}{
	{"icmp", ProtoICMP},
	{"igmp", 2},
	{"tcp", ProtoTCP},
	{"udp", ProtoUDP},
	{"gre", ProtoGRE},
	{"esp", 50},
	{"ah", 51},
	{"icmp6", ProtoICMPv6},
	{"ipv6-icmp", ProtoICMPv6},
	{"icmpv6", ProtoICMPv6},
	{"ipv6-nonxt", ProtoIPv6NoNext},
	{"eigrp", 88},
	{"ospf", 89},
	{"pim", 103},
	{"vrrp", 112},
	{"sctp", ProtoSCTP},
	{"udplite", ProtoUDPLite},
}

// canonical[p] is p's canonical name, "" for a protocol without one.
var canonical = func() (c [256]string) {
	for _, n := range protoNames {
		if c[n.num] == "" {
			c[n.num] = n.name
		}
	}
	return c
}()

// String returns the protocol's name ("tcp", "icmp6", "gre"), or its
// number in decimal for a protocol without a name.
func (p Proto) String() string {
	if s := canonical[p]; s != "" {
		return s
	}
	return strconv.Itoa(int(p))
}

// HasPorts reports whether the protocol's header starts with 16-bit
// source and destination ports (TCP, UDP, UDP-Lite, SCTP).
func (p Proto) HasPorts() bool {
	return p == ProtoTCP || p == ProtoUDP || p == ProtoUDPLite || p == ProtoSCTP
}

// ParseProto parses a protocol: a name String gives or an alias
// ("ipv6-icmp", "icmpv6"), or a number from 0 to 255.
func ParseProto(s string) (Proto, bool) {
	for _, n := range protoNames {
		if n.name == s {
			return n.num, true
		}
	}
	if n, err := strconv.ParseUint(s, 10, 8); err == nil {
		return Proto(n), true
	}
	return 0, false
}
