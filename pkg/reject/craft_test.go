package reject

import (
	"bytes"
	"net"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/statewall/statewall/pkg/packet"
)

func TestAppendRST(t *testing.T) {
	// IPv4 with options: a router alert.
	withOpts := func() []byte {
		ip := ip4(cli4, srv4, layers.IPProtocolTCP)
		ip.Options = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}
		return serialize(t, ip, tcpSeg(40000, 8080, "S", 1000, 0, ip))
	}
	// IPv6 with a hop-by-hop and a destination options header.
	withExt := func() []byte {
		ip := ip6(cli6, srv6, layers.IPProtocolIPv6HopByHop)
		return serialize(t, ip, ext6(layers.IPProtocolIPv6Destination, 8), ext6(layers.IPProtocolTCP, 16),
			tcpSeg(40000, 8080, "S", 1000, 0, ip))
	}
	frag4 := func(flags layers.IPv4Flag, off uint16) []byte {
		ip := ip4(cli4, srv4, layers.IPProtocolTCP)
		ip.Flags, ip.FragOffset = flags, off
		return serialize(t, ip, tcpSeg(40000, 8080, "S", 1000, 0, ip), raw(make([]byte, 64)))
	}
	to4 := func(dst string) []byte {
		ip := ip4(cli4, dst, layers.IPProtocolTCP)
		return serialize(t, ip, tcpSeg(40000, 8080, "S", 1000, 0, ip))
	}
	to6 := func(src, dst string) []byte {
		ip := ip6(src, dst, layers.IPProtocolTCP)
		return serialize(t, ip, tcpSeg(40000, 8080, "S", 1000, 0, ip))
	}
	tests := []struct {
		name     string
		in       []byte
		ok       bool
		flags    uint8
		seq, ack uint32
	}{
		// No ACK in the segment: RST|ACK acknowledging what it occupied.
		{"v4 SYN", tcp4(t, "S", 1000, 0, 0), true, packet.TCPRst | packet.TCPAck, 0, 1001},
		{"v6 SYN", tcp6(t, "S", 1000, 0, 0), true, packet.TCPRst | packet.TCPAck, 0, 1001},
		{"v4 SYN with data", tcp4(t, "S", 0xfffffff0, 0, 100), true, packet.TCPRst | packet.TCPAck, 0, 101 - 0x10},
		{"v4 SYN|FIN", tcp4(t, "SF", 1000, 0, 10), true, packet.TCPRst | packet.TCPAck, 0, 1012},
		{"v6 FIN without ACK", tcp6(t, "F", 1000, 0, 5), true, packet.TCPRst | packet.TCPAck, 0, 1006},
		{"v4 null scan", tcp4(t, "", 1000, 0, 0), true, packet.TCPRst | packet.TCPAck, 0, 1000},
		// ACK in the segment: a plain RST at the sequence number it acks.
		{"v4 ACK data", tcp4(t, "PA", 1000, 5000, 100), true, packet.TCPRst, 5000, 0},
		{"v6 ACK data", tcp6(t, "PA", 1000, 5000, 1200), true, packet.TCPRst, 5000, 0},
		{"v4 FIN|ACK", tcp4(t, "FA", 1000, 5000, 0), true, packet.TCPRst, 5000, 0},
		{"v6 SYN|ACK", tcp6(t, "SA", 1000, 5000, 0), true, packet.TCPRst, 5000, 0},
		{"v4 IP options", withOpts(), true, packet.TCPRst | packet.TCPAck, 0, 1001},
		{"v6 extension headers", withExt(), true, packet.TCPRst | packet.TCPAck, 0, 1001},
		// Never answered.
		{"v4 RST", tcp4(t, "R", 1000, 0, 0), false, 0, 0, 0},
		{"v6 RST|ACK", tcp6(t, "RA", 1000, 5000, 0), false, 0, 0, 0},
		{"v4 first fragment", frag4(layers.IPv4MoreFragments, 0), false, 0, 0, 0},
		{"v4 non-first fragment", frag4(0, 100), false, 0, 0, 0},
		{"v4 to broadcast", to4("255.255.255.255"), false, 0, 0, 0},
		{"v4 to multicast", to4("224.0.0.1"), false, 0, 0, 0},
		{"v6 to multicast", to6(cli6, "ff02::1"), false, 0, 0, 0},
		{"v6 from unspecified", to6("::", srv6), false, 0, 0, 0},
		{"udp", udp4(t, 10), false, 0, 0, 0},
		{"truncated header", tcp4(t, "S", 1000, 0, 0)[:30], false, 0, 0, 0},
		{"empty", nil, false, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("keep")
			out, ok := AppendRST(prefix, tt.in)
			if ok != tt.ok {
				t.Fatalf("AppendRST ok = %v, want %v", ok, tt.ok)
			}
			if !bytes.HasPrefix(out, []byte("keep")) {
				t.Fatalf("dst's bytes not kept: %q", out)
			}
			out = out[4:]
			if !ok {
				if len(out) != 0 {
					t.Fatalf("no answer, but %d bytes appended", len(out))
				}
				return
			}
			var in packet.Packet
			in.Decode(tt.in, packet.LinkIP)
			q := checkAnswer(t, tt.in, out)
			if q.Proto != packet.ProtoTCP || q.SrcPort != in.DstPort || q.DstPort != in.SrcPort {
				t.Errorf("answer %v %d > %d", q.Proto, q.SrcPort, q.DstPort)
			}
			if q.TCPFlags != tt.flags || q.Seq != tt.seq || q.Ack != tt.ack {
				t.Errorf("answer [%s] seq %d ack %d, want [%s] seq %d ack %d",
					packet.TCPFlagsString(q.TCPFlags), q.Seq, q.Ack, packet.TCPFlagsString(tt.flags), tt.seq, tt.ack)
			}
			// The same fields as gopacket reads them, and what pkg/packet
			// does not decode.
			gp := gopacketDecode(t, out)
			tcp, _ := gp.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if tcp == nil {
				t.Fatal("gopacket finds no TCP")
			}
			if !tcp.RST || tcp.ACK != (tt.flags&packet.TCPAck != 0) || tcp.SYN || tcp.FIN || tcp.PSH ||
				tcp.Window != 0 || tcp.Urgent != 0 || tcp.DataOffset != 5 || len(tcp.Payload) != 0 ||
				tcp.Seq != tt.seq || tcp.Ack != tt.ack {
				t.Errorf("gopacket TCP: %+v", tcp)
			}
			if q.IPVersion == 4 {
				ip := gp.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				if ip.IHL != 5 || ip.TOS != 0 || ip.Flags != layers.IPv4DontFragment || ip.FragOffset != 0 ||
					ip.Id != 0 || ip.Length != RSTLen4 || ip.Protocol != layers.IPProtocolTCP {
					t.Errorf("gopacket IPv4: %+v", ip)
				}
			} else {
				ip := gp.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
				if ip.TrafficClass != 0 || ip.FlowLabel != 0 || ip.Length != 20 || ip.NextHeader != layers.IPProtocolTCP ||
					len(out) != RSTLen6 {
					t.Errorf("gopacket IPv6: %+v", ip)
				}
			}
		})
	}
}

// TestAppendRSTCutCopy: NFQUEUE copies the first bytes of a packet only
// (the daemon asks for 512); the RST acknowledges what the IP header
// says the segment held, not what the copy holds.
func TestAppendRSTCutCopy(t *testing.T) {
	for _, in := range [][]byte{tcp4(t, "S", 1000, 0, 1000), tcp6(t, "S", 1000, 0, 1000)} {
		out, ok := AppendRST(nil, in[:100])
		if !ok {
			t.Fatal("no RST")
		}
		if q := checkAnswer(t, in, out); q.Ack != 1000+1+1000 {
			t.Errorf("ack %d, want %d", q.Ack, 2001)
		}
	}
}

func TestAppendICMP(t *testing.T) {
	frag4 := func(flags layers.IPv4Flag, off uint16) []byte {
		ip := ip4(cli4, srv4, layers.IPProtocolUDP)
		ip.Flags, ip.FragOffset = flags, off
		return serialize(t, ip, udpDgram(40000, 53, ip), raw(make([]byte, 64)))
	}
	frag6 := func(off uint16) []byte {
		ip := ip6(cli6, srv6, layers.IPProtocolIPv6Fragment)
		fh := raw{byte(layers.IPProtocolUDP), 0, byte(off >> 5), byte(off<<3) | 1, 0, 0, 0, 9}
		return serialize(t, ip, fh, raw(make([]byte, 64)))
	}
	withTOS := func() []byte {
		ip := ip4(cli4, srv4, layers.IPProtocolUDP)
		ip.TOS = 0xb8 | 0x02 // DSCP EF, ECN ECT(0)
		return serialize(t, ip, udpDgram(40000, 53, ip), raw(payload(20)))
	}
	udpFrom4 := func(src, dst string) []byte {
		ip := ip4(src, dst, layers.IPProtocolUDP)
		return serialize(t, ip, udpDgram(68, 67, ip), raw(payload(20)))
	}
	udpFrom6 := func(src, dst string) []byte {
		ip := ip6(src, dst, layers.IPProtocolUDP)
		return serialize(t, ip, udpDgram(546, 547, ip), raw(payload(20)))
	}
	tests := []struct {
		name  string
		in    []byte
		code  Code
		ok    bool
		typ   uint8
		value uint8 // the code in the answer
		quote int   // bytes quoted
		tos   uint8
	}{
		{"v4 udp", udp4(t, 100), 0, true, 3, 3, 128, 0xc0},
		{"v6 udp", udp6(t, 100), 0, true, 1, 4, 148, 0},
		{"v4 udp filter-prohib", udp4(t, 100), FilterProhib, true, 3, 13, 128, 0xc0},
		{"v4 udp host-prohib", udp4(t, 100), HostProhib, true, 3, 10, 128, 0xc0},
		{"v4 udp net-unr", udp4(t, 100), NetUnr, true, 3, 0, 128, 0xc0},
		{"v6 udp admin-unr", udp6(t, 100), AdminUnr6, true, 1, 1, 148, 0},
		{"v6 udp noroute-unr", udp6(t, 100), NoRouteUnr6, true, 1, 0, 148, 0},
		{"v6 udp, IPv4 code", udp6(t, 100), FilterProhib, true, 1, 4, 148, 0},
		{"v4 udp, IPv6 code", udp4(t, 100), AdminUnr6, true, 3, 3, 128, 0xc0},
		{"v4 udp, unnamed code", udp4(t, 100), 4<<8 | 4, true, 3, 3, 128, 0xc0},
		{"v4 TOS kept", withTOS(), 0, true, 3, 3, 48, 0xc0 | (0xba & 0x1e)},
		{"v4 big", udp4(t, 1400), 0, true, 3, 3, MaxQuote4, 0xc0},
		{"v6 big", udp6(t, 1400), 0, true, 1, 4, MaxQuote6, 0},
		{"v4 tcp", tcp4(t, "S", 1, 0, 0), PortUnr, true, 3, 3, 44, 0xc0},
		{"v6 tcp", tcp6(t, "S", 1, 0, 0), PortUnr6, true, 1, 4, 64, 0},
		{"v4 echo request", icmp4Msg(t, cli4, srv4, 8, 0, payload(56)), 0, true, 3, 3, 84, 0xc0},
		{"v4 echo reply", icmp4Msg(t, cli4, srv4, 0, 0, payload(56)), 0, true, 3, 3, 84, 0xc0},
		{"v4 timestamp", icmp4Msg(t, cli4, srv4, 13, 0, payload(12)), 0, true, 3, 3, 40, 0xc0},
		{"v6 echo request", icmp6Msg(t, cli6, srv6, 128, 0, payload(56)), 0, true, 1, 4, 104, 0},
		{"v4 first fragment", frag4(layers.IPv4MoreFragments, 0), 0, true, 3, 3, 92, 0xc0},
		// Never answered.
		{"v4 unreachable", icmp4Msg(t, cli4, srv4, 3, 3, payload(28)), 0, false, 0, 0, 0, 0},
		{"v4 source quench", icmp4Msg(t, cli4, srv4, 4, 0, payload(28)), 0, false, 0, 0, 0, 0},
		{"v4 redirect", icmp4Msg(t, cli4, srv4, 5, 1, payload(28)), 0, false, 0, 0, 0, 0},
		{"v4 time exceeded", icmp4Msg(t, cli4, srv4, 11, 0, payload(28)), 0, false, 0, 0, 0, 0},
		{"v4 parameter problem", icmp4Msg(t, cli4, srv4, 12, 0, payload(28)), 0, false, 0, 0, 0, 0},
		{"v4 unknown type 42", icmp4Msg(t, cli4, srv4, 42, 0, payload(28)), 0, false, 0, 0, 0, 0},
		{"v6 unreachable", icmp6Msg(t, cli6, srv6, 1, 4, payload(48)), 0, false, 0, 0, 0, 0},
		{"v6 packet too big", icmp6Msg(t, cli6, srv6, 2, 0, payload(48)), 0, false, 0, 0, 0, 0},
		{"v6 time exceeded", icmp6Msg(t, cli6, srv6, 3, 0, payload(48)), 0, false, 0, 0, 0, 0},
		{"v6 unassigned error 100", icmp6Msg(t, cli6, srv6, 100, 0, payload(48)), 0, false, 0, 0, 0, 0},
		{"v4 non-first fragment", frag4(0, 100), 0, false, 0, 0, 0, 0},
		{"v6 non-first fragment", frag6(64), 0, false, 0, 0, 0, 0},
		{"v4 to broadcast", udpFrom4(cli4, "255.255.255.255"), 0, false, 0, 0, 0, 0},
		{"v4 to multicast", udpFrom4(cli4, "224.0.0.251"), 0, false, 0, 0, 0, 0},
		{"v4 from unspecified", udpFrom4("0.0.0.0", "255.255.255.255"), 0, false, 0, 0, 0, 0},
		{"v4 from unspecified to unicast", udpFrom4("0.0.0.0", srv4), 0, false, 0, 0, 0, 0},
		{"v4 from multicast", udpFrom4("224.0.0.1", srv4), 0, false, 0, 0, 0, 0},
		{"v6 to multicast", udpFrom6(cli6, "ff02::1:2"), 0, false, 0, 0, 0, 0},
		{"v6 from unspecified", udpFrom6("::", srv6), 0, false, 0, 0, 0, 0},
		{"v6 from multicast", udpFrom6("ff02::1", srv6), 0, false, 0, 0, 0, 0},
		{"truncated", udp4(t, 10)[:10], 0, false, 0, 0, 0, 0},
		{"not IP", []byte{0x12, 0x34}, 0, false, 0, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, ok := AppendICMP([]byte("keep"), tt.in, tt.code)
			if ok != tt.ok {
				t.Fatalf("AppendICMP ok = %v, want %v", ok, tt.ok)
			}
			if !bytes.HasPrefix(out, []byte("keep")) {
				t.Fatalf("dst's bytes not kept: %q", out)
			}
			out = out[4:]
			if !ok {
				if len(out) != 0 {
					t.Fatalf("no answer, but %d bytes appended", len(out))
				}
				return
			}
			q := checkAnswer(t, tt.in, out)
			if q.ICMPType != tt.typ || q.ICMPCode != tt.value {
				t.Errorf("answer type %d code %d, want %d %d", q.ICMPType, q.ICMPCode, tt.typ, tt.value)
			}
			hdr := 20
			if q.IPVersion == 6 {
				hdr = 40
			}
			quote := out[hdr+8:]
			if len(quote) != tt.quote || !bytes.Equal(quote, tt.in[:tt.quote]) {
				t.Errorf("quote of %d bytes, want the first %d of the packet", len(quote), tt.quote)
			}
			if !bytes.Equal(out[hdr+4:hdr+8], []byte{0, 0, 0, 0}) {
				t.Errorf("unused bytes % x", out[hdr+4:hdr+8])
			}
			// pkg/packet finds the blocked packet in the quote.
			var in packet.Packet
			in.Decode(tt.in, packet.LinkIP)
			if !q.Inner.Valid || q.Inner.Src != in.Src || q.Inner.Dst != in.Dst || q.Inner.Proto != in.Proto ||
				q.Inner.SrcPort != in.SrcPort || q.Inner.DstPort != in.DstPort {
				t.Errorf("quoted packet %+v", q.Inner)
			}
			gp := gopacketDecode(t, out)
			if q.IPVersion == 4 {
				ip := gp.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				if ip.IHL != 5 || ip.TOS != tt.tos || ip.Flags != 0 || ip.FragOffset != 0 || ip.Id != 0 ||
					int(ip.Length) != len(out) || len(out) > 576 || ip.Protocol != layers.IPProtocolICMPv4 {
					t.Errorf("gopacket IPv4: %+v", ip)
				}
				icmp := gp.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
				if icmp.TypeCode != layers.CreateICMPv4TypeCode(tt.typ, tt.value) || !bytes.Equal(icmp.Payload, quote) {
					t.Errorf("gopacket ICMPv4: %v", icmp.TypeCode)
				}
			} else {
				ip := gp.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
				if ip.TrafficClass != 0 || ip.FlowLabel != 0 || int(ip.Length) != len(out)-40 || len(out) > 1280 ||
					ip.NextHeader != layers.IPProtocolICMPv6 {
					t.Errorf("gopacket IPv6: %+v", ip)
				}
				icmp := gp.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
				if icmp.TypeCode != layers.CreateICMPv6TypeCode(tt.typ, tt.value) {
					t.Errorf("gopacket ICMPv6: %v", icmp.TypeCode)
				}
			}
		})
	}
}

// TestAppendICMPCutCopy: a packet copied in part is quoted as far as the
// copy goes.
func TestAppendICMPCutCopy(t *testing.T) {
	in := udp4(t, 1000)
	out, ok := AppendICMP(nil, in[:200], 0)
	if !ok || len(out) != 28+200 || !bytes.Equal(out[28:], in[:200]) {
		t.Fatalf("ok %v, %d bytes", ok, len(out))
	}
	checkAnswer(t, in, out)
}

func TestReply(t *testing.T) {
	syn := tcp4(t, "S", 1000, 0, 0)
	dgram := udp6(t, 10)
	tests := []struct {
		r        Reply
		in       []byte
		wantNone bool
		proto    packet.Proto
		code     uint8
	}{
		{Reply{Kind: Drop}, syn, true, 0, 0},
		{Reply{Kind: Drop}, dgram, true, 0, 0},
		{Reply{Kind: Return}, syn, false, packet.ProtoTCP, 0},
		{Reply{Kind: Return}, dgram, false, packet.ProtoICMPv6, 4},
		{Reply{Kind: Return, ICMP6: AdminUnr6}, dgram, false, packet.ProtoICMPv6, 1},
		{Reply{Kind: ReturnRST}, syn, false, packet.ProtoTCP, 0},
		{Reply{Kind: ReturnRST}, dgram, true, 0, 0},
		{Reply{Kind: ReturnICMP, ICMP: FilterProhib}, syn, false, packet.ProtoICMP, 13},
		{Reply{Kind: ReturnICMP, ICMP: FilterProhib}, dgram, false, packet.ProtoICMPv6, 4},
	}
	for _, tt := range tests {
		out, ok := tt.r.Append(nil, tt.in)
		if ok == tt.wantNone {
			t.Errorf("%+v: ok = %v", tt.r, ok)
			continue
		}
		if !ok {
			continue
		}
		var q packet.Packet
		q.Decode(out, packet.LinkIP)
		if q.Proto != tt.proto || q.ICMPCode != tt.code {
			t.Errorf("%+v: answer %v code %d, want %v %d", tt.r, q.Proto, q.ICMPCode, tt.proto, tt.code)
		}
	}
}

// TestLinkLocal: answers to link-local addresses are crafted like any
// other; the Sender needs the interface to route them (SendIf).
func TestLinkLocal(t *testing.T) {
	ip := ip6("fe80::1", "fe80::2", layers.IPProtocolTCP)
	in := serialize(t, ip, tcpSeg(40000, 22, "S", 1, 0, ip))
	out, ok := AppendRST(nil, in)
	if !ok {
		t.Fatal("no RST")
	}
	checkAnswer(t, in, out)
	if !net.IP(out[24:40]).Equal(net.ParseIP("fe80::1")) {
		t.Errorf("destination %v", net.IP(out[24:40]))
	}
}

func TestNoAllocs(t *testing.T) {
	syn4, syn6 := tcp4(t, "S", 1, 0, 0), tcp6(t, "S", 1, 0, 0)
	big4, big6 := udp4(t, 1400), udp6(t, 1400)
	buf := make([]byte, 0, MaxLen)
	var ok bool
	tests := []struct {
		name string
		fn   func()
	}{
		{"AppendRST v4", func() { buf, ok = AppendRST(buf[:0], syn4) }},
		{"AppendRST v6", func() { buf, ok = AppendRST(buf[:0], syn6) }},
		{"AppendICMP v4", func() { buf, ok = AppendICMP(buf[:0], big4, FilterProhib) }},
		{"AppendICMP v6", func() { buf, ok = AppendICMP(buf[:0], big6, 0) }},
		{"Reply v4", func() { buf, ok = Reply{Kind: Return}.Append(buf[:0], big4) }},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(100, tt.fn); n != 0 || !ok {
			t.Errorf("%s: %v allocations, ok %v", tt.name, n, ok)
		}
	}
}

// FuzzAppend: whatever the bytes, crafting never panics, and every answer
// decodes with valid checksums.
func FuzzAppend(f *testing.F) {
	f.Add(tcp4(f, "S", 1, 0, 0))
	f.Add(tcp6(f, "PA", 1, 2, 30))
	f.Add(udp4(f, 30))
	f.Add(udp6(f, 30))
	f.Add(icmp4Msg(f, cli4, srv4, 8, 0, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, k := range []Kind{ReturnRST, ReturnICMP} {
			out, ok := Reply{Kind: k}.Append(nil, in)
			if !ok {
				continue
			}
			var q packet.Packet
			q.Decode(out, packet.LinkIP)
			if q.Kind != packet.KindOK || !q.L4ChecksumOK() || q.IPLen != len(out) || len(out) > MaxLen {
				t.Fatalf("%v: bad answer % x", k, out)
			}
		}
	})
}
