package pflog

import (
	"net/netip"
	"strconv"

	"github.com/statewall/statewall/pkg/packet"
)

// Format returns one line for rec in the shape of tcpdump -n -e on a pflog
// capture, without the timestamp:
//
//	rule 3/0(match): block in on eth1: 198.18.1.2.40000 > 198.18.2.2.80: tcp S
//
// The part after the interface is statewall's own short form, not
// tcpdump's: "tcp S" (flags as pkg/packet spells them, with " len N" for a
// payload), "udp len N", "icmp echo-request id 7 seq 1", "icmp6 dest-unreach
// code 4", the protocol name for anything else, "frag off N" for a
// non-first fragment and the decoder's Kind for a packet it could not
// read.
func Format(rec *Record) string {
	var b [160]byte
	return string(AppendFormat(b[:0], rec))
}

// AppendFormat appends Format's line to dst. It does not allocate when dst
// has room.
func AppendFormat(dst []byte, rec *Record) []byte {
	dst = append(dst, "rule "...)
	if rec.RuleNr != NoRule {
		dst = strconv.AppendUint(dst, uint64(rec.RuleNr), 10)
	}
	dst = append(dst, '/')
	dst = strconv.AppendUint(dst, uint64(rec.Reason), 10)
	dst = append(dst, '(')
	dst = append(dst, rec.Reason.String()...)
	dst = append(dst, "): "...)
	dst = append(dst, rec.Action.String()...)
	dst = append(dst, ' ')
	dst = append(dst, rec.Dir.String()...)
	dst = append(dst, " on "...)
	for _, c := range rec.Ifname {
		if c == 0 {
			break
		}
		dst = append(dst, c)
	}
	dst = append(dst, ": "...)
	return appendPacket(dst, rec)
}

func appendPacket(dst []byte, rec *Record) []byte {
	var p packet.Packet
	p.Decode(rec.Packet, packet.LinkIP)
	if p.IPVersion == 0 {
		dst = append(dst, "bad packet ("...)
		dst = append(dst, p.Kind.String()...)
		dst = append(dst, "), "...)
		dst = strconv.AppendInt(dst, int64(rec.length()), 10)
		return append(dst, " bytes"...)
	}
	ports := p.Kind == packet.KindOK && p.L4Off != 0 && p.Proto.HasPorts()
	dst = appendAddr(dst, p.Src, p.SrcPort, ports)
	dst = append(dst, " > "...)
	dst = appendAddr(dst, p.Dst, p.DstPort, ports)
	dst = append(dst, ": "...)
	dst = append(dst, p.Proto.String()...)
	switch {
	case p.Kind != packet.KindOK:
		dst = append(dst, " ("...)
		dst = append(dst, p.Kind.String()...)
		dst = append(dst, ')')
	case p.Frag.Offset != 0:
		dst = append(dst, " frag off "...)
		dst = strconv.AppendUint(dst, uint64(p.Frag.Offset), 10)
	case p.L4Off == 0:
	case p.Proto == packet.ProtoTCP:
		dst = append(dst, ' ')
		if p.TCPFlags == 0 {
			dst = append(dst, "none"...)
		} else {
			dst = append(dst, packet.TCPFlagsString(p.TCPFlags)...)
		}
		if p.PayloadLen > 0 {
			dst = append(dst, " len "...)
			dst = strconv.AppendInt(dst, int64(p.PayloadLen), 10)
		}
	case p.Proto == packet.ProtoUDP || p.Proto == packet.ProtoUDPLite:
		dst = append(dst, " len "...)
		dst = strconv.AppendInt(dst, int64(p.PayloadLen), 10)
	case p.Proto == packet.ProtoICMP && p.IPVersion == 4, p.Proto == packet.ProtoICMPv6 && p.IPVersion == 6:
		dst = appendICMP(dst, &p)
	}
	return dst
}

func appendAddr(dst []byte, a netip.Addr, port uint16, withPort bool) []byte {
	dst = a.AppendTo(dst)
	if withPort {
		dst = append(dst, '.')
		dst = strconv.AppendUint(dst, uint64(port), 10)
	}
	return dst
}

// ICMP type names, spelled as the rules language spells them (pkg/rules
// names.go, the first name of each).
var (
	icmp4Names = map[uint8]string{
		0: "echo-reply", 3: "dest-unreach", 4: "source-quench", 5: "redirect",
		8: "echo-request", 9: "router-advert", 10: "router-solicit",
		11: "time-exceeded", 12: "param-problem", 13: "timestamp",
		14: "timestamp-reply",
	}
	icmp6Names = map[uint8]string{
		1: "dest-unreach", 2: "packet-too-big", 3: "time-exceeded",
		4: "param-problem", 128: "echo-request", 129: "echo-reply",
		133: "router-solicit", 134: "router-advert", 135: "neighbor-solicit",
		136: "neighbor-advert", 137: "redirect",
	}
)

func appendICMP(dst []byte, p *packet.Packet) []byte {
	names := icmp4Names
	echo := p.ICMPType == 0 || p.ICMPType == 8
	if p.IPVersion == 6 {
		names = icmp6Names
		echo = p.ICMPType == 128 || p.ICMPType == 129
	}
	dst = append(dst, ' ')
	if n, ok := names[p.ICMPType]; ok {
		dst = append(dst, n...)
	} else {
		dst = append(dst, "type "...)
		dst = strconv.AppendUint(dst, uint64(p.ICMPType), 10)
	}
	if echo {
		dst = append(dst, " id "...)
		dst = strconv.AppendUint(dst, uint64(p.ICMPID), 10)
		dst = append(dst, " seq "...)
		dst = strconv.AppendUint(dst, uint64(p.ICMPSeq), 10)
	} else if p.ICMPCode != 0 {
		dst = append(dst, " code "...)
		dst = strconv.AppendUint(dst, uint64(p.ICMPCode), 10)
	}
	return dst
}
