package packet

import (
	"reflect"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// fuzzLinks maps the fuzzer's link byte to a link type, so that most inputs
// exercise a decoder rather than KindUnsupportedLink.
var fuzzLinks = []LinkType{LinkEthernet, LinkRaw, LinkIPv4, LinkIPv6, LinkLinuxSLL, LinkLinuxSLL2, LinkNull, LinkLoop, LinkIP, 105}

func linkIndex(l LinkType) uint8 {
	for i, x := range fuzzLinks {
		if x == l {
			return uint8(i)
		}
	}
	return 0
}

// FuzzDecode checks that no input panics, that the offsets Decode reports
// stay inside the data, and that a reused Packet decodes exactly like a
// fresh one (Decode overwrites every field). Seeds: the named test packets
// here, and first packets of the shared captures in testdata/fuzz.
func FuzzDecode(f *testing.F) {
	for _, np := range namedPackets(f) {
		f.Add(np.data, linkIndex(LinkEthernet))
		f.Add(np.data[14:], linkIndex(LinkRaw))
	}
	f.Add(ipv6Fragment(f, 16, false), linkIndex(LinkEthernet))
	f.Add(icmp6Error(f, 1, 4, udp6WithDestOpts(f)[14:]), linkIndex(LinkEthernet))
	f.Add(udpLite6(f, 8), linkIndex(LinkIPv6))
	var other Packet
	other.Decode(icmpErrorV4(f), LinkEthernet) // sets fields a later decode must clear
	f.Fuzz(func(t *testing.T, data []byte, link uint8) {
		lt := fuzzLinks[int(link)%len(fuzzLinks)]
		var p Packet
		p.Decode(data, lt)
		checkInvariants(t, &p)

		reused := other
		reused.Decode(data, lt)
		if !reflect.DeepEqual(&reused, &p) {
			t.Fatalf("a reused Packet decodes differently:\n%s", diffPackets(&reused, &p))
		}
	})
}

func checkInvariants(t *testing.T, p *Packet) {
	t.Helper()
	n := len(p.Data)
	if p.L3Off < 0 || p.L3Off > n || p.L4Off < 0 || p.L4Off > n || p.PayloadOff < 0 || p.PayloadOff > n {
		t.Fatalf("offsets outside %d bytes: L3Off %d L4Off %d PayloadOff %d", n, p.L3Off, p.L4Off, p.PayloadOff)
	}
	if p.PayloadOff != 0 && p.PayloadOff < p.L4Off {
		t.Fatalf("PayloadOff %d before L4Off %d", p.PayloadOff, p.L4Off)
	}
	if p.L4Len < 0 || p.PayloadLen < 0 || p.PayloadLen > p.L4Len {
		t.Fatalf("lengths: L4Len %d PayloadLen %d", p.L4Len, p.PayloadLen)
	}
	if p.Kind == KindOK {
		switch {
		case p.IPVersion == 4 && p.Src.Is4() && p.Dst.Is4():
		case p.IPVersion == 6 && p.Src.Is6() && p.Dst.Is6():
		default:
			t.Fatalf("OK packet with version %d, addresses %v > %v", p.IPVersion, p.Src, p.Dst)
		}
		if p.L4Off != 0 && p.L4Off != p.L3Off+p.IPHdrLen {
			t.Fatalf("L4Off %d is not L3Off %d + IPHdrLen %d", p.L4Off, p.L3Off, p.IPHdrLen)
		}
	}
	if !p.Inner.Valid && p.Inner != (Inner{}) {
		t.Fatalf("invalid Inner not zero: %+v", p.Inner)
	}
	if pl := p.Payload(); len(pl) > p.PayloadLen {
		t.Fatalf("Payload() %d bytes, PayloadLen %d", len(pl), p.PayloadLen)
	}
	_ = p.L4ChecksumOK()
	_ = p.IPv4HeaderChecksumOK()
	_ = p.String()
}

// FuzzDecodeAgainstGopacket compares Decode with gopacket's full decode on
// Ethernet frames both decode without trouble (see compareWithGopacket).
func FuzzDecodeAgainstGopacket(f *testing.F) {
	for _, np := range namedPackets(f) {
		f.Add(np.data)
	}
	f.Add(icmp6Error(f, 1, 4, udp6WithDestOpts(f)[14:]))
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Packet
		p.Decode(data, LinkEthernet)
		if p.Kind != KindOK {
			return
		}
		gp := gopacket.NewPacket(data, layers.LinkTypeEthernet, gopacket.DecodeOptions{NoCopy: true})
		if gp.ErrorLayer() != nil {
			return
		}
		compareWithGopacket(t, "fuzz", &p, gp, map[string]int{})
	})
}
