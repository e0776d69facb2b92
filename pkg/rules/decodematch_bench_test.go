package rules

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/statewall/statewall/pkg/packet"
)

// The stateless hot path as the daemon runs it: bytes in, packet.Decode,
// Ruleset.Match. The budget is 50 ns per packet for both on one
// core with rules/webserver.rules; BenchmarkDecodeMatch measures the sum
// directly rather than adding two separately warmed benchmarks.

// wirePacket is one frame as it arrives, the direction the hook reports,
// and the rule of webserver.rules it must match (0: none, the default).
type wirePacket struct {
	name string
	data []byte
	dir  Dir
	rule int
}

// webTraffic builds, with gopacket's encoder, the packets a web server
// sees most: a client's HTTPS SYN with Linux's option layout, the ACKs
// of the established connection, the server's own DNS query and its
// reply, and a ping.
func webTraffic(t testing.TB) []wirePacket {
	const (
		client = "198.18.0.9"
		server = "198.18.0.2"
		dns    = "198.18.0.53"
	)
	ip := func(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
		return &layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: proto,
			SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0xa}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0xb},
		EthernetType: layers.EthernetTypeIPv4}
	ser := func(ls ...gopacket.SerializableLayer) []byte {
		t.Helper()
		for _, l := range ls {
			switch l := l.(type) {
			case *layers.TCP:
				l.SetNetworkLayerForChecksum(ls[1].(*layers.IPv4))
			case *layers.UDP:
				l.SetNetworkLayerForChecksum(ls[1].(*layers.IPv4))
			}
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
			t.Fatal(err)
		}
		return append([]byte(nil), buf.Bytes()...)
	}
	ts := func(val, ecr uint32) layers.TCPOption {
		return layers.TCPOption{OptionType: layers.TCPOptionKindTimestamps,
			OptionData: binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, val), ecr)}
	}
	nop := layers.TCPOption{OptionType: layers.TCPOptionKindNop}
	synOpts := []layers.TCPOption{ // Linux: MSS, SACK permitted, timestamps, NOP, window scale
		{OptionType: layers.TCPOptionKindMSS, OptionData: []byte{0x05, 0xb4}},
		{OptionType: layers.TCPOptionKindSACKPermitted},
		ts(1000, 0), nop,
		{OptionType: layers.TCPOptionKindWindowScale, OptionData: []byte{7}},
	}
	query := []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01")
	answer := append(append([]byte("\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00"), query[12:]...),
		"\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\xc6\x12\x00\x50"...)
	return []wirePacket{
		{"https-syn-in", ser(eth, ip(client, server, layers.IPProtocolTCP),
			&layers.TCP{SrcPort: 40000, DstPort: 443, Seq: 1, SYN: true, Window: 64240, Options: synOpts}), DirIn, 1},
		{"https-ack-in", ser(eth, ip(client, server, layers.IPProtocolTCP),
			&layers.TCP{SrcPort: 40000, DstPort: 443, Seq: 2, Ack: 2, ACK: true, Window: 502, Options: []layers.TCPOption{nop, nop, ts(1010, 2000)}}), DirIn, 1},
		{"dns-out", ser(eth, ip(server, dns, layers.IPProtocolUDP),
			&layers.UDP{SrcPort: 40000, DstPort: 53}, gopacket.Payload(query)), DirOut, 2},
		{"dns-reply-in", ser(eth, ip(dns, server, layers.IPProtocolUDP),
			&layers.UDP{SrcPort: 53, DstPort: 40000}, gopacket.Payload(answer)), DirIn, 0},
		{"ping-in", ser(eth, ip(client, server, layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1},
			gopacket.Payload(make([]byte, 56))), DirIn, 4},
	}
}

// TestDecodeMatch pins what BenchmarkDecodeMatch measures: every packet
// decodes and meets the rule it is meant to, without allocating.
func TestDecodeMatch(t *testing.T) {
	rs, err := ParseFile("../../rules/webserver.rules")
	if err != nil {
		t.Fatal(err)
	}
	var p packet.Packet
	for _, wp := range webTraffic(t) {
		p.Decode(wp.data, packet.LinkEthernet)
		if p.Kind != packet.KindOK {
			t.Fatalf("%s: decoded as %v", wp.name, p.Kind)
		}
		if got := ruleIndex(rs.Match(&p, wp.dir)); got != wp.rule {
			t.Errorf("%s: matched rule %d, want %d", wp.name, got, wp.rule)
		}
		if n := testing.AllocsPerRun(100, func() {
			p.Decode(wp.data, packet.LinkEthernet)
			rs.Match(&p, wp.dir)
		}); n != 0 {
			t.Errorf("%s: decode and match allocate %v times", wp.name, n)
		}
	}
}

// BenchmarkDecodeMatch decodes and matches webTraffic against
// rules/webserver.rules: round robin over all of it ("mix", the figure the
// 50 ns budget is about), and each packet alone.
func BenchmarkDecodeMatch(b *testing.B) {
	rs, err := ParseFile("../../rules/webserver.rules")
	if err != nil {
		b.Fatal(err)
	}
	traffic := webTraffic(b)
	b.Run("mix", func(b *testing.B) {
		var p packet.Packet
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			wp := &traffic[i]
			p.Decode(wp.data, packet.LinkEthernet)
			rs.Match(&p, wp.dir)
			if i++; i == len(traffic) {
				i = 0
			}
		}
	})
	for _, wp := range traffic {
		b.Run(wp.name, func(b *testing.B) {
			var p packet.Packet
			b.ReportAllocs()
			for b.Loop() {
				p.Decode(wp.data, packet.LinkEthernet)
				rs.Match(&p, wp.dir)
			}
		})
	}
}
