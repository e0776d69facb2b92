package packet

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Packets in these tests are built with gopacket's layers, so the bytes
// come from an independent encoder rather than from hand-typed hex.

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

// serialize builds a packet from layers, fixing lengths and checksums.
func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// raw is a layer of literal bytes: IPv6 extension headers and ICMP bodies
// that gopacket cannot build the way a test needs them.
type raw []byte

func (r raw) SerializeTo(b gopacket.SerializeBuffer, _ gopacket.SerializeOptions) error {
	buf, err := b.PrependBytes(len(r))
	copy(buf, r)
	return err
}
func (r raw) LayerType() gopacket.LayerType { return gopacket.LayerTypePayload }

func ether(et layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}
}

func ip4(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Id: 0x1234, Flags: layers.IPv4DontFragment,
		Protocol: proto, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
}

func ip6(src, dst string, nh layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: nh,
		SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
}

// tcp builds a TCP header; flags are tcpdump letters (S, A, F, R, P, U, E, W).
func tcp(sport, dport uint16, flags string, seq, ack uint32, nl gopacket.NetworkLayer, opts ...layers.TCPOption) *layers.TCP {
	t := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ack,
		Window: 64240, Options: opts,
		SYN: strings.Contains(flags, "S"), ACK: strings.Contains(flags, "A"), FIN: strings.Contains(flags, "F"),
		RST: strings.Contains(flags, "R"), PSH: strings.Contains(flags, "P"), URG: strings.Contains(flags, "U"),
		ECE: strings.Contains(flags, "E"), CWR: strings.Contains(flags, "W")}
	if err := t.SetNetworkLayerForChecksum(nl); err != nil {
		panic(err)
	}
	return t
}

func udp(sport, dport uint16, nl gopacket.NetworkLayer) *layers.UDP {
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	if err := u.SetNetworkLayerForChecksum(nl); err != nil {
		panic(err)
	}
	return u
}

func icmp6(typ, code uint8, nl gopacket.NetworkLayer) *layers.ICMPv6 {
	i := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	if err := i.SetNetworkLayerForChecksum(nl); err != nil {
		panic(err)
	}
	return i
}

func optMSS(v uint16) layers.TCPOption {
	return layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionData: binary.BigEndian.AppendUint16(nil, v)}
}
func optWS(v uint8) layers.TCPOption {
	return layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionData: []byte{v}}
}
func optSACKPerm() layers.TCPOption {
	return layers.TCPOption{OptionType: layers.TCPOptionKindSACKPermitted}
}
func optNOP() layers.TCPOption { return layers.TCPOption{OptionType: layers.TCPOptionKindNop} }
func optTS(val, ecr uint32) layers.TCPOption {
	return layers.TCPOption{OptionType: layers.TCPOptionKindTimestamps,
		OptionData: binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, val), ecr)}
}
func optSACK(blocks ...uint32) layers.TCPOption {
	var d []byte
	for _, b := range blocks {
		d = binary.BigEndian.AppendUint32(d, b)
	}
	return layers.TCPOption{OptionType: layers.TCPOptionKindSACK, OptionData: d}
}

// ext6 is an IPv6 extension header of the given next header and total
// length (a multiple of 8), padded with a PadN option.
func ext6(nh layers.IPProtocol, n int) raw {
	h := make([]byte, n)
	h[0] = byte(nh)
	h[1] = byte(n/8 - 1)
	h[2], h[3] = 1, byte(n-4) // PadN
	return h
}

// frag6 is an IPv6 fragment header.
func frag6(nh layers.IPProtocol, offset uint16, more bool, id uint32) raw {
	h := make([]byte, 8)
	h[0] = byte(nh)
	fo := offset &^ 7
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(h[2:], fo)
	binary.BigEndian.PutUint32(h[4:], id)
	return h
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// diffPackets lists the fields in which got differs from want, by name.
func diffPackets(got, want *Packet) string {
	var out []string
	gv, wv := reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem()
	for i := range gv.NumField() {
		name := gv.Type().Field(i).Name
		if name == "Data" {
			continue
		}
		g, w := gv.Field(i).Interface(), wv.Field(i).Interface()
		if !reflect.DeepEqual(g, w) {
			out = append(out, fmt.Sprintf("%s: got %+v, want %+v", name, g, w))
		}
	}
	return strings.Join(out, "\n")
}

// Named packets shared by tests and benchmarks.

func tcpSYNv4(t testing.TB) []byte {
	ip := ip4("10.0.0.1", "10.0.0.2", layers.IPProtocolTCP)
	return serialize(t, ether(layers.EthernetTypeIPv4), ip,
		tcp(40000, 80, "S", 1000, 0, ip, optMSS(1460), optSACKPerm(), optTS(1, 0), optNOP(), optWS(7)))
}

// tcpAckTS is an established-connection ACK with NOP, NOP, timestamps:
// the most common TCP packet.
func tcpAckTS(t testing.TB) []byte {
	ip := ip4("10.0.0.2", "10.0.0.1", layers.IPProtocolTCP)
	return serialize(t, ether(layers.EthernetTypeIPv4), ip,
		tcp(80, 40000, "A", 5000, 1001, ip, optNOP(), optNOP(), optTS(123456, 654321)))
}

func tcpDataV6(t testing.TB) []byte {
	ip := ip6("2001:db8::1", "2001:db8::2", layers.IPProtocolTCP)
	return serialize(t, ether(layers.EthernetTypeIPv6), ip,
		tcp(443, 50000, "PA", 7000, 9000, ip, optNOP(), optNOP(), optSACK(100, 200, 300, 400)),
		gopacket.Payload("hello, world"))
}

func udpDNS(t testing.TB) []byte {
	ip := ip4("192.168.1.10", "192.168.1.1", layers.IPProtocolUDP)
	return serialize(t, ether(layers.EthernetTypeIPv4), ip, udp(53000, 53, ip),
		gopacket.Payload("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"))
}

// icmpErrorV4 is a port unreachable from 192.168.1.1 quoting the DNS query
// of udpDNS as the host received it (IP header and the first 8 bytes).
func icmpErrorV4(t testing.TB) []byte {
	q := udpDNS(t)[14:]
	q = q[:28]
	return serialize(t, ether(layers.EthernetTypeIPv4), ip4("192.168.1.1", "192.168.1.10", layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, gopacket.Payload(q))
}

// vlanTCP is a TCP ACK inside two tags: S-tag 100 (802.1ad), C-tag 6.
func vlanTCP(t testing.TB) []byte {
	ip := ip4("1.1.1.1", "2.2.2.2", layers.IPProtocolTCP)
	return serialize(t, ether(layers.EthernetTypeQinQ),
		&layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 6, Type: layers.EthernetTypeIPv4},
		ip, tcp(12345, 8080, "A", 1, 1, ip))
}
