package packet

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// The shared captures live next to the repository (see MANIFEST.md there).
const pcapDir = "../../../shared/pcaps"

type capturedPacket struct {
	index int
	data  []byte
}

// readCapture returns every packet of a pcap file and its link type.
func readCapture(t testing.TB, path string) ([]capturedPacket, LinkType) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var pkts []capturedPacket
	for i := 0; ; i++ {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s packet %d: %v", path, i, err)
		}
		pkts = append(pkts, capturedPacket{i, data})
	}
	return pkts, LinkType(r.LinkType())
}

func captureFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(pcapDir, "*.pcap"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no captures in %s (err %v): the shared directory must sit next to the repository", pcapDir, err)
	}
	return files
}

// TestCapturesDecode decodes every packet of every shared capture. Every
// packet of these captures is a well-formed frame, so the only non-OK
// packets allowed are the non-IP frames of tcpreplay-test.pcap, listed
// here by EtherType. The same table pins the packets with bad checksums:
// tcpreplay's captures carry a few on purpose, and `tcpdump -vv` reports
// exactly these (as "bad cksum", "wrong icmp cksum", "incorrect").
func TestCapturesDecode(t *testing.T) {
	type expect struct {
		notIP     map[uint16]int // non-IP frames by EtherType
		badL4     []int          // packet indexes (from 0) with a bad transport checksum
		badHeader []int          // packet indexes with a bad IPv4 header checksum
	}
	want := map[string]expect{
		"tcpreplay-test.pcap": {
			notIP: map[uint16]int{
				0x0806: 1,  // ARP
				0x8847: 16, // MPLS (ICMP and Ethernet-over-MPLS)
				0x9000: 1,  // Ethernet loopback (configuration test protocol)
				0x05dc: 1,  // an 802.3 length field: IS-IS over LLC
			},
			badL4:     []int{11, 18, 26, 31},
			badHeader: []int{11, 13},
		},
		// The IP-only prefix of tcpreplay-test.pcap: the same packets
		// without ARP and MPLS, so two places earlier.
		"tcpreplay-fragroute.pcap": {badL4: []int{9, 16}, badHeader: []int{9, 11}},
	}
	for _, path := range captureFiles(t) {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			pkts, link := readCapture(t, path)
			var got expect
			got.notIP = map[uint16]int{}
			var p Packet
			for _, cp := range pkts {
				p.Decode(cp.data, link)
				switch p.Kind {
				case KindOK:
					if !p.Src.IsValid() || !p.Dst.IsValid() {
						t.Errorf("packet %d: OK without addresses: %v", cp.index, &p)
					}
				case KindNotIP:
					got.notIP[p.EtherType]++
				default:
					t.Errorf("packet %d: %v: %v", cp.index, p.Kind, &p)
				}
				if !p.L4ChecksumOK() {
					got.badL4 = append(got.badL4, cp.index)
				}
				if !p.IPv4HeaderChecksumOK() {
					got.badHeader = append(got.badHeader, cp.index)
				}
			}
			w := want[name]
			if w.notIP == nil {
				w.notIP = map[uint16]int{}
			}
			if !reflect.DeepEqual(got, w) {
				t.Errorf("got  %+v\nwant %+v", got, w)
			}
		})
	}
}

// TestCapturesAgainstGopacket decodes every packet of the shared captures
// with gopacket's full decoder too and compares what both decoded: the IP
// header, the transport header right after it, the packet an ICMP error
// quotes, and the transport checksum verdict.
func TestCapturesAgainstGopacket(t *testing.T) {
	counts := map[string]int{}
	for _, path := range captureFiles(t) {
		pkts, link := readCapture(t, path)
		for _, cp := range pkts {
			var p Packet
			p.Decode(cp.data, link)
			var first gopacket.Decoder = layers.LinkType(link)
			switch link { // link types gopacket has no decoder for
			case LinkIPv4:
				first = layers.LayerTypeIPv4
			case LinkIPv6:
				first = layers.LayerTypeIPv6
			}
			gp := gopacket.NewPacket(cp.data, first, gopacket.DecodeOptions{NoCopy: true})
			where := filepath.Base(path) + " #" + itoa(cp.index)
			compareWithGopacket(t, where, &p, gp, counts)
		}
	}
	t.Logf("fields compared per protocol: %v", counts)
	// The comparison must have had something to compare.
	for _, k := range []string{"ip", "tcp", "udp", "icmp", "icmp6", "sctp", "inner", "checksum", "mpls"} {
		if counts[k] == 0 {
			t.Errorf("no %s packet compared", k)
		}
	}
}

func compareWithGopacket(t *testing.T, where string, p *Packet, gp gopacket.Packet, counts map[string]int) {
	t.Helper()
	ls := gp.Layers()
	i := 0
	mpls := false
	tags := 0
	for ; i < len(ls); i++ {
		lt := ls[i].LayerType()
		if lt == layers.LayerTypeIPv4 || lt == layers.LayerTypeIPv6 {
			break
		}
		if lt == layers.LayerTypeMPLS {
			mpls = true
		}
		if lt == layers.LayerTypeDot1Q {
			tags++
		}
	}
	if tags < int(p.VLANs) {
		return // gopacket does not know the old 0x9100 tag
	}
	if i == len(ls) || mpls {
		// gopacket found no IP, or only inside MPLS, which a netfilter
		// IP hook never sees.
		if p.Kind != KindNotIP {
			t.Errorf("%s: gopacket finds no IP outside MPLS, we decoded %v", where, p)
		}
		if mpls {
			counts["mpls"]++
		}
		return
	}
	if p.Kind != KindOK {
		t.Errorf("%s: gopacket decodes %v, we say %v", where, ls[i].LayerType(), p.Kind)
		return
	}
	counts["ip"]++
	var proto uint8
	switch ip := ls[i].(type) {
	case *layers.IPv4:
		check(t, where, "version", p.IPVersion, uint8(4))
		check(t, where, "src", p.Src, netip.AddrFrom4([4]byte(ip.SrcIP.To4())))
		check(t, where, "dst", p.Dst, netip.AddrFrom4([4]byte(ip.DstIP.To4())))
		check(t, where, "ttl", p.TTL, ip.TTL)
		check(t, where, "ip length", p.IPLen, int(ip.Length))
		check(t, where, "frag offset", p.Frag.Offset, ip.FragOffset*8)
		check(t, where, "more fragments", p.Frag.More, ip.Flags&layers.IPv4MoreFragments != 0)
		check(t, where, "ip id", p.Frag.ID, uint32(ip.Id))
		proto = uint8(ip.Protocol)
	case *layers.IPv6:
		check(t, where, "version", p.IPVersion, uint8(6))
		check(t, where, "src", p.Src, netip.AddrFrom16([16]byte(ip.SrcIP.To16())))
		check(t, where, "dst", p.Dst, netip.AddrFrom16([16]byte(ip.DstIP.To16())))
		check(t, where, "hop limit", p.TTL, ip.HopLimit)
		check(t, where, "ip length", p.IPLen, 40+int(ip.Length))
		proto = uint8(ip.NextHeader)
		// gopacket keeps the hop-by-hop header inside the IPv6 layer.
		if ip.HopByHop != nil {
			proto = uint8(ip.HopByHop.NextHeader)
		}
	}
	for i++; i < len(ls); i++ {
		switch e := ls[i].(type) {
		case *layers.IPv6HopByHop:
			proto = uint8(e.NextHeader)
			continue
		case *layers.IPv6Routing:
			proto = uint8(e.NextHeader)
			continue
		case *layers.IPv6Destination:
			proto = uint8(e.NextHeader)
			continue
		case *layers.IPSecAH:
			// Walked over in IPv6 only, like the kernel's ipv6_skip_exthdr;
			// in IPv4 it is the protocol.
			if p.IPVersion == 6 {
				proto = uint8(e.NextHeader)
				continue
			}
		case *layers.IPv6Fragment:
			proto = uint8(e.NextHeader)
			check(t, where, "frag offset", p.Frag.Offset, e.FragmentOffset*8)
			check(t, where, "frag id", p.Frag.ID, e.Identification)
			check(t, where, "more fragments", p.Frag.More, e.MoreFragments)
			if e.FragmentOffset == 0 {
				// gopacket stops at a first or atomic fragment; we walk on
				// to the transport header (for an atomic one, RFC 6946),
				// so Proto is not comparable.
				check(t, where, "is fragment", p.Frag.IsFragment, e.MoreFragments)
				return
			}
			continue
		}
		break
	}
	check(t, where, "proto", p.Proto, Proto(proto))
	if i == len(ls) {
		return
	}
	// gopacket does not decode the transport header of any fragment; we
	// do for the first one, so there is nothing to compare.
	if p.L4Off == 0 && ls[i].LayerType() != gopacket.LayerTypeFragment && ls[i].LayerType() != gopacket.LayerTypePayload &&
		ls[i].LayerType() != gopacket.LayerTypeDecodeFailure {
		if _, known := ls[i].(*layers.TCP); known || p.Proto == ProtoUDP || p.Proto == ProtoICMP || p.Proto == ProtoICMPv6 {
			t.Errorf("%s: gopacket decodes %v, we decoded no transport header", where, ls[i].LayerType())
		}
	}
	switch ls[i].(type) {
	case *layers.ICMPv4:
		if p.IPVersion != 4 {
			return // ICMP inside IPv6 is an unknown protocol to the kernel and to us
		}
	case *layers.ICMPv6:
		if p.IPVersion != 6 {
			return
		}
	}
	switch l := ls[i].(type) {
	case *layers.TCP:
		counts["tcp"]++
		check(t, where, "sport", p.SrcPort, uint16(l.SrcPort))
		check(t, where, "dport", p.DstPort, uint16(l.DstPort))
		check(t, where, "seq", p.Seq, l.Seq)
		check(t, where, "ack", p.Ack, l.Ack)
		check(t, where, "window", p.Window, l.Window)
		check(t, where, "data offset", p.TCPHdrLen, int(l.DataOffset)*4)
		check(t, where, "flags", p.TCPFlags, tcpFlags(l))
		// When an option comes twice the last one counts, for us and for
		// the kernel's tcp_parse_options.
		var want TCPOptions
		for _, o := range l.Options {
			switch {
			case o.OptionType == layers.TCPOptionKindMSS && len(o.OptionData) == 2:
				want.MSS = be16(o.OptionData)
			case o.OptionType == layers.TCPOptionKindWindowScale && len(o.OptionData) == 1:
				want.WScale, want.HasWScale = o.OptionData[0], true
			case o.OptionType == layers.TCPOptionKindSACKPermitted && len(o.OptionData) == 0:
				want.SACKPerm = true
			case o.OptionType == layers.TCPOptionKindTimestamps && len(o.OptionData) == 8:
				want.HasTS, want.TSVal, want.TSEcr = true, be32(o.OptionData), be32(o.OptionData[4:])
			}
		}
		got := p.TCPOpts
		got.NSACK, got.SACK = 0, [4]SACKBlock{}
		// gopacket gives up on an option it finds malformed (an MPTCP
		// option shorter than 3 bytes, say) and keeps the rest as padding;
		// the kernel's tcp_parse_options, and we, skip it and read on.
		n := len(l.Options)
		gaveUp := len(l.Padding) > 0 && (n == 0 || l.Options[n-1].OptionType != layers.TCPOptionKindEndList)
		if !gaveUp {
			check(t, where, "tcp options", got, want)
		}
		if p.Frag.IsFragment || p.L4Off+p.L4Len > len(p.Data) || p.HasRouting {
			break
		}
		// gopacket's decoder does not give the transport layer its network
		// layer; the pseudo-header needs it.
		if err := l.SetNetworkLayerForChecksum(gp.NetworkLayer()); err != nil {
			t.Fatal(err)
		}
		if err, r := l.VerifyChecksum(); err == nil {
			counts["checksum"]++
			check(t, where, "tcp checksum ok", p.L4ChecksumOK(), r.Valid)
		}
	case *layers.UDP:
		counts["udp"]++
		check(t, where, "sport", p.SrcPort, uint16(l.SrcPort))
		check(t, where, "dport", p.DstPort, uint16(l.DstPort))
		check(t, where, "udp length", p.UDPLen, l.Length)
		// gopacket calls a zero checksum valid over IPv6 too.
		if p.Frag.IsFragment || p.L4Off+p.L4Len > len(p.Data) || p.HasRouting || (l.Checksum == 0 && p.IPVersion == 6) {
			break
		}
		if err := l.SetNetworkLayerForChecksum(gp.NetworkLayer()); err != nil {
			t.Fatal(err)
		}
		if err, r := l.VerifyChecksum(); err == nil {
			counts["checksum"]++
			check(t, where, "udp checksum ok", p.L4ChecksumOK(), r.Valid)
		}
	case *layers.SCTP:
		counts["sctp"]++
		check(t, where, "sport", p.SrcPort, uint16(l.SrcPort))
		check(t, where, "dport", p.DstPort, uint16(l.DstPort))
	case *layers.ICMPv4:
		counts["icmp"]++
		check(t, where, "icmp type", p.ICMPType, l.TypeCode.Type())
		check(t, where, "icmp code", p.ICMPCode, l.TypeCode.Code())
		if p.hasICMPID() {
			check(t, where, "icmp id", p.ICMPID, l.Id)
			check(t, where, "icmp seq", p.ICMPSeq, l.Seq)
		}
		if p.isICMPError() {
			compareInner(t, where, p, l.Payload, layers.LayerTypeIPv4, counts)
		}
		if !p.Frag.IsFragment && p.L4Off+p.L4Len <= len(p.Data) {
			if err, r := l.VerifyChecksum(); err == nil {
				counts["checksum"]++
				check(t, where, "icmp checksum ok", p.L4ChecksumOK(), r.Valid)
			}
		}
	case *layers.ICMPv6:
		counts["icmp6"]++
		check(t, where, "icmp6 type", p.ICMPType, l.TypeCode.Type())
		check(t, where, "icmp6 code", p.ICMPCode, l.TypeCode.Code())
		if i+1 < len(ls) {
			if e, ok := ls[i+1].(*layers.ICMPv6Echo); ok {
				check(t, where, "icmp6 id", p.ICMPID, e.Identifier)
				check(t, where, "icmp6 seq", p.ICMPSeq, e.SeqNumber)
			}
		}
		if p.isICMPError() && len(l.Payload) >= 4 {
			compareInner(t, where, p, l.Payload[4:], layers.LayerTypeIPv6, counts)
		}
		if !p.Frag.IsFragment && p.L4Off+p.L4Len <= len(p.Data) && !p.HasRouting {
			if err := l.SetNetworkLayerForChecksum(gp.NetworkLayer()); err != nil {
				t.Fatal(err)
			}
			if err, r := l.VerifyChecksum(); err == nil {
				counts["checksum"]++
				check(t, where, "icmp6 checksum ok", p.L4ChecksumOK(), r.Valid)
			}
		}
	}
}

// compareInner decodes an ICMP error's quote with gopacket and compares
// it with Inner.
func compareInner(t *testing.T, where string, p *Packet, quote []byte, first gopacket.LayerType, counts map[string]int) {
	t.Helper()
	q := gopacket.NewPacket(quote, first, gopacket.DecodeOptions{NoCopy: true})
	if q.ErrorLayer() != nil {
		// gopacket also rejects quotes whose IP total length is smaller than
		// the header, which the kernel does not look at.
		return
	}
	if !p.Inner.Valid {
		t.Logf("%s: quote not valid for us (%d bytes)", where, len(quote))
		return
	}
	counts["inner"]++
	if nl := q.NetworkLayer(); nl != nil {
		src, _ := netip.AddrFromSlice(nl.NetworkFlow().Src().Raw())
		dst, _ := netip.AddrFromSlice(nl.NetworkFlow().Dst().Raw())
		check(t, where, "inner src", p.Inner.Src, src)
		check(t, where, "inner dst", p.Inner.Dst, dst)
	} else {
		t.Errorf("%s: gopacket finds no IP in the quote we decoded as %+v", where, p.Inner)
	}
	switch l := q.TransportLayer().(type) {
	case *layers.TCP:
		check(t, where, "inner sport", p.Inner.SrcPort, uint16(l.SrcPort))
		check(t, where, "inner dport", p.Inner.DstPort, uint16(l.DstPort))
		check(t, where, "inner seq", p.Inner.TCPSeq, l.Seq)
	case *layers.UDP:
		check(t, where, "inner sport", p.Inner.SrcPort, uint16(l.SrcPort))
		check(t, where, "inner dport", p.Inner.DstPort, uint16(l.DstPort))
	}
}

func tcpFlags(l *layers.TCP) uint8 {
	var f uint8
	for _, b := range []struct {
		set bool
		bit uint8
	}{{l.FIN, TCPFin}, {l.SYN, TCPSyn}, {l.RST, TCPRst}, {l.PSH, TCPPsh}, {l.ACK, TCPAck}, {l.URG, TCPUrg}, {l.ECE, TCPEce}, {l.CWR, TCPCwr}} {
		if b.set {
			f |= b.bit
		}
	}
	return f
}

func check[T comparable](t *testing.T, where, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s: %s: we decode %v, gopacket %v", where, what, got, want)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for ; i > 0; i /= 10 {
		n--
		b[n] = byte('0' + i%10)
	}
	return string(b[n:])
}
