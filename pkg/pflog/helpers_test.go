package pflog

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// pkt builds an IP packet from a line in the firewall's own words:
//
//	tcp 198.18.1.2:40000 > 198.18.2.2:80 S
//	udp [fd00:198:18::1]:5353 > [fd00:198:18::2]:53 len=12
//	icmp 198.18.1.2 > 198.18.2.2 echo-request
//	icmp6 fd00:198:18::1 > fd00:198:18::2 echo-request
//
// Checksums are correct, so tcpdump -v would not complain either.
func pkt(tb testing.TB, s string) []byte {
	tb.Helper()
	f := strings.Fields(s)
	if len(f) < 4 || f[2] != ">" {
		tb.Fatalf("pkt %q: want PROTO SRC > DST [...]", s)
	}
	proto, rest := f[0], f[4:]
	var src, dst netip.AddrPort
	var srcA, dstA netip.Addr
	if proto == "tcp" || proto == "udp" {
		src, dst = netip.MustParseAddrPort(f[1]), netip.MustParseAddrPort(f[3])
		srcA, dstA = src.Addr(), dst.Addr()
	} else {
		srcA, dstA = netip.MustParseAddr(f[1]), netip.MustParseAddr(f[3])
	}
	var ip gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	var next layers.IPProtocol
	switch proto {
	case "tcp":
		next = layers.IPProtocolTCP
	case "udp":
		next = layers.IPProtocolUDP
	case "icmp":
		next = layers.IPProtocolICMPv4
	case "icmp6":
		next = layers.IPProtocolICMPv6
	default:
		tb.Fatalf("pkt %q: protocol %q", s, proto)
	}
	if srcA.Is4() {
		v4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: next, SrcIP: net.IP(srcA.AsSlice()), DstIP: net.IP(dstA.AsSlice())}
		ip, ipl = v4, v4
	} else {
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: net.IP(srcA.AsSlice()), DstIP: net.IP(dstA.AsSlice())}
		ip, ipl = v6, v6
	}
	ls := []gopacket.SerializableLayer{ipl}
	var payload []byte
	switch proto {
	case "tcp":
		t := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: 1000, Window: 64240}
		for _, c := range rest[0] {
			switch c {
			case 'S':
				t.SYN = true
			case 'A':
				t.ACK = true
			case 'F':
				t.FIN = true
			case 'R':
				t.RST = true
			case 'P':
				t.PSH = true
			}
		}
		if t.ACK {
			t.Ack = 5000
		}
		if err := t.SetNetworkLayerForChecksum(ip); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, t)
	case "udp":
		u := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
		if err := u.SetNetworkLayerForChecksum(ip); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, u)
	case "icmp":
		typ := map[string]uint8{"echo-request": 8, "echo-reply": 0}[rest[0]]
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: 7, Seq: 1})
	case "icmp6":
		typ := map[string]uint8{"echo-request": 128, "echo-reply": 129}[rest[0]]
		i6 := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
		if err := i6.SetNetworkLayerForChecksum(ip); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, i6, &layers.ICMPv6Echo{Identifier: 7, SeqNumber: 1})
	}
	for _, r := range rest {
		if n, ok := strings.CutPrefix(r, "len="); ok {
			l, err := strconv.Atoi(n)
			if err != nil {
				tb.Fatal(err)
			}
			payload = make([]byte, l)
		}
	}
	if payload != nil {
		ls = append(ls, gopacket.Payload(payload))
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatalf("pkt %q: %v", s, err)
	}
	return buf.Bytes()
}

// rec builds a record: "block in on eth1 rule 3" and a packet line.
func rec(tb testing.TB, decision, packet string) Record {
	tb.Helper()
	f := strings.Fields(decision)
	if len(f) != 6 || f[2] != "on" || f[4] != "rule" {
		tb.Fatalf("rec %q: want ACTION DIR on IF rule N", decision)
	}
	r := Record{
		Time:   time.Date(2026, 5, 1, 12, 0, 0, 123456000, time.UTC),
		Ifname: MakeIfname(f[3]),
		Packet: pkt(tb, packet),
	}
	switch f[0] {
	case "pass":
		r.Action = Pass
	case "block":
		r.Action = Block
	default:
		tb.Fatalf("rec %q: action %q", decision, f[0])
	}
	switch f[1] {
	case "in":
		r.Dir = DirIn
	case "out":
		r.Dir = DirOut
	default:
		tb.Fatalf("rec %q: dir %q", decision, f[1])
	}
	n, err := strconv.ParseUint(f[5], 10, 32)
	if err != nil {
		tb.Fatal(err)
	}
	r.RuleNr = uint32(n)
	return r
}
