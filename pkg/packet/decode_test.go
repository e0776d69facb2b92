package packet

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// TestDecodeFields pins every field Decode sets, for one packet of each shape
// the firewall handles.
func TestDecodeFields(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		link LinkType
		want Packet
	}{
		{
			name: "tcp syn over ipv4 with mss, sack-permitted, timestamps and wscale",
			data: tcpSYNv4(t), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 34, PayloadOff: 74, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoTCP, Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"), TTL: 64,
				IPLen: 60, IPHdrLen: 20, Frag: Fragment{ID: 0x1234, DontFrag: true},
				SrcPort: 40000, DstPort: 80, L4Len: 40, TCPFlags: TCPSyn, Seq: 1000, Window: 64240, TCPHdrLen: 40,
				TCPOpts: TCPOptions{MSS: 1460, WScale: 7, HasWScale: true, SACKPerm: true, HasTS: true, TSVal: 1}},
		},
		{
			name: "tcp data over ipv6 with two sack blocks",
			data: tcpDataV6(t), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 54, PayloadOff: 94, EtherType: 0x86dd,
				IPVersion: 6, Proto: ProtoTCP, Src: addr("2001:db8::1"), Dst: addr("2001:db8::2"), TTL: 64,
				IPLen: 92, IPHdrLen: 40, SrcPort: 443, DstPort: 50000, L4Len: 52, PayloadLen: 12,
				TCPFlags: TCPPsh | TCPAck, Seq: 7000, Ack: 9000, Window: 64240, TCPHdrLen: 40,
				TCPOpts: TCPOptions{NSACK: 2, SACK: [4]SACKBlock{{100, 200}, {300, 400}}}},
		},
		{
			name: "udp dns query",
			data: udpDNS(t), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 34, PayloadOff: 42, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoUDP, Src: addr("192.168.1.10"), Dst: addr("192.168.1.1"), TTL: 64,
				IPLen: 57, IPHdrLen: 20, Frag: Fragment{ID: 0x1234, DontFrag: true},
				SrcPort: 53000, DstPort: 53, L4Len: 37, PayloadLen: 29, UDPLen: 37},
		},
		{
			name: "udp with ethernet padding: the padding is not payload",
			data: padTo(serializeUDP4(t, "ab"), 60), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 34, PayloadOff: 42, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoUDP, Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"), TTL: 64,
				IPLen: 30, IPHdrLen: 20, Frag: Fragment{ID: 0x1234, DontFrag: true},
				SrcPort: 1000, DstPort: 2000, L4Len: 10, PayloadLen: 2, UDPLen: 10},
		},
		{
			name: "icmp port unreachable quoting udp",
			data: icmpErrorV4(t), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 34, PayloadOff: 42, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoICMP, Src: addr("192.168.1.1"), Dst: addr("192.168.1.10"), TTL: 64,
				IPLen: 56, IPHdrLen: 20, Frag: Fragment{ID: 0x1234, DontFrag: true},
				L4Len: 36, PayloadLen: 28, ICMPType: 3, ICMPCode: 3,
				Inner: Inner{Valid: true, IPVersion: 4, Proto: ProtoUDP, Src: addr("192.168.1.10"), Dst: addr("192.168.1.1"),
					SrcPort: 53000, DstPort: 53}},
		},
		{
			name: "icmp frag-needed quoting a tcp syn: the quote carries the sequence number",
			data: icmp4Error(t, 3, 4, tcpSYNv4(t)[14:14+28]), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 34, PayloadOff: 42, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoICMP, Src: addr("192.0.2.1"), Dst: addr("10.0.0.1"), TTL: 64,
				IPLen: 56, IPHdrLen: 20, Frag: Fragment{ID: 0x1234, DontFrag: true},
				L4Len: 36, PayloadLen: 28, ICMPType: 3, ICMPCode: 4,
				Inner: Inner{Valid: true, IPVersion: 4, Proto: ProtoTCP, Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"),
					SrcPort: 40000, DstPort: 80, TCPSeq: 1000}},
		},
		{
			name: "icmp time exceeded quoting an echo request",
			data: icmp4Error(t, 11, 0, icmpEchoV4(t, 8, 0x4242, 7)[14:14+28]), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 34, PayloadOff: 42, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoICMP, Src: addr("192.0.2.1"), Dst: addr("10.0.0.1"), TTL: 64,
				IPLen: 56, IPHdrLen: 20, Frag: Fragment{ID: 0x1234, DontFrag: true},
				L4Len: 36, PayloadLen: 28, ICMPType: 11,
				Inner: Inner{Valid: true, IPVersion: 4, Proto: ProtoICMP, Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"),
					ICMPType: 8, ICMPID: 0x4242}},
		},
		{
			name: "icmp error whose quote stops inside the ports is not enough to find a connection",
			data: icmp4Error(t, 3, 3, udpDNS(t)[14:14+22]), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 34, PayloadOff: 42, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoICMP, Src: addr("192.0.2.1"), Dst: addr("10.0.0.1"), TTL: 64,
				IPLen: 50, IPHdrLen: 20, Frag: Fragment{ID: 0x1234, DontFrag: true},
				L4Len: 30, PayloadLen: 22, ICMPType: 3, ICMPCode: 3},
		},
		{
			name: "icmp error whose quote holds just the ports finds the connection, as the kernel's does",
			data: icmp4Error(t, 3, 3, udpDNS(t)[14:14+24]), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 34, PayloadOff: 42, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoICMP, Src: addr("192.0.2.1"), Dst: addr("10.0.0.1"), TTL: 64,
				IPLen: 52, IPHdrLen: 20, Frag: Fragment{ID: 0x1234, DontFrag: true},
				L4Len: 32, PayloadLen: 24, ICMPType: 3, ICMPCode: 3,
				Inner: Inner{Valid: true, IPVersion: 4, Proto: ProtoUDP, Src: addr("192.168.1.10"), Dst: addr("192.168.1.1"), SrcPort: 53000, DstPort: 53}},
		},
		{
			// The kernel reads the quote as IPv4 whatever its version
			// field says: the IPv6 header's bytes make a garbage
			// header, here a non-first fragment, which names no
			// connection.
			name: "icmpv4 error quoting ipv6 is read as ipv4, as the kernel reads it",
			data: icmp4Error(t, 3, 3, tcpDataV6(t)[14:]), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 34, PayloadOff: 42, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoICMP, Src: addr("192.0.2.1"), Dst: addr("10.0.0.1"), TTL: 64,
				IPLen: 120, IPHdrLen: 20, Frag: Fragment{ID: 0x1234, DontFrag: true},
				L4Len: 100, PayloadLen: 92, ICMPType: 3, ICMPCode: 3,
				Inner: Inner{Valid: true, NonFirstFragment: true, IPVersion: 4, Proto: ProtoICMP, Src: addr("0.0.0.0"), Dst: addr("0.0.0.0")}},
		},
		{
			name: "icmp error quoting a non-first fragment: addresses only",
			data: icmp4Error(t, 11, 1, ipv4Fragment(t, 2, false, []byte("0123456789abcdef"))[14:14+28]), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 34, PayloadOff: 42, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoICMP, Src: addr("192.0.2.1"), Dst: addr("10.0.0.1"), TTL: 64,
				IPLen: 56, IPHdrLen: 20, Frag: Fragment{ID: 0x1234, DontFrag: true},
				L4Len: 36, PayloadLen: 28, ICMPType: 11, ICMPCode: 1,
				Inner: Inner{Valid: true, NonFirstFragment: true, IPVersion: 4, Proto: ProtoTCP, Src: addr("10.0.0.1"), Dst: addr("10.0.0.2")}},
		},
		{
			name: "icmp echo request",
			data: icmpEchoV4(t, 8, 0x4242, 7), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 34, PayloadOff: 42, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoICMP, Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"), TTL: 64,
				IPLen: 32, IPHdrLen: 20, Frag: Fragment{ID: 0x1234, DontFrag: true},
				L4Len: 12, PayloadLen: 4, ICMPType: 8, ICMPID: 0x4242, ICMPSeq: 7},
		},
		{
			name: "icmp timestamp request carries id and sequence like echo",
			data: icmpEchoV4(t, 13, 9, 10), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 34, PayloadOff: 42, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoICMP, Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"), TTL: 64,
				IPLen: 32, IPHdrLen: 20, Frag: Fragment{ID: 0x1234, DontFrag: true},
				L4Len: 12, PayloadLen: 4, ICMPType: 13, ICMPID: 9, ICMPSeq: 10},
		},
		{
			name: "icmpv6 echo reply",
			data: icmp6Echo(t), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 54, PayloadOff: 62, EtherType: 0x86dd,
				IPVersion: 6, Proto: ProtoICMPv6, Src: addr("2001:db8::2"), Dst: addr("2001:db8::1"), TTL: 64,
				IPLen: 52, IPHdrLen: 40, L4Len: 12, PayloadLen: 4, ICMPType: 129, ICMPID: 77, ICMPSeq: 5},
		},
		{
			name: "icmpv6 destination unreachable quoting tcp",
			data: icmp6Error(t, 1, 4, tcpDataV6(t)[14:]), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 54, PayloadOff: 62, EtherType: 0x86dd,
				IPVersion: 6, Proto: ProtoICMPv6, Src: addr("2001:db8::ff"), Dst: addr("2001:db8::1"), TTL: 64,
				IPLen: 40 + 8 + 92, IPHdrLen: 40, L4Len: 100, PayloadLen: 92, ICMPType: 1, ICMPCode: 4,
				Inner: Inner{Valid: true, IPVersion: 6, Proto: ProtoTCP, Src: addr("2001:db8::1"), Dst: addr("2001:db8::2"),
					SrcPort: 443, DstPort: 50000, TCPSeq: 7000}},
		},
		{
			name: "icmpv6 packet too big quoting udp behind a destination options header",
			data: icmp6Error(t, 2, 0, udp6WithDestOpts(t)[14:]), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 54, PayloadOff: 62, EtherType: 0x86dd,
				IPVersion: 6, Proto: ProtoICMPv6, Src: addr("2001:db8::ff"), Dst: addr("2001:db8::1"), TTL: 64,
				IPLen: 40 + 8 + 40 + 16 + 8 + 3, IPHdrLen: 40, L4Len: 75, PayloadLen: 67, ICMPType: 2,
				Inner: Inner{Valid: true, IPVersion: 6, Proto: ProtoUDP, Src: addr("2001:db8::1"), Dst: addr("2001:db8::2"),
					SrcPort: 5353, DstPort: 5354}},
		},
		{
			name: "icmpv6 time exceeded quoting a non-first fragment: addresses only",
			data: icmp6Error(t, 3, 1, ipv6Fragment(t, 16, false)[14:]), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 54, PayloadOff: 62, EtherType: 0x86dd,
				IPVersion: 6, Proto: ProtoICMPv6, Src: addr("2001:db8::ff"), Dst: addr("2001:db8::1"), TTL: 64,
				IPLen: 40 + 8 + 64, IPHdrLen: 40, L4Len: 72, PayloadLen: 64, ICMPType: 3, ICMPCode: 1,
				Inner: Inner{Valid: true, NonFirstFragment: true, IPVersion: 6, Proto: ProtoTCP,
					Src: addr("2001:db8::1"), Dst: addr("2001:db8::2")}},
		},
		{
			name: "vlan: 802.1ad s-tag then 802.1q c-tag, outermost id reported",
			data: vlanTCP(t), link: LinkEthernet,
			want: Packet{L3Off: 22, L4Off: 42, PayloadOff: 62, VLANs: 2, VLANID: 100, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoTCP, Src: addr("1.1.1.1"), Dst: addr("2.2.2.2"), TTL: 64,
				IPLen: 40, IPHdrLen: 20, Frag: Fragment{ID: 0x1234, DontFrag: true},
				SrcPort: 12345, DstPort: 8080, L4Len: 20, TCPFlags: TCPAck, Seq: 1, Ack: 1, Window: 64240, TCPHdrLen: 20},
		},
		{
			name: "vlan: three tags with the old 0x9100 tpid outermost",
			data: threeTagsICMP(t), link: LinkEthernet,
			want: Packet{L3Off: 26, L4Off: 46, PayloadOff: 54, VLANs: 3, VLANID: 1, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoICMP, Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"), TTL: 64,
				IPLen: 32, IPHdrLen: 20, Frag: Fragment{ID: 0x1234, DontFrag: true},
				L4Len: 12, PayloadLen: 4, ICMPType: 8, ICMPID: 1, ICMPSeq: 2},
		},
		{
			name: "ipv6 hop-by-hop, destination options and routing before tcp",
			data: tcp6WithExtensions(t), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 86, PayloadOff: 106, EtherType: 0x86dd,
				IPVersion: 6, Proto: ProtoTCP, Src: addr("2001:db8::1"), Dst: addr("2001:db8::2"), TTL: 64,
				IPLen: 112, IPHdrLen: 72, HasHopByHop: true, HasRouting: true, HasDestOpts: true,
				SrcPort: 1, DstPort: 2, L4Len: 40, PayloadLen: 20, TCPFlags: TCPAck, Seq: 3, Ack: 4, Window: 64240, TCPHdrLen: 20},
		},
		{
			name: "ipv6 first fragment: transport header decoded from it",
			data: ipv6Fragment(t, 0, true), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 62, PayloadOff: 82, EtherType: 0x86dd,
				IPVersion: 6, Proto: ProtoTCP, Src: addr("2001:db8::1"), Dst: addr("2001:db8::2"), TTL: 64,
				IPLen: 40 + 8 + 36, IPHdrLen: 48, Frag: Fragment{IsFragment: true, More: true, ID: 0xabcdef01, HdrOff: 40, NHOff: 6},
				SrcPort: 1, DstPort: 2, L4Len: 36, PayloadLen: 16, TCPFlags: TCPAck, Seq: 3, Ack: 4, Window: 64240, TCPHdrLen: 20},
		},
		{
			name: "ipv6 non-first fragment: no transport header",
			data: ipv6Fragment(t, 16, false), link: LinkEthernet,
			want: Packet{L3Off: 14, EtherType: 0x86dd,
				IPVersion: 6, Proto: ProtoTCP, Src: addr("2001:db8::1"), Dst: addr("2001:db8::2"), TTL: 64,
				IPLen: 40 + 8 + 16, IPHdrLen: 48, Frag: Fragment{IsFragment: true, Offset: 16, ID: 0xabcdef01, HdrOff: 40, NHOff: 6}},
		},
		{
			name: "ipv6 atomic fragment is a whole datagram",
			data: ipv6Fragment(t, 0, false), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 62, PayloadOff: 82, EtherType: 0x86dd,
				IPVersion: 6, Proto: ProtoTCP, Src: addr("2001:db8::1"), Dst: addr("2001:db8::2"), TTL: 64,
				IPLen: 40 + 8 + 36, IPHdrLen: 48, Frag: Fragment{ID: 0xabcdef01, HdrOff: 40, NHOff: 6},
				SrcPort: 1, DstPort: 2, L4Len: 36, PayloadLen: 16, TCPFlags: TCPAck, Seq: 3, Ack: 4, Window: 64240, TCPHdrLen: 20},
		},
		{
			name: "ipv6 fragment header behind hop-by-hop: where reassembly patches the chain",
			data: serialize(t, ether(layers.EthernetTypeIPv6), ip6("2001:db8::1", "2001:db8::2", layers.IPProtocolIPv6HopByHop),
				ext6(layers.IPProtocolIPv6Fragment, 8), frag6(layers.IPProtocolUDP, 8, false, 9), gopacket.Payload("01234567")),
			link: LinkEthernet,
			want: Packet{L3Off: 14, EtherType: 0x86dd, HasHopByHop: true,
				IPVersion: 6, Proto: ProtoUDP, Src: addr("2001:db8::1"), Dst: addr("2001:db8::2"), TTL: 64,
				IPLen: 40 + 8 + 8 + 8, IPHdrLen: 56, Frag: Fragment{IsFragment: true, Offset: 8, ID: 9, HdrOff: 48, NHOff: 40}},
		},
		{
			name: "ipv4 non-first fragment: no transport header",
			data: ipv4Fragment(t, 2, true, []byte("0123456789abcdef")), link: LinkEthernet,
			want: Packet{L3Off: 14, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoTCP, Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"), TTL: 64,
				IPLen: 36, IPHdrLen: 20, Frag: Fragment{IsFragment: true, More: true, Offset: 16, ID: 0x1234}},
		},
		{
			name: "ipv4 first fragment holding 8 bytes of a tcp header: not truncated, header in the next fragment",
			data: ipv4Fragment(t, 0, true, tcpSYNv4(t)[34:42]), link: LinkEthernet,
			want: Packet{L3Off: 14, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoTCP, Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"), TTL: 64,
				IPLen: 28, IPHdrLen: 20, Frag: Fragment{IsFragment: true, More: true, ID: 0x1234}, L4Len: 8},
		},
		{
			name: "ipv4 first fragment of udp: length field is the datagram's, not checked",
			data: ipv4FirstFragmentUDP(t), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 34, PayloadOff: 42, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoUDP, Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"), TTL: 64,
				IPLen: 44, IPHdrLen: 20, Frag: Fragment{IsFragment: true, More: true, ID: 0x1234},
				SrcPort: 1000, DstPort: 2000, L4Len: 24, PayloadLen: 16, UDPLen: 1000},
		},
		{
			name: "ipv4 options",
			data: ipv4WithOptions(t), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 38, PayloadOff: 46, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoUDP, Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"), TTL: 64,
				IPLen: 34, IPHdrLen: 24, IPOptions: true, Frag: Fragment{ID: 0x1234, DontFrag: true},
				SrcPort: 1000, DstPort: 2000, L4Len: 10, PayloadLen: 2, UDPLen: 10},
		},
		{
			name: "sctp: ports only",
			data: sctp4(t), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 34, PayloadOff: 46, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoSCTP, Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"), TTL: 64,
				IPLen: 36, IPHdrLen: 20, Frag: Fragment{ID: 0x1234, DontFrag: true},
				SrcPort: 2905, DstPort: 6303, L4Len: 16, PayloadLen: 4},
		},
		{
			name: "udp-lite: ports and coverage",
			data: udpLite6(t, 8), link: LinkIPv6,
			want: Packet{L4Off: 40, PayloadOff: 48, EtherType: 0x86dd,
				IPVersion: 6, Proto: ProtoUDPLite, Src: addr("2001:db8::1"), Dst: addr("2001:db8::2"), TTL: 64,
				IPLen: 51, IPHdrLen: 40, SrcPort: 7, DstPort: 9, L4Len: 11, PayloadLen: 3, UDPLen: 8},
		},
		{
			name: "gre: its base header, L4Off where it starts",
			data: gre4(t), link: LinkEthernet,
			want: Packet{L3Off: 14, L4Off: 34, EtherType: 0x0800,
				IPVersion: 4, Proto: ProtoGRE, Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"), TTL: 64,
				IPLen: 28, IPHdrLen: 20, Frag: Fragment{ID: 0x1234, DontFrag: true}, L4Len: 8,
				GRE: GRE{Proto: 0x0800}},
		},
		{
			name: "arp is not ip",
			data: serialize(t, ether(layers.EthernetTypeARP), &layers.ARP{AddrType: layers.LinkTypeEthernet,
				Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: 1,
				SourceHwAddress: macA, SourceProtAddress: []byte{10, 0, 0, 1}, DstHwAddress: macB, DstProtAddress: []byte{10, 0, 0, 2}}),
			link: LinkEthernet,
			want: Packet{Kind: KindNotIP, EtherType: 0x0806, L3Off: 14},
		},
		{
			name: "802.3 length field (llc frames: is-is, stp) is not ip",
			data: append(append([]byte(nil), tcpSYNv4(t)[:12]...), 0x00, 0x30, 0xfe, 0xfe, 0x03),
			link: LinkEthernet,
			want: Packet{Kind: KindNotIP, EtherType: 0x0030, L3Off: 14},
		},
		{
			name: "802.11 is an unsupported link",
			data: tcpSYNv4(t), link: 105,
			want: Packet{Kind: KindUnsupportedLink},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			p.Decode(tt.data, tt.link)
			if d := diffPackets(&p, &tt.want); d != "" {
				t.Errorf("Decode(%s):\n%s", p.String(), d)
			}
			if &p.Data[0] != &tt.data[0] || len(p.Data) != len(tt.data) {
				t.Errorf("Data does not alias the input")
			}
		})
	}
}

// TestDecodeLinkTypes decodes the same IP packet behind every link header
// Decode knows.
func TestDecodeLinkTypes(t *testing.T) {
	v4 := tcpSYNv4(t)[14:]
	v6 := tcpDataV6(t)[14:]
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	sll := func(proto uint16) []byte {
		h := make([]byte, 16)
		h[1] = 0 // to us
		binary.BigEndian.PutUint16(h[2:], 1)
		binary.BigEndian.PutUint16(h[4:], 6)
		binary.BigEndian.PutUint16(h[14:], proto)
		return h
	}
	sll2 := func(proto uint16) []byte {
		h := make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:], proto)
		binary.BigEndian.PutUint16(h[8:], 1)
		return h
	}
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	tests := []struct {
		name    string
		data    []byte
		link    LinkType
		kind    Kind
		version uint8
		l3off   int
		vlans   uint8
	}{
		{"raw ipv4", v4, LinkRaw, KindOK, 4, 0, 0},
		{"raw ipv6", v6, LinkRaw, KindOK, 6, 0, 0},
		{"nfqueue ipv4", v4, LinkIP, KindOK, 4, 0, 0},
		{"nfqueue ipv6", v6, LinkIP, KindOK, 6, 0, 0},
		{"raw version 5", cat([]byte{0x55}, v4[1:]), LinkRaw, KindMalformed, 0, 0, 0},
		{"raw empty", nil, LinkRaw, KindTruncated, 0, 0, 0},
		{"linktype ipv4", v4, LinkIPv4, KindOK, 4, 0, 0},
		{"linktype ipv6", v6, LinkIPv6, KindOK, 6, 0, 0},
		{"linktype ipv4 holding ipv6", v6, LinkIPv4, KindMalformed, 0, 0, 0},
		{"linktype ipv6 holding ipv4", v4, LinkIPv6, KindMalformed, 0, 0, 0},
		{"ethertype ipv4 holding ipv6", cat(tcpSYNv4(t)[:14], v6), LinkEthernet, KindMalformed, 0, 14, 0},
		{"sll ipv4", cat(sll(0x0800), v4), LinkLinuxSLL, KindOK, 4, 16, 0},
		{"sll ipv6", cat(sll(0x86dd), v6), LinkLinuxSLL, KindOK, 6, 16, 0},
		{"sll with the vlan tag libpcap re-inserts", cat(sll(0x8100), []byte{0, 42, 0x08, 0x00}, v4), LinkLinuxSLL, KindOK, 4, 20, 1},
		{"sll arp", cat(sll(0x0806), make([]byte, 28)), LinkLinuxSLL, KindNotIP, 0, 16, 0},
		{"sll short", sll(0x0800)[:15], LinkLinuxSLL, KindTruncated, 0, 0, 0},
		{"sll2 ipv4", cat(sll2(0x0800), v4), LinkLinuxSLL2, KindOK, 4, 20, 0},
		{"sll2 ipv6", cat(sll2(0x86dd), v6), LinkLinuxSLL2, KindOK, 6, 20, 0},
		{"sll2 short", sll2(0x0800)[:19], LinkLinuxSLL2, KindTruncated, 0, 0, 0},
		{"null ipv4 little-endian", cat(le32(2), v4), LinkNull, KindOK, 4, 4, 0},
		{"null ipv4 big-endian", cat(be32(2), v4), LinkNull, KindOK, 4, 4, 0},
		{"null ipv6 netbsd", cat(le32(24), v6), LinkNull, KindOK, 6, 4, 0},
		{"null ipv6 freebsd", cat(le32(28), v6), LinkNull, KindOK, 6, 4, 0},
		{"null ipv6 darwin", cat(le32(30), v6), LinkNull, KindOK, 6, 4, 0},
		{"null unknown family", cat(le32(7), v4), LinkNull, KindNotIP, 0, 4, 0},
		{"null short", le32(2)[:3], LinkNull, KindTruncated, 0, 0, 0},
		{"loop ipv4", cat(be32(2), v4), LinkLoop, KindOK, 4, 4, 0},
		{"loop ipv6", cat(be32(24), v6), LinkLoop, KindOK, 6, 4, 0},
		{"ethernet short", tcpSYNv4(t)[:13], LinkEthernet, KindTruncated, 0, 0, 0},
		{"ethernet vlan tag cut", vlanTCP(t)[:17], LinkEthernet, KindTruncated, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			p.Decode(tt.data, tt.link)
			if p.Kind != tt.kind || p.IPVersion != tt.version || p.L3Off != tt.l3off || p.VLANs != tt.vlans {
				t.Fatalf("got kind %v version %d l3off %d vlans %d, want %v %d %d %d",
					p.Kind, p.IPVersion, p.L3Off, p.VLANs, tt.kind, tt.version, tt.l3off, tt.vlans)
			}
			if p.Kind != KindOK {
				return
			}
			// The same IP packet decodes the same whatever the link.
			var ref Packet
			ref.Decode(tt.data[tt.l3off:], LinkIP)
			if p.Src != ref.Src || p.Dst != ref.Dst || p.SrcPort != ref.SrcPort || p.Seq != ref.Seq ||
				p.L4Off-p.L3Off != ref.L4Off || p.PayloadLen != ref.PayloadLen {
				t.Errorf("decoded %v, decoding from the IP header gave %v", &p, &ref)
			}
		})
	}
}

// TestDecodeMalformed pins the header fields that make a packet impossible.
func TestDecodeMalformed(t *testing.T) {
	set := func(b []byte, off int, v ...byte) []byte {
		b = append([]byte(nil), b...)
		copy(b[off:], v)
		return b
	}
	syn := tcpSYNv4(t)
	dns := udpDNS(t)
	v6 := tcpDataV6(t)
	tests := []struct {
		name string
		data []byte
		want Kind
	}{
		{"ipv4 header length below 20", set(syn, 14, 0x44), KindMalformed},
		{"ipv4 total length below header length", set(syn, 16, 0, 19), KindMalformed},
		{"ipv4 header length beyond the capture", set(syn, 14, 0x4f)[:40], KindTruncated},
		{"tcp data offset below 20", set(syn, 34+12, 0x40), KindMalformed},
		{"tcp data offset beyond the ip payload", set(syn, 34+12, 0xf0), KindMalformed},
		{"tcp header beyond the ip total length", set(syn, 16, 0, 30), KindMalformed},
		{"udp length below 8", set(dns, 34+4, 0, 7), KindMalformed},
		{"udp length beyond the ip payload", set(dns, 34+4, 0, 38), KindMalformed},
		{"udp length shorter than the ip payload is allowed", set(dns, 34+4, 0, 30), KindOK},
		{"ipv6 payload length shorter than the tcp header", set(v6, 14+4, 0, 10), KindMalformed},
		{"ipv6 extension header longer than the payload", set(tcp6WithExtensions(t), 54+1, 200), KindMalformed},
		{"ipv6 two fragment headers", twoFragmentHeaders(t), KindMalformed},
		{"icmp shorter than its 8-byte header", set(icmpEchoV4(t, 8, 1, 1), 16, 0, 26), KindMalformed},
		{"ipv6 with version 4 in the header", set(v6, 14, 0x45), KindMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			p.Decode(tt.data, LinkEthernet)
			if p.Kind != tt.want {
				t.Errorf("got %v (%v), want %v", p.Kind, &p, tt.want)
			}
		})
	}
}

// TestTCPOptionsTolerateGarbage: the option parser stops at the first
// option whose length is impossible, keeps what it had, and never reads
// past the header.
func TestTCPOptionsTolerateGarbage(t *testing.T) {
	tests := []struct {
		name string
		opts []byte
		want TCPOptions
	}{
		{"empty", nil, TCPOptions{}},
		{"end of list stops", []byte{0, 3, 3, 7}, TCPOptions{}},
		{"nops then wscale", []byte{1, 1, 1, 3, 3, 7}, TCPOptions{WScale: 7, HasWScale: true}},
		{"length 0 stops", []byte{3, 3, 7, 2, 0, 5, 0xb4}, TCPOptions{WScale: 7, HasWScale: true}},
		{"length 1 stops", []byte{2, 1, 5, 0xb4}, TCPOptions{}},
		{"length past the end stops", []byte{3, 3, 7, 8, 40, 0, 0}, TCPOptions{WScale: 7, HasWScale: true}},
		{"kind without a length byte stops", []byte{3, 3, 7, 8}, TCPOptions{WScale: 7, HasWScale: true}},
		{"mss with a wrong length is skipped", []byte{2, 3, 5, 3, 3, 2}, TCPOptions{WScale: 2, HasWScale: true}},
		{"empty sack option: no blocks", []byte{5, 2, 1, 1}, TCPOptions{}},
		{"sack with a partial block is ignored", []byte{5, 6, 0, 0, 0, 1}, TCPOptions{}},
		{"unknown option skipped", []byte{34, 4, 1, 2, 2, 4, 5, 0xb4}, TCPOptions{MSS: 1460}},
		{"wscale above 14 is reported as sent", []byte{3, 3, 15}, TCPOptions{WScale: 15, HasWScale: true}},
		{"nop, nop, timestamps (the fast path)", []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}, TCPOptions{HasTS: true, TSVal: 1, TSEcr: 2}},
		{"timestamps, eol, eol", []byte{8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0}, TCPOptions{HasTS: true, TSVal: 1, TSEcr: 2}},
		{"four sack blocks", append([]byte{5, 34}, bytes.Repeat([]byte{0, 0, 0, 9}, 8)...),
			TCPOptions{NSACK: 4, SACK: [4]SACKBlock{{9, 9}, {9, 9}, {9, 9}, {9, 9}}}},
		{"five sack blocks (impossible in 40 bytes) keep four", append([]byte{5, 42}, bytes.Repeat([]byte{0, 0, 0, 9}, 10)...),
			TCPOptions{NSACK: 4, SACK: [4]SACKBlock{{9, 9}, {9, 9}, {9, 9}, {9, 9}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o TCPOptions
			o.parse(tt.opts)
			if o != tt.want {
				t.Errorf("got %+v, want %+v", o, tt.want)
			}
		})
	}
}

// TestSnaplenCutPayloadIsOK: a capture cut inside the transport payload
// still decodes, with lengths from the headers and Payload as captured.
func TestSnaplenCutPayloadIsOK(t *testing.T) {
	full := tcpDataV6(t)
	var p Packet
	p.Decode(full[:len(full)-5], LinkEthernet)
	if p.Kind != KindOK || p.PayloadLen != 12 || p.L4Len != 52 || p.IPLen != 92 {
		t.Fatalf("got %v kind %v PayloadLen %d L4Len %d IPLen %d", &p, p.Kind, p.PayloadLen, p.L4Len, p.IPLen)
	}
	if got := string(p.Payload()); got != "hello, " {
		t.Errorf("Payload() = %q, want the captured %q", got, "hello, ")
	}
	p.Decode(full, LinkEthernet)
	if got := string(p.Payload()); got != "hello, world" {
		t.Errorf("Payload() = %q", got)
	}
}

// TestTruncatedAtEveryByte cuts packets at every length: a cut inside the
// headers the firewall needs is KindTruncated; a cut after them decodes the
// same headers as the whole packet; nothing panics.
func TestTruncatedAtEveryByte(t *testing.T) {
	pkts := map[string][]byte{
		"tcp-syn-v4":         tcpSYNv4(t),
		"tcp-data-v6":        tcpDataV6(t),
		"udp-dns":            udpDNS(t),
		"icmp-error":         icmpErrorV4(t),
		"icmpv6-error":       icmp6Error(t, 1, 4, tcpDataV6(t)[14:]),
		"vlan":               vlanTCP(t),
		"ipv6-ext":           tcp6WithExtensions(t),
		"ipv6-frag-nonfirst": ipv6Fragment(t, 16, false),
		"ipv4-options":       ipv4WithOptions(t),
		"sctp":               sctp4(t),
	}
	for name, data := range pkts {
		t.Run(name, func(t *testing.T) {
			var full Packet
			full.Decode(data, LinkEthernet)
			if full.Kind != KindOK {
				t.Fatalf("whole packet: %v", full.Kind)
			}
			// Where the headers the firewall needs end.
			need := full.PayloadOff
			if need == 0 {
				need = full.L3Off + full.IPHdrLen
			}
			for n := range len(data) {
				var p Packet
				p.Decode(data[:n], LinkEthernet)
				if n < need {
					if p.Kind != KindTruncated {
						t.Errorf("cut at %d of %d (headers end at %d): got %v, want truncated", n, len(data), need, p.Kind)
					}
					continue
				}
				if p.Kind != KindOK || p.Src != full.Src || p.Dst != full.Dst || p.SrcPort != full.SrcPort ||
					p.DstPort != full.DstPort || p.Seq != full.Seq || p.TCPOpts != full.TCPOpts ||
					p.PayloadLen != full.PayloadLen || p.L4Len != full.L4Len || p.ICMPType != full.ICMPType {
					t.Errorf("cut at %d of %d: got %v, want %v", n, len(data), &p, &full)
				}
				if full.Inner.Valid && p.Inner.Valid {
					want := full.Inner
					if p.Inner.TCPSeq == 0 {
						// A quote cut after the ports but before the
						// sequence number still names its connection.
						want.TCPSeq = 0
					}
					if p.Inner != want {
						t.Errorf("cut at %d: inner %+v, want %+v", n, p.Inner, full.Inner)
					}
				}
				// gopacket pads frames to 60 bytes: the padding is no payload.
				if want := min(n, full.L3Off+full.IPLen) - need; full.PayloadOff != 0 && len(p.Payload()) != want {
					t.Errorf("cut at %d: Payload() has %d bytes, want the %d captured", n, len(p.Payload()), want)
				}
			}
		})
	}
}

// TestICMPQuoteNeedsThePorts: the quote is usable once it holds the quoted
// IP header and what the kernel's nf_ct_get_tuplepr reads of the transport
// header: the 4 bytes of ports for TCP and UDP (RFC 792 promises 8, but
// the kernel finds the connection with fewer), the 8-byte header for
// ICMP; not before.
func TestICMPQuoteNeedsThePorts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		quote   []byte
		errorOf func(testing.TB, uint8, uint8, []byte) []byte
		l4      int // where the quoted transport header starts
		need    int // bytes of it needed
	}{
		{"v4 quoting tcp", tcpSYNv4(t)[14:], icmp4Error, 20, 4},
		{"v6 quoting udp behind destination options", udp6WithDestOpts(t)[14:], icmp6Error, 40 + 16, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for n := 0; n <= len(tc.quote); n++ {
				var p Packet
				p.Decode(tc.errorOf(t, 3, 0, tc.quote[:n]), LinkEthernet)
				if want := n >= tc.l4+tc.need; p.Inner.Valid != want {
					t.Errorf("quote of %d bytes: Inner.Valid %v, want %v", n, p.Inner.Valid, want)
				}
				if !p.Inner.Valid && p.Inner != (Inner{}) {
					t.Errorf("quote of %d bytes: invalid Inner not zero: %+v", n, p.Inner)
				}
			}
		})
	}
}

func padTo(b []byte, n int) []byte {
	for len(b) < n {
		b = append(b, 0)
	}
	return b
}

func serializeUDP4(t testing.TB, payload string) []byte {
	ip := ip4("10.0.0.1", "10.0.0.2", layers.IPProtocolUDP)
	return serialize(t, ether(layers.EthernetTypeIPv4), ip, udp(1000, 2000, ip), gopacket.Payload(payload))
}

// icmp4Error is an ICMP error from 192.0.2.1 to 10.0.0.1 quoting q.
func icmp4Error(t testing.TB, typ, code uint8, q []byte) []byte {
	return serialize(t, ether(layers.EthernetTypeIPv4), ip4("192.0.2.1", "10.0.0.1", layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}, gopacket.Payload(q))
}

// icmp6Error is an ICMPv6 error from 2001:db8::ff to 2001:db8::1 quoting q.
func icmp6Error(t testing.TB, typ, code uint8, q []byte) []byte {
	ip := ip6("2001:db8::ff", "2001:db8::1", layers.IPProtocolICMPv6)
	return serialize(t, ether(layers.EthernetTypeIPv6), ip, icmp6(typ, code, ip), raw{0, 0, 0x05, 0xdc}, gopacket.Payload(q))
}

func icmpEchoV4(t testing.TB, typ uint8, id, seq uint16) []byte {
	return serialize(t, ether(layers.EthernetTypeIPv4), ip4("10.0.0.1", "10.0.0.2", layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: seq}, gopacket.Payload("ping"))
}

func icmp6Echo(t testing.TB) []byte {
	ip := ip6("2001:db8::2", "2001:db8::1", layers.IPProtocolICMPv6)
	return serialize(t, ether(layers.EthernetTypeIPv6), ip, icmp6(129, 0, ip),
		&layers.ICMPv6Echo{Identifier: 77, SeqNumber: 5}, gopacket.Payload("pong"))
}

func threeTagsICMP(t testing.TB) []byte {
	return serialize(t, ether(0x9100),
		&layers.Dot1Q{VLANIdentifier: 1, Type: layers.EthernetTypeQinQ},
		&layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4},
		ip4("10.0.0.1", "10.0.0.2", layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 2}, gopacket.Payload("ping"))
}

func tcp6WithExtensions(t testing.TB) []byte {
	ip := ip6("2001:db8::1", "2001:db8::2", layers.IPProtocolIPv6HopByHop)
	return serialize(t, ether(layers.EthernetTypeIPv6), ip,
		ext6(layers.IPProtocolIPv6Destination, 8),
		ext6(layers.IPProtocolIPv6Routing, 16),
		raw{byte(layers.IPProtocolTCP), 0, 4, 0, 0, 0, 0, 0}, // segment routing, no segments left
		tcp(1, 2, "A", 3, 4, ip), gopacket.Payload(bytes.Repeat([]byte("x"), 20)))
}

func udp6WithDestOpts(t testing.TB) []byte {
	ip := ip6("2001:db8::1", "2001:db8::2", layers.IPProtocolIPv6Destination)
	return serialize(t, ether(layers.EthernetTypeIPv6), ip, ext6(layers.IPProtocolUDP, 16),
		udp(5353, 5354, ip), gopacket.Payload("abc"))
}

// ipv6Fragment is a fragment of a TCP datagram with id 0xabcdef01: at
// offset 0 the TCP header and 16 bytes, elsewhere 16 bytes of data.
func ipv6Fragment(t testing.TB, offset uint16, more bool) []byte {
	ip := ip6("2001:db8::1", "2001:db8::2", layers.IPProtocolIPv6Fragment)
	ls := []gopacket.SerializableLayer{ether(layers.EthernetTypeIPv6), ip, frag6(layers.IPProtocolTCP, offset, more, 0xabcdef01)}
	if offset == 0 {
		ls = append(ls, tcp(1, 2, "A", 3, 4, ip))
	}
	ls = append(ls, gopacket.Payload("0123456789abcdef"))
	return serialize(t, ls...)
}

func twoFragmentHeaders(t testing.TB) []byte {
	ip := ip6("2001:db8::1", "2001:db8::2", layers.IPProtocolIPv6Fragment)
	return serialize(t, ether(layers.EthernetTypeIPv6), ip,
		frag6(layers.IPProtocolIPv6Fragment, 0, true, 1), frag6(layers.IPProtocolTCP, 0, true, 2),
		tcp(1, 2, "A", 3, 4, ip))
}

// ipv4Fragment is a fragment of a TCP datagram 10.0.0.1 > 10.0.0.2 with id
// 0x1234 at offset off8*8 carrying data.
func ipv4Fragment(t testing.TB, off8 uint16, more bool, data []byte) []byte {
	ip := ip4("10.0.0.1", "10.0.0.2", layers.IPProtocolTCP)
	ip.Flags, ip.FragOffset = 0, off8
	if more {
		ip.Flags = layers.IPv4MoreFragments
	}
	return serialize(t, ether(layers.EthernetTypeIPv4), ip, gopacket.Payload(data))
}

func ipv4FirstFragmentUDP(t testing.TB) []byte {
	ip := ip4("10.0.0.1", "10.0.0.2", layers.IPProtocolUDP)
	ip.Flags = layers.IPv4MoreFragments
	h := []byte{0x03, 0xe8, 0x07, 0xd0, 0x03, 0xe8, 0, 0} // 1000 > 2000, length 1000
	return serialize(t, ether(layers.EthernetTypeIPv4), ip, raw(h), gopacket.Payload("0123456789abcdef"))
}

func ipv4WithOptions(t testing.TB) []byte {
	ip := ip4("10.0.0.1", "10.0.0.2", layers.IPProtocolUDP)
	ip.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}} // router alert
	return serialize(t, ether(layers.EthernetTypeIPv4), ip, udp(1000, 2000, ip), gopacket.Payload("ab"))
}

func sctp4(t testing.TB) []byte {
	return serialize(t, ether(layers.EthernetTypeIPv4), ip4("10.0.0.1", "10.0.0.2", layers.IPProtocolSCTP),
		&layers.SCTP{SrcPort: 2905, DstPort: 6303, VerificationTag: 1}, gopacket.Payload("\x0b\x00\x00\x04")) // COOKIE ACK
}

func gre4(t testing.TB) []byte {
	return serialize(t, ether(layers.EthernetTypeIPv4), ip4("10.0.0.1", "10.0.0.2", layers.IPProtocolGRE),
		raw{0, 0, 0x08, 0x00, 0, 0, 0, 0})
}

// udpLite6 is a raw IPv6 UDP-Lite datagram 7 > 9 with checksum coverage
// cov and a correct checksum (computed by refChecksum).
func udpLite6(t testing.TB, cov uint16) []byte {
	ip := ip6("2001:db8::1", "2001:db8::2", layers.IPProtocolUDPLite)
	h := []byte{0, 7, 0, 9, byte(cov >> 8), byte(cov), 0, 0, 'a', 'b', 'c'}
	b := serialize(t, ip, raw(h))
	c := cov
	if c == 0 {
		c = uint16(len(h))
	}
	ck := refChecksum(pseudo6(b[8:40], uint8(ProtoUDPLite), len(h)), b[40:40+int(c)])
	binary.BigEndian.PutUint16(b[46:], ck)
	return b
}

// FuzzTCPOptionsFastPaths: the fast paths in parse (NOP, NOP, timestamps;
// Linux's SYN layout) decode exactly what walking the options does. Seeds
// are the two layouts, which the fuzzer then perturbs byte by byte.
func FuzzTCPOptionsFastPaths(f *testing.F) {
	f.Add([]byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Add([]byte{2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 3, 0xe8, 0, 0, 0, 0, 1, 3, 3, 7})
	f.Add([]byte{2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 3, 0xe8, 0, 0, 0, 0, 1, 3, 4, 7})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 40 {
			b = b[:40]
		}
		var fast, all TCPOptions
		fast.parse(b)
		all.parseAll(b)
		if fast != all {
			t.Fatalf("options % x: parse %+v, parseAll %+v", b, fast, all)
		}
	})
}
