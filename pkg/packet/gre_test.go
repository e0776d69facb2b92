package packet

import (
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// greIP is a raw IPv4 (or, with v6, IPv6) packet carrying the GRE bytes b.
func greIP(t testing.TB, v6 bool, b ...byte) []byte {
	if v6 {
		return serialize(t, ip6("2001:db8::1", "2001:db8::2", layers.IPProtocolGRE), raw(b))
	}
	return serialize(t, ip4("10.0.0.1", "10.0.0.2", layers.IPProtocolGRE), raw(b))
}

// TestDecodeGRE: the GRE fields are read as far as the IP header announces
// them (the base header from 4 bytes, enhanced GRE's call id from 8), a
// header announced but not captured is truncated, and GRE gets no payload
// offset (it is not a transport header).
func TestDecodeGRE(t *testing.T) {
	pptp := []byte{0x30, 0x01, 0x88, 0x0b, 0x00, 0x04, 0x40, 0x01, 0, 0, 0, 1, 0xff, 0x03, 0x00, 0x21}
	for _, tt := range []struct {
		name string
		data []byte
		cut  int // keep only so many bytes, if > 0
		kind Kind
		want GRE
	}{
		{"plain GRE with a key", greIP(t, false, 0x20, 0x00, 0x08, 0x00, 0, 0, 0, 7), 0, KindOK, GRE{Flags: 0x2000, Proto: 0x0800}},
		{"enhanced GRE: the call id", greIP(t, false, pptp...), 0, KindOK, GRE{Flags: 0x3001, Proto: GREProtoPPP, CallID: 0x4001, HasCallID: true}},
		{"enhanced GRE over IPv6", greIP(t, true, pptp...), 0, KindOK, GRE{Flags: 0x3001, Proto: GREProtoPPP, CallID: 0x4001, HasCallID: true}},
		{"enhanced GRE of 6 bytes: no call id", greIP(t, false, 0x20, 0x01, 0x88, 0x0b, 0, 0), 0, KindOK, GRE{Flags: 0x2001, Proto: GREProtoPPP}},
		{"enhanced GRE acknowledgement", greIP(t, false, 0x20, 0x81, 0x88, 0x0b, 0, 0, 0x80, 0x02, 0, 0, 0, 2), 0, KindOK, GRE{Flags: 0x2081, Proto: GREProtoPPP, CallID: 0x8002, HasCallID: true}},
		{"version 7: no call id", greIP(t, false, 0x20, 0x07, 0x88, 0x0b, 0, 0, 0x80, 0x02), 0, KindOK, GRE{Flags: 0x2007, Proto: GREProtoPPP}},
		{"2 bytes: no header", greIP(t, false, 0x20, 0x01), 0, KindOK, GRE{}},
		{"no bytes", greIP(t, true), 0, KindOK, GRE{}},
		{"base header cut by the capture", greIP(t, false, 0x20, 0x00, 0x08, 0x00, 0, 0, 0, 7), 20 + 3, KindTruncated, GRE{}},
		{"call id cut by the capture", greIP(t, false, pptp...), 20 + 7, KindTruncated, GRE{Flags: 0x3001, Proto: GREProtoPPP}},
		{"plain GRE cut after its base header: all there is to read", greIP(t, false, 0x20, 0x00, 0x08, 0x00, 0, 0, 0, 7), 20 + 5, KindOK, GRE{Flags: 0x2000, Proto: 0x0800}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.data
			if tt.cut > 0 {
				data = data[:tt.cut]
			}
			var p Packet
			p.Decode(data, LinkRaw)
			if p.Kind != tt.kind || p.GRE != tt.want {
				t.Errorf("got %v %+v, want %v %+v", p.Kind, p.GRE, tt.kind, tt.want)
			}
			if p.Proto != ProtoGRE || p.L4Off != p.IPHdrLen || p.PayloadOff != 0 || p.SrcPort != 0 || p.DstPort != 0 {
				t.Errorf("Proto %v L4Off %d (IP header %d) PayloadOff %d ports %d %d", p.Proto, p.L4Off, p.IPHdrLen, p.PayloadOff, p.SrcPort, p.DstPort)
			}
		})
	}
}

// TestDecodeInnerGRE: an ICMP error quoting an enhanced GRE packet carries
// the quoted call id, as far as the quote holds it.
func TestDecodeInnerGRE(t *testing.T) {
	quoted := greIP(t, false, 0x30, 0x01, 0x88, 0x0b, 0x00, 0x04, 0x40, 0x01, 0, 0, 0, 1)
	for _, tt := range []struct {
		n    int // quoted bytes
		want GRE
	}{
		{28, GRE{Flags: 0x3001, Proto: GREProtoPPP, CallID: 0x4001, HasCallID: true}},
		{26, GRE{Flags: 0x3001, Proto: GREProtoPPP}},
		{22, GRE{}},
	} {
		icmp := append([]byte{3, 3, 0, 0, 0, 0, 0, 0}, quoted[:tt.n]...)
		var p Packet
		p.Decode(serialize(t, ip4("10.0.0.2", "10.0.0.1", layers.IPProtocolICMPv4), raw(icmp)), LinkRaw)
		if p.Kind != KindOK || !p.Inner.Valid || p.Inner.Proto != ProtoGRE || p.Inner.GRE != tt.want {
			t.Errorf("quote of %d bytes: %v, inner %+v; want GRE %+v", tt.n, p.Kind, p.Inner, tt.want)
		}
	}
}

// TestGREAgainstGopacket compares the GRE fields with gopacket's GRE layer
// on every GRE packet of the bundled and shared captures that have GRE.
// The call id sits at bytes 6-7 for the kernel whatever the flags say;
// gopacket reads the key after a checksum word when C is set, so the two
// are compared only without it (PPTP never sets it).
func TestGREAgainstGopacket(t *testing.T) {
	files := []string{filepath.Join(pcapDir, "gre-ipv4-tunnel-mixed.pcap")}
	more, _ := filepath.Glob("../../testdata/gre-*.pcap")
	files = append(files, more...)
	n := 0
	for _, f := range files {
		pkts, lt := readCapture(t, f)
		for _, cp := range pkts {
			var p Packet
			p.Decode(cp.data, lt)
			if p.Kind != KindOK || p.Proto != ProtoGRE || p.Frag.IsFragment {
				continue
			}
			first := layers.LayerTypeIPv4
			switch {
			case lt == LinkEthernet:
				first = layers.LayerTypeEthernet
			case p.IPVersion == 6:
				first = layers.LayerTypeIPv6
			}
			gp := gopacket.NewPacket(cp.data, first, gopacket.DecodeOptions{NoCopy: true})
			g, _ := gp.Layer(layers.LayerTypeGRE).(*layers.GRE)
			where := filepath.Base(f)
			if g == nil {
				// gopacket gives up on a header shorter than its flags
				// say (a key announced, not there); the kernel and we
				// read what the fixed offsets hold.
				if gp.ErrorLayer() == nil && p.L4Len >= 4 {
					t.Errorf("%s #%d: gopacket found no GRE, we read %+v", where, cp.index, p.GRE)
				}
				continue
			}
			n++
			check(t, where, "GRE version", p.GRE.Version(), g.Version)
			check(t, where, "GRE protocol", p.GRE.Proto, uint16(g.Protocol))
			if g.Version == 1 && g.KeyPresent && !g.ChecksumPresent && !g.RoutingPresent {
				check(t, where, "call id", p.GRE.CallID, uint16(g.Key))
				check(t, where, "has call id", p.GRE.HasCallID, true)
			}
		}
	}
	if n < 40 {
		t.Errorf("only %d GRE packets compared", n)
	}
}

func TestGRENoAllocs(t *testing.T) {
	b := greIP(t, false, 0x30, 0x01, 0x88, 0x0b, 0x00, 0x04, 0x40, 0x01, 0, 0, 0, 1)
	var p Packet
	if n := testing.AllocsPerRun(100, func() { p.Decode(b, LinkRaw) }); n != 0 {
		t.Errorf("Decode(enhanced GRE): %v allocations, want 0", n)
	}
}

// FuzzGREAgainstGopacket compares the GRE fields with gopacket's GRE layer
// on random GRE headers over IPv4, where gopacket decodes them without
// trouble.
func FuzzGREAgainstGopacket(f *testing.F) {
	f.Add([]byte{0x30, 0x01, 0x88, 0x0b, 0x00, 0x04, 0x40, 0x01, 0, 0, 0, 1})
	f.Add([]byte{0x20, 0x00, 0x08, 0x00, 0, 0, 0, 7})
	f.Add([]byte{0x20, 0x81, 0x88, 0x0b, 0, 0, 0x80, 0x02, 0, 0, 0, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 64 { // a GRE header is at most 16 bytes; more only slows minimizing
			return
		}
		data := greIP(t, false, b...)
		var p Packet
		p.Decode(data, LinkRaw)
		if p.Kind != KindOK {
			t.Fatalf("a whole GRE packet decodes as %v", p.Kind)
		}
		gp := gopacket.NewPacket(data, layers.LayerTypeIPv4, gopacket.DecodeOptions{NoCopy: true})
		g, _ := gp.Layer(layers.LayerTypeGRE).(*layers.GRE)
		if g == nil {
			return
		}
		check(t, "fuzz", "GRE version", p.GRE.Version(), g.Version)
		check(t, "fuzz", "GRE protocol", p.GRE.Proto, uint16(g.Protocol))
		if g.Version == 1 && g.KeyPresent && !g.ChecksumPresent && !g.RoutingPresent {
			check(t, "fuzz", "call id", p.GRE.CallID, uint16(g.Key))
			check(t, "fuzz", "has call id", p.GRE.HasCallID, true)
		}
	})
}
