package reject

import (
	"net"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/statewall/statewall/pkg/packet"
)

// The packets these tests answer are built with gopacket's layers, and the
// answers are read back with gopacket and with pkg/packet, so that neither
// side of a check is hand-typed bytes.

const (
	cli4 = "198.18.0.1"
	srv4 = "198.18.0.2"
	cli6 = "fd00:198:18::1"
	srv6 = "fd00:198:18::2"
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// raw is a layer of literal bytes (payloads, IPv6 extension headers).
type raw []byte

func (r raw) SerializeTo(b gopacket.SerializeBuffer, _ gopacket.SerializeOptions) error {
	buf, err := b.PrependBytes(len(r))
	copy(buf, r)
	return err
}
func (r raw) LayerType() gopacket.LayerType { return gopacket.LayerTypePayload }

// ext6 is an IPv6 extension header with next header nh, n bytes long (a
// multiple of 8), padded with a PadN option.
func ext6(nh layers.IPProtocol, n int) raw {
	h := make([]byte, n)
	h[0] = byte(nh)
	h[1] = byte(n/8 - 1)
	h[2], h[3] = 1, byte(n-4)
	return h
}

func ip4(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 63, Id: 0x1234, Flags: layers.IPv4DontFragment,
		Protocol: proto, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
}

func ip6(src, dst string, nh layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 63, NextHeader: nh, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
}

// tcpSeg builds a TCP header; flags in tcpdump's letters (S, A, F, R, P).
func tcpSeg(sport, dport uint16, flags string, seq, ack uint32, nl gopacket.NetworkLayer) *layers.TCP {
	t := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ack,
		Window: 64240,
		SYN:    strings.Contains(flags, "S"), ACK: strings.Contains(flags, "A"), FIN: strings.Contains(flags, "F"),
		RST: strings.Contains(flags, "R"), PSH: strings.Contains(flags, "P")}
	if t.SYN {
		t.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 0xb4}}}
	}
	if err := t.SetNetworkLayerForChecksum(nl); err != nil {
		panic(err)
	}
	return t
}

func udpDgram(sport, dport uint16, nl gopacket.NetworkLayer) *layers.UDP {
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	if err := u.SetNetworkLayerForChecksum(nl); err != nil {
		panic(err)
	}
	return u
}

// tcp4 and tcp6 are a TCP segment from the client's port 40000 to the
// server's port 8080 with n bytes of payload.
func tcp4(t testing.TB, flags string, seq, ack uint32, n int) []byte {
	ip := ip4(cli4, srv4, layers.IPProtocolTCP)
	return serialize(t, ip, tcpSeg(40000, 8080, flags, seq, ack, ip), raw(make([]byte, n)))
}

func tcp6(t testing.TB, flags string, seq, ack uint32, n int) []byte {
	ip := ip6(cli6, srv6, layers.IPProtocolTCP)
	return serialize(t, ip, tcpSeg(40000, 8080, flags, seq, ack, ip), raw(make([]byte, n)))
}

// udp4 and udp6 are a UDP datagram from the client's port 40000 to the
// server's port 53 with n bytes of payload (each byte its index).
func udp4(t testing.TB, n int) []byte {
	ip := ip4(cli4, srv4, layers.IPProtocolUDP)
	return serialize(t, ip, udpDgram(40000, 53, ip), raw(payload(n)))
}

func udp6(t testing.TB, n int) []byte {
	ip := ip6(cli6, srv6, layers.IPProtocolUDP)
	return serialize(t, ip, udpDgram(40000, 53, ip), raw(payload(n)))
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func icmp4Msg(t testing.TB, src, dst string, typ, code uint8, body []byte) []byte {
	return serialize(t, ip4(src, dst, layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Id: 7, Seq: 1}, raw(body))
}

func icmp6Msg(t testing.TB, src, dst string, typ, code uint8, body []byte) []byte {
	ip := ip6(src, dst, layers.IPProtocolICMPv6)
	i := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	if err := i.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, ip, i, raw(append([]byte{0, 7, 0, 1}, body...)))
}

// checkAnswer decodes an answer with pkg/packet and checks what any
// answer must be: a whole, well-formed packet with valid checksums and
// TTL 64, from the blocked packet's destination to its source. It returns
// the decoded answer.
func checkAnswer(t *testing.T, in, out []byte) packet.Packet {
	t.Helper()
	var p, q packet.Packet
	p.Decode(in, packet.LinkIP)
	q.Decode(out, packet.LinkIP)
	if q.Kind != packet.KindOK {
		t.Fatalf("answer decodes as %v: % x", q.Kind, out)
	}
	if q.IPLen != len(out) {
		t.Errorf("IP length %d, answer has %d bytes", q.IPLen, len(out))
	}
	if !q.L4ChecksumOK() {
		t.Errorf("bad transport checksum: % x", out)
	}
	if q.IPVersion == 4 && packet.Fold(packet.OnesSum(out[:20], 0)) != 0xffff {
		t.Errorf("bad IPv4 header checksum: % x", out[:20])
	}
	if q.Src != p.Dst || q.Dst != p.Src {
		t.Errorf("answer %v > %v, want %v > %v", q.Src, q.Dst, p.Dst, p.Src)
	}
	if q.TTL != TTL {
		t.Errorf("TTL %d, want %d", q.TTL, TTL)
	}
	return q
}

// gopacketDecode decodes an answer with gopacket and fails on any error.
func gopacketDecode(t *testing.T, out []byte) gopacket.Packet {
	t.Helper()
	first := layers.LayerTypeIPv4
	if out[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	gp := gopacket.NewPacket(out, first, gopacket.Default)
	if el := gp.ErrorLayer(); el != nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	return gp
}
