package packet

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// refChecksum is RFC 1071 the slow way, 16 bits at a time: the reference
// the fast sum is checked against.
func refChecksum(pseudo, data []byte) uint16 {
	b := append(append([]byte(nil), pseudo...), data...)
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// pseudo6 is the IPv6 pseudo-header for the 32 address bytes addrs.
func pseudo6(addrs []byte, proto uint8, n int) []byte {
	b := append([]byte(nil), addrs...)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	return append(b, 0, 0, 0, proto)
}

func TestSumMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	// Every length to 300, then lengths and starting offsets around the
	// 32-byte blocks of the AVX2 sum, to a jumbo frame's.
	type tc struct{ n, off int }
	var cases []tc
	for n := range 300 {
		cases = append(cases, tc{n, 0})
	}
	for n := 300; n < 9100; n += 97 {
		for off := range 3 {
			cases = append(cases, tc{n, off * 7})
		}
	}
	for _, c := range cases {
		n := c.n
		for _, fill := range []string{"random", "all-ones", "zeros"} {
			b := make([]byte, n+c.off)[c.off:]
			for i := range b {
				switch fill {
				case "random":
					b[i] = byte(r.Uint32())
				case "all-ones":
					b[i] = 0xff
				}
			}
			// An initial value as large as the pseudo-header sums get.
			init := uint64(r.Uint32())
			want := ^refChecksum(binary.BigEndian.AppendUint32(nil, uint32(init)), b)
			if got := fold(sum(b, init)); got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
				t.Fatalf("%s %d bytes at offset %d: fold(sum) = %#04x, want %#04x", fill, n, c.off, got, want)
			}
		}
	}
}

func TestL4ChecksumOK(t *testing.T) {
	// flip flips a bit of byte i of an Ethernet frame; a negative i counts
	// back from the end of the IP datagram (gopacket pads short frames to
	// 60 bytes, and a flipped padding byte would prove nothing).
	flip := func(b []byte, i int) []byte { return flipIn(b, LinkEthernet, i) }
	flip6 := func(b []byte, i int) []byte { return flipIn(b, LinkIPv6, i) }
	set := func(b []byte, off int, v ...byte) []byte {
		b = append([]byte(nil), b...)
		copy(b[off:], v)
		return b
	}
	udp6 := func() []byte {
		ip := ip6("2001:db8::1", "2001:db8::2", layers.IPProtocolUDP)
		return serialize(t, ether(layers.EthernetTypeIPv6), ip, udp(1, 2, ip), raw("odd"))
	}
	syn := tcpSYNv4(t)
	tests := []struct {
		name string
		data []byte
		link LinkType
		want bool
	}{
		{"tcp v4 good", syn, LinkEthernet, true},
		{"tcp v4 option byte flipped", flip(syn, -3), LinkEthernet, false},
		{"tcp v4 address flipped (pseudo-header)", flip(syn, 14+12), LinkEthernet, false},
		{"tcp v6 good", tcpDataV6(t), LinkEthernet, true},
		{"tcp v6 payload flipped", flip(tcpDataV6(t), -1), LinkEthernet, false},
		{"tcp v6 behind extension headers good", tcp6WithExtensions(t), LinkEthernet, true},
		{"tcp v6 behind extension headers flipped", flip(tcp6WithExtensions(t), -1), LinkEthernet, false},
		{"udp v4 good", udpDNS(t), LinkEthernet, true},
		{"udp v4 odd length good", serializeUDP4(t, "abc"), LinkEthernet, true},
		{"udp v4 odd length last byte flipped", flip(serializeUDP4(t, "abc"), -1), LinkEthernet, false},
		{"udp v4 with non-zero ethernet padding good", append(serializeUDP4(t, "a"), 0xff, 0xff, 0xff), LinkEthernet, true},
		{"udp v4 checksum 0 means none", set(flip(udpDNS(t), -1), 34+6, 0, 0), LinkEthernet, true},
		{"udp v4 length shorter than the ip payload: summed over the ip payload, as conntrack does", shortUDP(t), LinkEthernet, false},
		{"udp v6 good", udp6(), LinkEthernet, true},
		{"udp v6 checksum 0 is bad", set(udp6(), 54+6, 0, 0), LinkEthernet, false},
		{"udp v6 behind destination options good", udp6WithDestOpts(t), LinkEthernet, true},
		{"udp-lite full coverage good", udpLite6(t, 0), LinkIPv6, true},
		{"udp-lite full coverage payload flipped", flip6(udpLite6(t, 0), -1), LinkIPv6, false},
		{"udp-lite coverage 8: payload not covered", flip6(udpLite6(t, 8), -1), LinkIPv6, true},
		{"udp-lite coverage 8: header covered", flip6(udpLite6(t, 8), 40+1), LinkIPv6, false},
		{"udp-lite checksum 0 is bad", set(udpLite6(t, 0), 46, 0, 0), LinkIPv6, false},
		{"icmp echo good", icmpEchoV4(t, 8, 1, 2), LinkEthernet, true},
		{"icmp echo flipped", flip(icmpEchoV4(t, 8, 1, 2), -1), LinkEthernet, false},
		{"icmp error good", icmpErrorV4(t), LinkEthernet, true},
		{"icmp error quote flipped", flip(icmpErrorV4(t), -2), LinkEthernet, false},
		{"icmpv6 echo good", icmp6Echo(t), LinkEthernet, true},
		{"icmpv6 echo source flipped (pseudo-header)", flip(icmp6Echo(t), 14+8), LinkEthernet, false},
		{"icmpv6 error good", icmp6Error(t, 1, 4, tcpDataV6(t)[14:]), LinkEthernet, true},
		{"vlan tcp good", vlanTCP(t), LinkEthernet, true},
		{"cut capture cannot be judged", flip(syn, -3)[:len(syn)-1], LinkEthernet, true},
		{"first fragment cannot be judged", flip(ipv6Fragment(t, 0, true), -1), LinkEthernet, true},
		{"non-first fragment cannot be judged", flip(ipv6Fragment(t, 16, false), -1), LinkEthernet, true},
		{"other protocols are not judged", gre4(t), LinkEthernet, true},
		{"malformed packets are not judged", set(udpDNS(t), 34+4, 0, 7), LinkEthernet, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			p.Decode(tt.data, tt.link)
			if got := p.L4ChecksumOK(); got != tt.want {
				t.Errorf("L4ChecksumOK() = %v, want %v (%v)", got, tt.want, &p)
			}
		})
	}
}

func TestIPv4HeaderChecksumOK(t *testing.T) {
	var p Packet
	b := tcpSYNv4(t)
	p.Decode(b, LinkEthernet)
	if !p.IPv4HeaderChecksumOK() {
		t.Errorf("good header reported bad")
	}
	b = bytes.Clone(b)
	b[14+8]-- // TTL
	p.Decode(b, LinkEthernet)
	if p.IPv4HeaderChecksumOK() {
		t.Errorf("bad header reported good")
	}
}

func flipIn(b []byte, link LinkType, i int) []byte {
	b = bytes.Clone(b)
	if i < 0 {
		var p Packet
		p.Decode(b, link)
		i += p.L3Off + p.IPLen
	}
	b[i] ^= 0x40
	return b
}

// shortUDP is a UDP datagram whose length field (10) covers 2 of its 4
// payload bytes, with the checksum computed the RFC 768 way over those 10
// bytes.
func shortUDP(t testing.TB) []byte {
	b := serializeUDP4(t, "abcd")
	binary.BigEndian.PutUint16(b[34+4:], 10)
	b[34+6], b[34+7] = 0, 0
	pseudo := append(bytes.Clone(b[14+12:14+20]), 0, uint8(ProtoUDP), 0, 10)
	binary.BigEndian.PutUint16(b[34+6:], refChecksum(pseudo, b[34:44]))
	if refChecksum(pseudo, b[34:44]) != 0 {
		t.Fatal("shortUDP: the RFC 768 checksum over the UDP length is not right")
	}
	return b
}
