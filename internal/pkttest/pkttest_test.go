package pkttest

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/statewall/statewall/pkg/packet"
)

// agreeLines are lines whose Fields must equal the decoding of their
// Bytes, field for field: every protocol, both IP versions, every word.
var agreeLines = []string{
	// TCP.
	"tcp 198.18.0.1:40000 > 198.18.0.2:80 S",
	"tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000 win=8192",
	"tcp 198.18.0.2:80 > 198.18.0.1:40000 SA seq=5000 ack=1001 win=8192",
	"tcp 198.18.0.1:40000 > 198.18.0.2:80 PA seq=1001 ack=5001 win=8192 len=100",
	"tcp 198.18.0.2:80 > 198.18.0.1:40000 RA seq=0 ack=1001 win=0",
	"tcp 198.18.0.1:40001 > 198.18.0.2:80 seq=1",
	"tcp 198.18.0.1:40001 > 198.18.0.2:80 FSRPAUEW seq=4294967295 ack=4294967295",
	"tcp 198.18.0.1:40001 > 198.18.0.2:80 SEW seq=7 wscale=7",
	"tcp 198.18.0.1:40001 > 198.18.0.2:80 S wscale=15 len=1",
	"tcp [fd00:198:18::1]:40001 > [fd00:198:18::2]:443 S seq=70000 win=65535 wscale=7",
	"tcp [2001:db8::1]:1 > [2001:db8::2]:2 PA seq=1 ack=1 len=1400",
	"tcp 198.18.0.1:1 > 198.18.0.2:2 A ttl=1 ipid=4660",
	"tcp 198.18.0.1:1 > 198.18.0.2:2 PA l4len=50",
	"tcp 198.18.0.1:1 > 198.18.0.2:2 S frag=0 mf ipid=9 len=100",
	"tcp [2001:db8::1]:1 > [2001:db8::2]:2 S frag=0 mf ipid=99999 len=100",
	"tcp [2001:db8::1]:1 > [2001:db8::2]:2 S frag=0",
	// UDP and UDP-Lite.
	"udp 198.18.0.1:5353 > 198.18.0.2:53",
	"udp 198.18.0.1:5353 > 198.18.0.2:53 len=30",
	"udp 198.18.0.1:5353 > 198.18.0.2:53 len=10 udplen=12",
	"udp 198.18.0.1:5353 > 198.18.0.2:53 len=1",
	"udp [2001:db8::1]:5353 > [2001:db8::2]:53 len=60 ttl=255",
	"udp 198.18.0.1:0 > 198.18.0.2:65535 l4len=20",
	"udp 198.18.0.1 > 198.18.0.2 frag=1480 len=100",
	"udp 198.18.0.1 > 198.18.0.2 frag=8 mf len=16 ipid=7",
	"udp 2001:db8::1 > 2001:db8::2 frag=1448 len=100 ipid=5",
	"udp 198.18.0.1:5353 > 198.18.0.2:53 mf len=1000",
	"udplite 198.18.0.1:5000 > 198.18.0.2:6000 len=20 udplen=0",
	"udplite 198.18.0.2:6000 > 198.18.0.1:5000 len=20 udplen=12",
	"udplite [2001:db8::1]:5000 > [2001:db8::2]:6000 len=3",
	// SCTP.
	"sctp 198.18.0.1:2906 > 198.18.0.2:6303 chunk=1:20",
	"sctp 198.18.0.1:2906 > 198.18.0.2:6303 chunk=1:20 chunk=0:17",
	"sctp [2001:db8::1]:2906 > [2001:db8::2]:6303 chunk=2:20",
	"sctp 198.18.0.1:2906 > 198.18.0.2:6303 len=4",
	// ICMP queries.
	"icmp 198.18.0.1 > 198.18.0.2 type=8",
	"icmp 198.18.0.1 > 198.18.0.2 type=8 id=7 seq=1 len=56",
	"icmp 198.18.0.2 > 198.18.0.1 type=0 code=1 id=7 seq=65535",
	"icmp 198.18.0.1 > 198.18.0.2 type=13 id=1",
	"icmp 198.18.0.1 > 198.18.0.2 type=17 id=1",
	"icmp 198.18.0.1 > 198.18.0.2 type=9",
	"icmp 198.18.0.1 > 198.18.0.2 type=42 code=7 len=3",
	"icmp6 2001:db8::1 > 2001:db8::2 type=128 id=7",
	"icmp6 fd00:198:18::2 > fd00:198:18::1 type=129 id=9 seq=3 len=8",
	"icmp6 2001:db8::1 > 2001:db8::2 type=139 id=1",
	"icmp6 fe80::1 > ff02::1 type=135",
	// ICMP errors and their quotes.
	"icmp 198.18.0.9 > 198.18.0.1 type=3 code=3",
	// An error without a quote: 16 zero bytes, too few for an IPv4
	// header (20 would be read as one, as the kernel reads them).
	"icmp 198.18.0.9 > 198.18.0.1 type=3 code=3 len=16",
	"icmp 198.18.0.9 > 198.18.0.1 type=3 code=3 [udp 198.18.0.1:5353 > 198.18.0.2:53]",
	"icmp 198.18.0.9 > 198.18.0.1 type=3 code=3 [udp 198.18.0.1:5353 > 198.18.0.2:53 len=30 cut=28]",
	"icmp 198.18.0.9 > 198.18.0.1 type=3 code=3 [udp 198.18.0.1:5353 > 198.18.0.2:53 len=30 cut=27]",
	"icmp 198.18.0.9 > 198.18.0.1 type=3 code=3 [udp 198.18.0.1:5353 > 198.18.0.2:53 cut=19]",
	"icmp 192.0.2.1 > 198.18.0.2 type=3 code=4 [tcp 198.18.0.2:40001 > 203.0.113.5:443 A seq=78 ack=901]",
	"icmp 198.18.0.9 > 198.18.0.1 type=11 [icmp 198.18.0.1 > 198.18.0.2 type=8 id=9 seq=4]",
	"icmp 198.18.0.9 > 198.18.0.1 type=12 [icmp 198.18.0.1 > 198.18.0.2 type=3 [tcp 198.18.0.2:1 > 198.18.0.1:2 S]]",
	"icmp 198.18.0.9 > 198.18.0.1 type=4 [gre 198.18.0.1 > 198.18.0.2]",
	"icmp 198.18.0.9 > 198.18.0.1 type=5 [sctp 198.18.0.1:1 > 198.18.0.2:2 chunk=0:16]",
	"icmp 198.18.0.9 > 198.18.0.1 type=3 [udp 198.18.0.1 > 198.18.0.2 frag=1480 len=8]",
	"icmp 198.18.0.9 > 198.18.0.1 type=3 [udp 198.18.0.1:1 > 198.18.0.2:2 l4len=7]",
	"icmp 198.18.0.9 > 198.18.0.1 type=3 [udp 198.18.0.1:1 > 198.18.0.2:2 badsum]",
	"icmp6 2001:db8::9 > 2001:db8::1 type=1 [udp [2001:db8::1]:5353 > [2001:db8::2]:53]",
	"icmp6 2001:db8::9 > 2001:db8::1 type=2 [tcp [2001:db8::1]:1 > [2001:db8::2]:2 S seq=5 frag=0]",
	"icmp6 2001:db8::9 > 2001:db8::1 type=3 [udp 2001:db8::1 > 2001:db8::2 frag=8 ipid=3]",
	"icmp6 2001:db8::9 > 2001:db8::1 type=4 [icmp6 2001:db8::1 > 2001:db8::2 type=128 id=3]",
	"icmp6 2001:db8::9 > 2001:db8::1 type=4 [icmp6 2001:db8::1 > 2001:db8::2 type=128 id=3 cut=47]",
	// Protocols Decode does not parse.
	"gre 198.18.0.1 > 198.18.0.2",
	"gre 2001:db8::1 > 2001:db8::2 len=100",
	"proto=33 198.18.0.1 > 198.18.0.2",
	"proto=50 198.18.0.1 > 198.18.0.2 l4len=3",
	"proto=255 198.18.0.1 > 198.18.0.2 frag=64",
	"proto=47 198.18.0.1 > 198.18.0.2",
	"proto=6 198.18.0.1:1 > 198.18.0.2:2 S",
}

// TestFieldsAgreeWithDecode is what makes one notation for both forms
// trustworthy: for every line, Decode of Bytes equals Fields on every
// field but Data, the bytes are as long as the IP header says, and their
// checksums are right (and wrong with badsum).
func TestFieldsAgreeWithDecode(t *testing.T) {
	for _, line := range agreeLines {
		f, err := Fields(line)
		if err != nil {
			t.Errorf("Fields: %v", err)
			continue
		}
		b, err := Bytes(line)
		if err != nil {
			t.Errorf("Bytes: %v", err)
			continue
		}
		var d packet.Packet
		d.Decode(b, packet.LinkIP)
		if d.Kind != packet.KindOK {
			t.Errorf("%s: decodes as %v", line, d.Kind)
			continue
		}
		if diff := diffFields(f, &d); diff != "" {
			t.Errorf("%s: Fields and Decode(Bytes) differ:\n%s", line, diff)
		}
		if len(b) != f.IPLen {
			t.Errorf("%s: %d bytes, IP length %d", line, len(b), f.IPLen)
		}
		if !d.IPv4HeaderChecksumOK() || !d.L4ChecksumOK() {
			t.Errorf("%s: bad checksum (IP header ok: %v)", line, d.IPv4HeaderChecksumOK())
		}
		if f.Data != nil || !f.L4ChecksumOK() {
			t.Errorf("%s: Fields has bytes", line)
		}
		// badsum: a wrong checksum where the decoder checks one.
		if !checksummed(f) {
			continue
		}
		bad, err := Bytes(withWord(line, "badsum"))
		if err != nil {
			t.Errorf("badsum: %v", err)
			continue
		}
		d.Decode(bad, packet.LinkIP)
		if d.L4ChecksumOK() {
			t.Errorf("%s badsum: the checksum is right", line)
		}
	}
}

// withWord adds a word to a line, before its quoted packet if it has one.
func withWord(line, w string) string {
	words, quote, err := split(line)
	if err != nil {
		panic(err)
	}
	line = strings.Join(append(words, w), " ")
	if quote != "" {
		line += " [" + quote + "]"
	}
	return line
}

// checksummed reports whether L4ChecksumOK checks p's checksum.
func checksummed(p *packet.Packet) bool {
	switch p.Proto {
	case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoUDPLite, packet.ProtoICMP, packet.ProtoICMPv6:
		return !p.Frag.IsFragment
	}
	return false
}

// diffFields lists, by name, the fields other than Data in which got
// differs from want.
func diffFields(got, want *packet.Packet) string {
	var out []string
	for _, name := range differing(got, want) {
		g := reflect.ValueOf(got).Elem().FieldByName(name).Interface()
		w := reflect.ValueOf(want).Elem().FieldByName(name).Interface()
		out = append(out, fmt.Sprintf("\t%s: Fields %+v, Decode %+v", name, g, w))
	}
	return strings.Join(out, "\n")
}

func differing(a, b *packet.Packet) []string {
	var names []string
	av, bv := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	for i := range av.NumField() {
		name := av.Type().Field(i).Name
		if name != "Data" && !reflect.DeepEqual(av.Field(i).Interface(), bv.Field(i).Interface()) {
			names = append(names, name)
		}
	}
	return names
}

// TestDecoderDisagrees: lines that describe what the decoder would not
// produce, for tests of code that must cope with such fields anyway.
// Fields builds them as written; their bytes decode otherwise, as said here.
func TestDecoderDisagrees(t *testing.T) {
	for _, tt := range []struct {
		line string
		kind packet.Kind
		// differ: with KindOK, the fields that differ.
		differ string
	}{
		{"udp 198.18.0.1:5353 > 198.18.0.2:53 l4len=6 udplen=6", packet.KindMalformed, ""},
		{"udp 198.18.0.1:5353 > 198.18.0.2:53 len=10 udplen=19", packet.KindMalformed, ""},
		{"udp 198.18.0.1:5353 > 198.18.0.2:53 len=10 udplen=7", packet.KindMalformed, ""},
		{"udplite 198.18.0.1:5000 > 198.18.0.2:6000 len=20 udplen=40", packet.KindMalformed, ""},
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 S l4len=19", packet.KindMalformed, ""},
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 S wscale=2 l4len=20", packet.KindMalformed, ""},
		{"icmp 198.18.0.1 > 198.18.0.2 type=8 l4len=4", packet.KindMalformed, ""},
		{"sctp 198.18.0.1:1 > 198.18.0.2:2 l4len=11", packet.KindMalformed, ""},
		// ICMP in the other IP version is an unknown protocol to the
		// decoder (and to the kernel).
		{"icmp 2001:db8::1 > 2001:db8::2 type=8", packet.KindOK, "PayloadOff ICMPType"},
		{"icmp 2001:db8::1 > 2001:db8::2 type=8 id=1 seq=2 len=4", packet.KindOK, "PayloadOff PayloadLen ICMPType ICMPID ICMPSeq"},
		{"icmp6 198.18.0.1 > 198.18.0.2 type=128", packet.KindOK, "PayloadOff ICMPType"},
	} {
		f, err := Fields(tt.line)
		if err != nil {
			t.Errorf("Fields: %v", err)
			continue
		}
		d, err := Decode(tt.line)
		if err != nil {
			t.Errorf("Decode: %v", err)
			continue
		}
		if f.Kind != packet.KindOK || d.Kind != tt.kind {
			t.Errorf("%s: Fields %v, Decode %v; want ok and %v", tt.line, f.Kind, d.Kind, tt.kind)
			continue
		}
		if tt.kind != packet.KindOK {
			continue
		}
		if got := strings.Join(differing(f, d), " "); got != tt.differ {
			t.Errorf("%s: fields that differ: %q, want %q\n%s", tt.line, got, tt.differ, diffFields(f, d))
		}
	}
}

// TestOneFormOnly: cut= and badsum make bytes, nol4 makes fields.
func TestOneFormOnly(t *testing.T) {
	p := MustDecode(t, "tcp 198.18.0.1:42000 > 198.18.0.2:80 S seq=1 cut=30")
	if p.Kind != packet.KindTruncated || len(p.Data) != 30 {
		t.Errorf("cut=30: %v, %d bytes", p.Kind, len(p.Data))
	}
	p = MustDecode(t, "udp 198.18.0.1:1 > 198.18.0.2:2 len=5 badsum")
	if p.Kind != packet.KindOK || p.L4ChecksumOK() {
		t.Errorf("badsum: %v, checksum ok %v", p.Kind, p.L4ChecksumOK())
	}
	// An SCTP CRC32c: the decoder does not check it; pin where it sits.
	good := MustBytes(t, "sctp 198.18.0.1:1 > 198.18.0.2:2 chunk=1:20")
	bad := MustBytes(t, "sctp 198.18.0.1:1 > 198.18.0.2:2 chunk=1:20 badsum")
	if string(good[:28]) != string(bad[:28]) || string(good[32:]) != string(bad[32:]) || string(good[28:32]) == string(bad[28:32]) {
		t.Errorf("SCTP badsum changes more or less than the CRC32c:\n% x\n% x", good, bad)
	}

	for _, tt := range []struct{ line, want string }{
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 S nol4", "S"},
		{"icmp 198.18.0.1 > 198.18.0.2 type=8 nol4", ""},
	} {
		f := MustFields(t, tt.line)
		whole := MustFields(t, strings.TrimSuffix(tt.line, " nol4"))
		if f.L4Off != 0 || f.PayloadOff != 0 {
			t.Errorf("%s: L4Off %d, PayloadOff %d", tt.line, f.L4Off, f.PayloadOff)
		}
		if got := strings.Join(differing(f, whole), " "); got != "L4Off PayloadOff" {
			t.Errorf("%s differs from the line without nol4 in %s", tt.line, got)
		}
		if packet.TCPFlagsString(f.TCPFlags) != tt.want {
			t.Errorf("%s: flags %q", tt.line, packet.TCPFlagsString(f.TCPFlags))
		}
	}
}

// TestGopacketAgrees: gopacket, an encoder and decoder independent of
// ours, reads the same headers from Bytes and finds the checksums right.
func TestGopacketAgrees(t *testing.T) {
	for _, line := range agreeLines {
		f := MustFields(t, line)
		if f.Frag.IsFragment || f.Frag.HdrOff != 0 {
			continue // gopacket stops at a fragment
		}
		first := layers.LayerTypeIPv4
		if f.IPVersion == 6 {
			first = layers.LayerTypeIPv6
		}
		gp := gopacket.NewPacket(MustBytes(t, line), first, gopacket.Default)
		var nl gopacket.NetworkLayer
		switch ip := gp.NetworkLayer().(type) {
		case *layers.IPv4:
			nl = ip
			if err, r := ip.VerifyChecksum(); err != nil || !r.Valid {
				t.Errorf("%s: gopacket: IPv4 header checksum %v %+v", line, err, r)
			}
			if ip.TTL != f.TTL || ip.Id != uint16(f.Frag.ID) || ip.Length != uint16(f.IPLen) || uint8(ip.Protocol) != uint8(f.Proto) {
				t.Errorf("%s: gopacket: IPv4 %+v", line, ip)
			}
		case *layers.IPv6:
			nl = ip
			if ip.HopLimit != f.TTL || int(ip.Length) != f.IPLen-40 || uint8(ip.NextHeader) != uint8(f.Proto) {
				t.Errorf("%s: gopacket: IPv6 %+v", line, ip)
			}
		default:
			t.Errorf("%s: gopacket finds no IP layer", line)
			continue
		}
		if nl.NetworkFlow().Src().String() != f.Src.String() || nl.NetworkFlow().Dst().String() != f.Dst.String() {
			t.Errorf("%s: gopacket: addresses %v", line, nl.NetworkFlow())
		}
		verify := func(what string, v interface {
			VerifyChecksum() (error, gopacket.ChecksumVerificationResult)
		}) {
			if err, r := v.VerifyChecksum(); err != nil || !r.Valid {
				t.Errorf("%s: gopacket: %s checksum %v %+v", line, what, err, r)
			}
		}
		switch l := gp.Layers()[1].(type) {
		case *layers.TCP:
			if err := l.SetNetworkLayerForChecksum(nl); err != nil {
				t.Fatal(err)
			}
			verify("TCP", l)
			if uint16(l.SrcPort) != f.SrcPort || uint16(l.DstPort) != f.DstPort || l.Seq != f.Seq || l.Ack != f.Ack ||
				l.Window != f.Window || int(l.DataOffset)*4 != f.TCPHdrLen || l.SYN != (f.TCPFlags&packet.TCPSyn != 0) ||
				l.ACK != (f.TCPFlags&packet.TCPAck != 0) || l.FIN != (f.TCPFlags&packet.TCPFin != 0) || l.CWR != (f.TCPFlags&packet.TCPCwr != 0) {
				t.Errorf("%s: gopacket: TCP %+v", line, l)
			}
		case *layers.UDP:
			if err := l.SetNetworkLayerForChecksum(nl); err != nil {
				t.Fatal(err)
			}
			// A length field shorter than the IP payload: gopacket sums
			// the UDP length's bytes, conntrack (and so Bytes) the IP
			// payload's.
			if int(f.UDPLen) == f.L4Len {
				verify("UDP", l)
			}
			if uint16(l.SrcPort) != f.SrcPort || uint16(l.DstPort) != f.DstPort || l.Length != f.UDPLen {
				t.Errorf("%s: gopacket: UDP %+v", line, l)
			}
		case *layers.SCTP:
			if uint16(l.SrcPort) != f.SrcPort || uint16(l.DstPort) != f.DstPort {
				t.Errorf("%s: gopacket: SCTP %+v", line, l)
			}
		case *layers.ICMPv4:
			verify("ICMP", l)
			if l.TypeCode.Type() != f.ICMPType || l.TypeCode.Code() != f.ICMPCode || l.Id != f.ICMPID || l.Seq != f.ICMPSeq {
				t.Errorf("%s: gopacket: ICMP %+v", line, l)
			}
		case *layers.ICMPv6:
			if err := l.SetNetworkLayerForChecksum(nl); err != nil {
				t.Fatal(err)
			}
			verify("ICMPv6", l)
			if l.TypeCode.Type() != f.ICMPType || l.TypeCode.Code() != f.ICMPCode {
				t.Errorf("%s: gopacket: ICMPv6 %+v", line, l)
			}
		}
	}
}

// TestErrors: a bad line is an error that quotes it and says what is
// wrong.
func TestErrors(t *testing.T) {
	for _, tt := range []struct {
		line string
		fn   func(string) error // Fields unless given
		want string
	}{
		{"", nil, `want "PROTO SRC > DST [WORD...]"`},
		{"tcp 198.18.0.1:1 198.18.0.2:2 S", nil, `want "PROTO SRC > DST`},
		{"foo 198.18.0.1 > 198.18.0.2", nil, `unknown protocol "foo"`},
		{"proto=6 198.18.0.1 > 198.18.0.2", nil, `source "198.18.0.1": tcp has ports`},
		{"proto=300 198.18.0.1 > 198.18.0.2", nil, "proto=300: want a protocol number 0-255"},
		{"47 198.18.0.1 > 198.18.0.2", nil, `unknown protocol "47"`},
		{"tcp 198.18.0.1 > 198.18.0.2:80 S", nil, `source "198.18.0.1": tcp has ports`},
		{"udp 198.18.0.1:1 > 198.18.0.2", nil, `destination "198.18.0.2": udp has ports`},
		{"tcp fd00::1:80 > [fd00::2]:80 S", nil, `source "fd00::1:80": tcp has ports: want ADDRESS:PORT, [IPv6]:PORT`},
		{"gre 198.18.0.1:1 > 198.18.0.2", nil, `source "198.18.0.1:1": want an address: gre has no ports`},
		{"udp 198.18.0.1:1 > [2001:db8::1]:2", nil, "different IP versions"},
		{"tcp [fe80::1%eth0]:1 > [fe80::2]:2", nil, "an address with a zone"},
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 X", nil, `unknown word "X" (TCP flags are F S R P A U E W)`},
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 .", nil, `unknown word "."`},
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 none", nil, `unknown word "none"`},
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 SAS", nil, `TCP flags "SAS": S twice`},
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 S A", nil, "flags given twice"},
		{"proto=33 198.18.0.1 > 198.18.0.2 S", nil, `unknown word "S"`},
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 seq=1 seq=2", nil, "seq given twice"},
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 seq=x", nil, "seq=x: want a number of at most 32 bits"},
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 seq=4294967296", nil, "seq=4294967296: want a number of at most 32 bits"},
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 win=65536", nil, "win=65536: want a number of at most 16 bits"},
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 foo=1", nil, `unknown word "foo=1"`},
		{"udp 198.18.0.1:1 > 198.18.0.2:2 win=5", nil, "win=5: only for tcp, not udp"},
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 udplen=8", nil, "udplen=8: only for udp and udplite, not tcp"},
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 type=8", nil, "type=8: only for icmp and icmp6, not tcp"},
		{"udp 198.18.0.1:1 > 198.18.0.2:2 chunk=1:4", nil, "chunk=1:4: only for sctp, not udp"},
		{"icmp 198.18.0.1 > 198.18.0.2 type=8 seq=65536", nil, "seq=65536: an ICMP sequence number has 16 bits"},
		{"icmp 198.18.0.1 > 198.18.0.2 id=1", nil, "icmp needs type=N"},
		{"icmp 198.18.0.1 > 198.18.0.2 type=3 id=7", nil, "id=/seq= on icmp type 3, which has no identifier"},
		{"icmp6 2001:db8::1 > 2001:db8::2 type=1 seq=1", nil, "id=/seq= on icmp6 type 1, which has no identifier"},
		{"icmp 198.18.0.1 > 198.18.0.2 type=8 [udp 198.18.0.1:1 > 198.18.0.2:2]", nil, "a quoted packet needs an ICMP error"},
		{"udp 198.18.0.1:1 > 198.18.0.2:2 [udp 198.18.0.1:1 > 198.18.0.2:2]", nil, "a quoted packet needs an ICMP error"},
		{"icmp 198.18.0.1 > 198.18.0.2 type=3 [udp 198.18.0.1:1 > 198.18.0.2:2", nil, `has no closing "]"`},
		{"icmp 198.18.0.1 > 198.18.0.2 type=3 []", nil, "empty quoted packet"},
		{"icmp 198.18.0.1 > 198.18.0.2 type=3 [udp [2001:db8::1]:1 > [2001:db8::2]:2]", nil, "another IP version"},
		{"icmp 198.18.0.1 > 198.18.0.2 type=3 [udp 198.18.0.1 > 198.18.0.2:2]", nil, `quoted packet: source "198.18.0.1": udp has ports`},
		{"icmp 198.18.0.1 > 198.18.0.2 type=3 len=8 [udp 198.18.0.1:1 > 198.18.0.2:2]", nil, "len= or l4len= with a quoted packet"},
		{"icmp 198.18.0.1 > 198.18.0.2 type=3 [udp 198.18.0.1:1 > 198.18.0.2:2 nol4]", nil, "quoted packet: nol4"},
		{"udp 198.18.0.1:1 > 198.18.0.2:2 len=1 l4len=9", nil, "len= and l4len= both given"},
		{"sctp 198.18.0.1:1 > 198.18.0.2:2 chunk=1", nil, "chunk=1: want chunk=TYPE:LENGTH"},
		{"sctp 198.18.0.1:1 > 198.18.0.2:2 chunk=1:20 len=4", nil, "chunk= with len= or l4len="},
		{"udp 198.18.0.1:1 > 198.18.0.2:2 frag=1480", nil, `source "198.18.0.1:1": want an address: a non-first fragment (frag=N, N > 0) has no ports`},
		{"udp 198.18.0.1 > 198.18.0.2 frag=7", nil, "frag=7: a fragment offset is a multiple of 8"},
		{"tcp 198.18.0.1 > 198.18.0.2 S frag=8", nil, "a non-first fragment (frag=N, N > 0) has no transport header"},
		{"udp 198.18.0.1 > 198.18.0.2 frag=8 l4len=8", nil, "l4len= on a non-first fragment"},
		{"udp [2001:db8::1]:1 > [2001:db8::2]:2 ipid=5", nil, "ipid= on IPv6 is the fragment header's"},
		{"udp 198.18.0.1:1 > 198.18.0.2:2 ipid=65536", nil, "ipid=: an IPv4 identification has 16 bits"},
		{"udp 198.18.0.1:1 > 198.18.0.2:2 len=65535", nil, "longer than an IP header can announce"},
		{"gre 198.18.0.1 > 198.18.0.2 badsum", nil, "badsum: gre has no checksum"},
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 S cut=30", nil, "cut= makes truncated bytes: use Bytes"},
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 S badsum", nil, "badsum makes a wrong checksum in bytes: use Bytes"},
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 S nol4", bytesErr, "nol4 describes fields no bytes decode to: use Fields"},
		{"tcp 198.18.0.1:1 > 198.18.0.2:2 S cut=41", bytesErr, "cut=41: the packet has only 40 bytes"},
		{"udp 198.18.0.1:1 > 198.18.0.2:2 l4len=4 badsum", bytesErr, "badsum: 4 transport bytes have no checksum field"},
		{"icmp 198.18.0.1 > 198.18.0.2 type=3 [udp 198.18.0.1:1 > 198.18.0.2:2 cut=50]", bytesErr, "quoted packet: cut=50: the packet has only 28 bytes"},
	} {
		fn := tt.fn
		if fn == nil {
			fn = fieldsErr
		}
		err := fn(tt.line)
		if err == nil {
			t.Errorf("%s: no error, want %q", tt.line, tt.want)
			continue
		}
		prefix := fmt.Sprintf("pkttest: %q: ", tt.line)
		if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s:\n\tgot  %v\n\twant %s...%s...", tt.line, err, prefix, tt.want)
		}
	}
}

func fieldsErr(line string) error { _, err := Fields(line); return err }
func bytesErr(line string) error  { _, err := Bytes(line); return err }
