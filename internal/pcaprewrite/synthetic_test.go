package pcaprewrite

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Hand-built packets for what the shared captures do not contain: IPv4
// source-route options, IPv6 routing and home-address headers, GRE with a
// checksum, ICMP redirects, ND options, IGMPv3. Each is built with valid
// checksums (checked by gopacket or, for IGMP, by our own check), rewritten,
// and checked again; a copy with a corrupted transport checksum must stay
// corrupted.

func a4(s string) []byte { a := netip.MustParseAddr(s).As4(); return a[:] }
func a16(s string) []byte {
	a := netip.MustParseAddr(s).As16()
	return a[:]
}

func be16(v int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v)) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// ipv4 builds an IPv4 header (with options) around payload, checksummed.
func ipv4(proto byte, src, dst string, opts []byte, payload []byte) []byte {
	ihl := 20 + len(opts)
	h := cat([]byte{byte(0x40 | ihl/4), 0}, be16(ihl+len(payload)), []byte{0, 1, 0, 0, 64, proto, 0, 0}, a4(src), a4(dst), opts)
	binary.BigEndian.PutUint16(h[10:], Checksum(h, 0))
	return cat(h, payload)
}

func ipv6(next byte, src, dst string, payload []byte) []byte {
	return cat([]byte{0x60, 0, 0, 0}, be16(len(payload)), []byte{next, 64}, a16(src), a16(dst), payload)
}

// setL4 computes a transport checksum at off over l4 with the given
// pseudo-header addresses (nil src: no pseudo-header).
func setL4(l4 []byte, off int, proto byte, src, dst []byte) {
	binary.BigEndian.PutUint16(l4[off:], 0)
	var acc uint32
	if src != nil {
		acc = pseudoSum(src, dst, proto, len(l4))
	}
	binary.BigEndian.PutUint16(l4[off:], Checksum(l4, acc))
}

func tcpSyn() []byte {
	return cat(be16(40000), be16(80), []byte{0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0})
}

func udp(payload []byte) []byte {
	return cat(be16(5353), be16(53), be16(8+len(payload)), []byte{0, 0}, payload)
}

type synth struct {
	name    string
	pkt     []byte
	l4off   int // offset of the transport checksum in pkt, for the corrupted copy; -1 none
	gopkt   bool
	special []int // offsets of further IPv4 (len 4) / IPv6 (len 16) addresses to check
	alen    int
}

func synthetics(t *testing.T) []synth {
	var out []synth

	// IPv4 with NOP + LSRR (two hops) + TCP SYN; the TCP pseudo-header uses
	// the last hop as destination.
	{
		lsrr := cat([]byte{1, 131, 11, 4}, a4("192.0.2.1"), a4("203.0.113.9"))
		tcp := tcpSyn()
		setL4(tcp, 16, 6, a4("10.1.1.1"), a4("203.0.113.9"))
		p := ipv4(6, "10.1.1.1", "192.0.2.1", lsrr, tcp)
		out = append(out, synth{"ipv4-lsrr-tcp", p, 32 + 16, true, []int{24, 28}, 4})
	}
	// IPv6 routing header type 0 with two addresses, segments left 2, UDP.
	{
		u := udp([]byte("hello"))
		setL4(u, 6, 17, a16("2001:db8::1"), a16("2001:db8::ff"))
		rh := cat([]byte{17, 4, 0, 2, 0, 0, 0, 0}, a16("2001:db8::fe"), a16("2001:db8::ff"))
		p := ipv6(43, "2001:db8::1", "2001:db8::fe", cat(rh, u))
		out = append(out, synth{"ipv6-rh0-udp", p, 40 + 40 + 6, true, []int{48, 64}, 16})
	}
	// IPv6 home-address destination option + TCP: pseudo source = home address.
	{
		tcp := tcpSyn()
		setL4(tcp, 16, 6, a16("2001:db8:cafe::7"), a16("2001:db8::2"))
		do := cat([]byte{6, 2, 201, 16}, a16("2001:db8:cafe::7"), []byte{1, 2, 0, 0})
		p := ipv6(60, "2001:db8::1", "2001:db8::2", cat(do, tcp))
		out = append(out, synth{"ipv6-hao-tcp", p, 40 + 24 + 16, false, []int{44}, 16})
	}
	// GRE with checksum carrying IPv4/UDP.
	{
		u := udp([]byte("inner"))
		setL4(u, 6, 17, a4("172.16.0.1"), a4("172.16.0.2"))
		inner := ipv4(17, "172.16.0.1", "172.16.0.2", nil, u)
		gre := cat([]byte{0x80, 0, 0x08, 0x00, 0, 0, 0, 0}, inner)
		setL4(gre, 4, 47, nil, nil)
		p := ipv4(47, "10.9.9.1", "10.9.9.2", nil, gre)
		out = append(out, synth{"gre-csum-ipv4", p, 20 + 4, true, []int{20 + 8 + 12, 20 + 8 + 16}, 4})
	}
	// ICMP redirect: gateway + quoted IPv4/TCP.
	{
		tcp := tcpSyn()
		setL4(tcp, 16, 6, a4("10.0.0.5"), a4("8.8.8.8"))
		quoted := ipv4(6, "10.0.0.5", "8.8.8.8", nil, tcp)[:28]
		icmp := cat([]byte{5, 1, 0, 0}, a4("10.0.0.254"), quoted)
		setL4(icmp, 2, 1, nil, nil)
		p := ipv4(1, "10.0.0.1", "10.0.0.5", nil, icmp)
		out = append(out, synth{"icmp-redirect", p, 20 + 2, true, []int{24, 28 + 12, 28 + 16}, 4})
	}
	// ICMPv6 neighbour solicitation (target + source link-layer option).
	{
		ns := cat([]byte{135, 0, 0, 0, 0, 0, 0, 0}, a16("2001:db8::2"), []byte{1, 1, 2, 0, 0, 0, 0, 1})
		setL4(ns, 2, 58, a16("fe80::1"), a16("ff02::1:ff00:2"))
		p := ipv6(58, "fe80::1", "ff02::1:ff00:2", ns)
		out = append(out, synth{"nd-ns", p, 40 + 2, true, []int{48}, 16})
	}
	// Router advertisement with a prefix-information option.
	{
		pi := cat([]byte{3, 4, 64, 0xc0}, make([]byte, 12), a16("2001:db8:1::"))
		ra := cat([]byte{134, 0, 0, 0, 64, 0, 0, 30}, make([]byte, 8), pi)
		setL4(ra, 2, 58, a16("fe80::1"), a16("ff02::1"))
		p := ipv6(58, "fe80::1", "ff02::1", ra)
		out = append(out, synth{"nd-ra-prefix", p, 40 + 2, true, []int{40 + 16 + 16}, 16})
	}
	// ICMPv6 redirect with a redirected-header option quoting IPv6/UDP.
	{
		u := udp([]byte("x"))
		setL4(u, 6, 17, a16("2001:db8::5"), a16("2001:db8:9::9"))
		quoted := ipv6(17, "2001:db8::5", "2001:db8:9::9", u)
		rh := cat([]byte{4, byte((8 + len(quoted) + 7) / 8), 0, 0, 0, 0, 0, 0}, quoted)
		rh = append(rh, make([]byte, (8-len(rh)%8)%8)...)
		rd := cat([]byte{137, 0, 0, 0, 0, 0, 0, 0}, a16("fe80::99"), a16("2001:db8:9::9"), rh)
		setL4(rd, 2, 58, a16("fe80::1"), a16("2001:db8::5"))
		p := ipv6(58, "fe80::1", "2001:db8::5", rd)
		out = append(out, synth{"nd-redirect", p, 40 + 2, true, []int{48, 64, 40 + 40 + 8 + 8, 40 + 40 + 8 + 24}, 16})
	}
	// IGMPv3 report: one record with two sources.
	{
		rec := cat([]byte{1, 0, 0, 2}, a4("239.1.2.3"), a4("10.0.0.7"), a4("10.0.0.8"))
		ig := cat([]byte{0x22, 0, 0, 0, 0, 0, 0, 1}, rec)
		setL4(ig, 2, 2, nil, nil)
		p := ipv4(2, "10.0.0.9", "224.0.0.22", nil, ig)
		out = append(out, synth{"igmpv3-report", p, 20 + 2, false, []int{20 + 12, 20 + 16, 20 + 20}, 4})
	}
	return out
}

func gopacketValid(t *testing.T, b []byte) []string {
	t.Helper()
	return checksumVerdicts(gopacket.NewPacket(b, rawDecoder(b), gopacket.Default))
}

func TestSynthetic(t *testing.T) {
	for _, s := range synthetics(t) {
		t.Run(s.name, func(t *testing.T) {
			for _, corrupt := range []bool{false, true} {
				orig := slices.Clone(s.pkt)
				if corrupt {
					orig[s.l4off+1] ^= 0x40
				}
				before := checksumState(orig)
				if !corrupt && (before.L4 != 1 || before.IPHeader == 0) {
					t.Fatalf("built packet has bad checksums: %+v", before)
				}
				if corrupt && before.L4 != 0 {
					t.Fatalf("corrupted packet checks as %+v", before)
				}
				var gBefore []string
				if s.gopkt {
					gBefore = gopacketValid(t, orig)
					if !corrupt && slices.ContainsFunc(gBefore, func(v string) bool { return v != "" && !bytes.HasSuffix([]byte(v), []byte(":true")) }) {
						t.Fatalf("gopacket finds bad checksums in the built packet: %v", gBefore)
					}
				}
				mp := NewMapper()
				p := RewritePacket(mp, LinkRaw, orig)
				if p.Data == nil {
					t.Fatalf("skipped: %s", p.Skip)
				}
				if len(p.Notes) > 0 {
					t.Errorf("notes: %v", p.Notes)
				}
				if after := checksumState(p.Data); after != before {
					t.Errorf("corrupt=%v: checksums %+v before, %+v after", corrupt, before, after)
				}
				if s.gopkt {
					if gAfter := gopacketValid(t, p.Data); !slices.Equal(gBefore, gAfter) {
						t.Errorf("corrupt=%v: gopacket verdicts %v before, %v after", corrupt, gBefore, gAfter)
					}
				}
				// Header addresses and the listed payload addresses.
				offs := []int{12, 16}
				alen := 4
				if p.Version() == 6 {
					offs, alen = []int{8, 24}, 16
				}
				for _, o := range offs {
					checkAddr(t, p.Data, o, alen)
				}
				for _, o := range s.special {
					checkAddr(t, p.Data, o, s.alen)
				}
				for _, g := range addrsOf(t, gopacket.NewPacket(p.Data, rawDecoder(p.Data), gopacket.Default), 0) {
					if !inRangeIP(g) {
						t.Errorf("gopacket finds %v", g)
					}
				}
			}
		})
	}
}

func checkAddr(t *testing.T, b []byte, off, n int) {
	t.Helper()
	a, _ := netip.AddrFromSlice(b[off : off+n])
	if !InRange(a) {
		t.Errorf("address at %d is %v: outside the ranges", off, a)
	}
}

// TestPcapngAndLinkTypes feeds the same IP packet through every supported
// link-layer framing (and pcapng) and expects identical output.
func TestPcapngAndLinkTypes(t *testing.T) {
	tcp := tcpSyn()
	setL4(tcp, 16, 6, a4("10.1.1.1"), a4("10.2.2.2"))
	ip := ipv4(6, "10.1.1.1", "10.2.2.2", nil, tcp)
	eth := cat(make([]byte, 12), []byte{0x81, 0x00, 0, 6, 0x88, 0xa8, 0, 7, 0x08, 0x00}, ip, make([]byte, 6)) // QinQ + padding
	sll := cat([]byte{0, 0, 0, 1, 0, 6}, make([]byte, 8), []byte{0x08, 0x00}, ip)
	sll2 := cat([]byte{0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6}, make([]byte, 8), ip)
	null := cat([]byte{2, 0, 0, 0}, ip)
	want := RewritePacket(NewMapper(), LinkRaw, ip).Data
	for _, c := range []struct {
		lt    uint32
		frame []byte
	}{{LinkEthernet, eth}, {LinkSLL, sll}, {LinkSLL2, sll2}, {LinkNull, null}, {LinkIPv4, ip}} {
		if got := RewritePacket(NewMapper(), c.lt, c.frame); !bytes.Equal(got.Data, want) {
			t.Errorf("link type %d: %x (skip %q), want %x", c.lt, got.Data, got.Skip, want)
		}
	}
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: len(eth), Length: len(eth)}, eth); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	pkts, _, err := Rewrite(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 1 || !bytes.Equal(pkts[0].Data, want) {
		t.Errorf("pcapng: %+v", pkts)
	}
	// Truncated capture: skipped with a reason.
	if p := RewritePacket(NewMapper(), LinkRaw, ip[:30]); p.Data != nil || p.Skip == "" {
		t.Errorf("truncated packet not skipped: %+v", p)
	}
}

// FuzzRewritePacket: any frame of any supported link type is rewritten
// without panicking, and whatever is injectable has its header addresses in
// the test ranges.
func FuzzRewritePacket(f *testing.F) {
	for _, s := range synthetics(nil) {
		f.Add(uint8(0), s.pkt)
	}
	for _, path := range []string{"ipv6-malformed-fragments.pcap", "gre-ipv4-tunnel-mixed.pcap", "smtp-session.pcap", "ipv4-frag-tcp-syn.pcap"} {
		frames, _ := readOriginalF(sharedPcaps + "/" + path)
		for _, fr := range frames {
			f.Add(uint8(1), fr)
		}
	}
	lts := []uint32{LinkRaw, LinkEthernet, LinkSLL, LinkSLL2, LinkNull}
	f.Fuzz(func(t *testing.T, lt uint8, frame []byte) {
		p := RewritePacket(NewMapper(), lts[int(lt)%len(lts)], frame)
		if p.Data == nil {
			return
		}
		if p.Version() == 4 {
			checkAddr(t, p.Data, 12, 4)
			checkAddr(t, p.Data, 16, 4)
		} else {
			checkAddr(t, p.Data, 8, 16)
			checkAddr(t, p.Data, 24, 16)
		}
		FragmentOf(p.Data)
	})
}

func readOriginalF(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil, err
	}
	var frames [][]byte
	for {
		d, _, err := r.ReadPacketData()
		if err != nil {
			return frames, nil
		}
		frames = append(frames, d)
	}
}
