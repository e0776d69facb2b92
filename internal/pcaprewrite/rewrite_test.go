package pcaprewrite

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

const sharedPcaps = "/work/shared/pcaps"

// captures lists the shared corpus and the repository's own testdata.
func captures(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pat := range []string{filepath.Join(sharedPcaps, "*.pcap"), "../../testdata/*.pcap", "../../testdata/*.pcapng"} {
		m, _ := filepath.Glob(pat)
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatalf("no captures found under %s or testdata", sharedPcaps)
	}
	return files
}

// readOriginal returns the original frames and link type, read independently
// of the code under test.
func readOriginal(t *testing.T, path string) ([][]byte, layers.LinkType) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for {
		d, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		frames = append(frames, d)
	}
	return frames, r.LinkType()
}

func decoderFor(lt layers.LinkType) gopacket.Decoder {
	switch lt {
	case layers.LinkTypeIPv4:
		return layers.LayerTypeIPv4
	case layers.LinkTypeIPv6:
		return layers.LayerTypeIPv6
	}
	return lt
}

func rawDecoder(data []byte) gopacket.Decoder {
	if data[0]>>4 == 6 {
		return layers.LayerTypeIPv6
	}
	return layers.LayerTypeIPv4
}

// checksumVerdicts lists, for every network-and-above layer gopacket can
// verify, its type and whether its checksum is valid.
func checksumVerdicts(p gopacket.Packet) []string {
	var out []string
	var netLayer gopacket.NetworkLayer
	for _, l := range p.Layers() {
		switch v := l.(type) {
		case *layers.IPv4, *layers.IPv6:
			netLayer = v.(gopacket.NetworkLayer)
		case interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}:
			// gopacket leaves the pseudo-header source unset when decoding
			if netLayer != nil {
				v.SetNetworkLayerForChecksum(netLayer)
			}
		}
		lwc, ok := l.(gopacket.LayerWithChecksum)
		if !ok {
			continue
		}
		err, res := lwc.VerifyChecksum()
		if err != nil {
			out = append(out, fmt.Sprintf("%v:err", l.LayerType()))
			continue
		}
		out = append(out, fmt.Sprintf("%v:%v", l.LayerType(), res.Valid))
	}
	return out
}

// addrsOf collects every address gopacket finds in a packet: IP layers
// (tunnelled ones included), ICMP/ICMPv6 error quotes (recursively), ND
// targets and MLD/IGMP group addresses.
func addrsOf(t *testing.T, p gopacket.Packet, depth int) []net.IP {
	var out []net.IP
	for _, l := range p.Layers() {
		switch v := l.(type) {
		case *layers.IPv4:
			out = append(out, v.SrcIP, v.DstIP)
		case *layers.IPv6:
			out = append(out, v.SrcIP, v.DstIP)
		case *layers.ICMPv4:
			if isICMP4Error(v.TypeCode.Type()) && len(v.Payload) > 0 && depth < 4 {
				out = append(out, addrsOf(t, gopacket.NewPacket(v.Payload, layers.LayerTypeIPv4, gopacket.Default), depth+1)...)
			}
			if v.TypeCode.Type() == 5 {
				out = append(out, net.IP(v.Contents[4:8]))
			}
		case *layers.ICMPv6:
			if ty := v.TypeCode.Type(); ty >= 1 && ty <= 4 && len(v.Payload) > 4 && depth < 4 {
				// gopacket leaves the 4 type-specific bytes in the payload
				out = append(out, addrsOf(t, gopacket.NewPacket(v.Payload[4:], layers.LayerTypeIPv6, gopacket.Default), depth+1)...)
			}
		case *layers.ICMPv6NeighborSolicitation:
			out = append(out, v.TargetAddress)
		case *layers.ICMPv6NeighborAdvertisement:
			out = append(out, v.TargetAddress)
		case *layers.ICMPv6Redirect:
			out = append(out, v.TargetAddress, v.DestinationAddress)
		case *layers.MLDv1MulticastListenerQueryMessage:
			out = append(out, v.MulticastAddress)
		case *layers.MLDv1MulticastListenerReportMessage:
			out = append(out, v.MulticastAddress)
		case *layers.MLDv1MulticastListenerDoneMessage:
			out = append(out, v.MulticastAddress)
		case *layers.MLDv2MulticastListenerQueryMessage:
			out = append(out, v.MulticastAddress)
			out = append(out, v.SourceAddresses...)
		case *layers.MLDv2MulticastListenerReportMessage:
			for _, r := range v.MulticastAddressRecords {
				out = append(out, r.MulticastAddress)
				out = append(out, r.SourceAddresses...)
			}
		case *layers.IGMPv1or2:
			out = append(out, v.GroupAddress)
		case *layers.IGMP:
			out = append(out, v.GroupAddress)
			out = append(out, v.SourceAddresses...)
			for _, r := range v.GroupRecords {
				out = append(out, r.MulticastAddress)
				out = append(out, r.SourceAddresses...)
			}
		}
	}
	return out
}

func inRangeIP(ip net.IP) bool {
	if ip == nil {
		return true // a field gopacket did not fill in
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	if len(ip) == 4 || a.Is4() {
		return IPv4Range.Contains(a.Unmap())
	}
	return IPv6Range.Contains(a)
}

// TestCorpus rewrites every shared capture and checks: no address outside
// the ranges (decoded by gopacket, quotes included); every checksum gopacket
// can verify is valid after iff it was valid before; the packet count and
// order are kept; the map is one-to-one into the ranges and agrees with the
// headers.
func TestCorpus(t *testing.T) {
	for _, path := range captures(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			pkts, m, err := RewriteFile(path)
			if err != nil {
				t.Fatal(err)
			}
			frames, lt := readOriginal(t, path)
			if len(pkts) != len(frames) {
				t.Fatalf("%d packets rewritten, %d in the file", len(pkts), len(frames))
			}
			seen := map[netip.Addr]netip.Addr{}
			for o, n := range m {
				if !InRange(n) {
					t.Errorf("map %v -> %v: outside the ranges", o, n)
				}
				if o.Is4() != n.Is4() {
					t.Errorf("map %v -> %v changes family", o, n)
				}
				if prev, dup := seen[n]; dup {
					t.Errorf("map not one-to-one: %v and %v -> %v", prev, o, n)
				}
				seen[n] = o
				if n.Is4() && (n.As4()[3] == 0 || n.As4()[3] == 255 || ReservedIPv4.Contains(n)) {
					t.Errorf("map %v -> %v: a .0/.255/reserved address", o, n)
				}
			}
			injected := 0
			for i, p := range pkts {
				if p.Index != i {
					t.Fatalf("packet %d has index %d", i, p.Index)
				}
				if p.Data == nil {
					if p.Skip == "" {
						t.Errorf("packet %d: no data and no skip reason", i)
					}
					continue
				}
				injected++
				for _, n := range p.Notes {
					if strings.Contains(n, "checksum validity changed") {
						t.Errorf("packet %d: %s", i, n)
					}
				}
				orig := gopacket.NewPacket(frames[i], decoderFor(lt), gopacket.Default)
				got := gopacket.NewPacket(p.Data, rawDecoder(p.Data), gopacket.Default)
				if el := got.ErrorLayer(); el != nil && orig.ErrorLayer() == nil {
					t.Errorf("packet %d: rewritten packet fails to decode: %v", i, el.Error())
				}
				for _, a := range addrsOf(t, got, 0) {
					if !inRangeIP(a) {
						t.Errorf("packet %d: address %v outside the test ranges", i, a)
					}
				}
				// The original addresses map to the rewritten ones.
				oa, ga := addrsOf(t, orig, 0), addrsOf(t, got, 0)
				if len(oa) != len(ga) {
					t.Errorf("packet %d: %d addresses before, %d after", i, len(oa), len(ga))
				} else {
					for k := range oa {
						o, _ := netip.AddrFromSlice(oa[k])
						g, _ := netip.AddrFromSlice(ga[k])
						if len(oa[k]) == 16 && o.Is4In6() && g.Is4In6() {
							o, g = o.Unmap(), g.Unmap() // gopacket's net.IP for IPv4 fields
						}
						if m[o] != g {
							t.Errorf("packet %d: address %d is %v, map says %v -> %v", i, k, g, o, m[o])
						}
					}
				}
				if b, a := checksumVerdicts(orig), checksumVerdicts(got); !slices.Equal(b, a) {
					t.Errorf("packet %d: checksum validity before %v, after %v", i, b, a)
				}
				if b, a := checksumStateOfFrame(t, lt, frames[i]), checksumState(p.Data); b != a {
					t.Errorf("packet %d: own checksum check before %+v, after %+v", i, b, a)
				}
			}
			if injected == 0 {
				t.Errorf("no injectable packet")
			}
		})
	}
}

func checksumStateOfFrame(t *testing.T, lt layers.LinkType, frame []byte) csumState {
	ip, why := linkToIP(uint32(lt), frame)
	if ip == nil {
		t.Fatalf("frame not IP: %s", why)
	}
	ip, _ = trimIP(ip)
	return checksumState(ip)
}

// reassemble joins rewritten fragments (same id) into one datagram's
// transport bytes.
func reassemble(t *testing.T, pkts []Packet) (payload []byte, first []byte) {
	t.Helper()
	var parts [][2]int
	var datas [][]byte
	for _, p := range pkts {
		f := FragmentOf(p.Data)
		if !f.IsFragment {
			continue
		}
		var body []byte
		if p.Version() == 4 {
			body = p.Data[int(p.Data[0]&0xf)*4:]
		} else {
			lay := walkV6(p.Data)
			body = p.Data[lay.l4:]
		}
		if f.First {
			first = p.Data
		}
		parts = append(parts, [2]int{f.Offset, len(body)})
		datas = append(datas, body)
	}
	for k, pr := range parts {
		if need := pr[0] + pr[1]; need > len(payload) {
			payload = append(payload, make([]byte, need-len(payload))...)
		}
		copy(payload[pr[0]:], datas[k])
	}
	return payload, first
}

// TestFragmentChecksums reassembles the rewritten fragments and checks the
// transport checksum over the whole datagram: ipv4-frag-tcp-syn keeps its TCP
// checksum in the third 8-byte fragment, ipv6-frag-tcp in the first.
func TestFragmentChecksums(t *testing.T) {
	for _, c := range []struct {
		file  string
		proto uint8
	}{{"ipv4-frag-tcp-syn.pcap", protoTCP}, {"ipv6-frag-tcp.pcap", protoTCP}, {"ipv4-frags.pcap", protoICMP}} {
		t.Run(c.file, func(t *testing.T) {
			pkts, _, err := RewriteFile(filepath.Join(sharedPcaps, c.file))
			if err != nil {
				t.Fatal(err)
			}
			payload, first := reassemble(t, pkts)
			if first == nil || len(payload) == 0 {
				t.Fatal("no fragments found")
			}
			var acc uint32
			if c.proto != protoICMP {
				if first[0]>>4 == 4 {
					acc = pseudoSum(first[12:16], first[16:20], c.proto, len(payload))
				} else {
					acc = pseudoSum(first[8:24], first[24:40], c.proto, len(payload))
				}
			}
			if got := fold(sum16(payload, acc)); got != 0xffff {
				t.Errorf("reassembled checksum sum %#04x, want 0xffff", got)
			}
		})
	}
}

func TestAdjustKeepsValidity(t *testing.T) {
	// A UDP-like region with a correct checksum and one wrong by 1.
	region := []byte{0x12, 0x34, 0x00, 0x35, 0x00, 0x0c, 0, 0, 0xde, 0xad, 0xbe, 0xef}
	src, dst := []byte{10, 0, 0, 1}, []byte{10, 0, 0, 2}
	c := Checksum(region, pseudoSum(src, dst, 17, len(region)))
	for _, bad := range []bool{false, true} {
		b := slices.Clone(region)
		cc := c
		if bad {
			cc++
		}
		binary.BigEndian.PutUint16(b[6:], cc)
		nsrc, ndst := []byte{198, 18, 0, 1}, []byte{198, 18, 0, 2}
		adjustField(b, 6, fold(sum16(src, sum16(dst, 0))), fold(sum16(nsrc, sum16(ndst, 0))), true)
		ok := fold(sum16(b, pseudoSum(nsrc, ndst, 17, len(b)))) == 0xffff
		if ok == bad {
			t.Errorf("bad=%v: valid after adjust = %v", bad, ok)
		}
	}
	// UDP checksum 0 means none: left alone.
	b := slices.Clone(region)
	adjustField(b, 6, 1, 2, true)
	if b[6] != 0 || b[7] != 0 {
		t.Errorf("zero UDP checksum changed to %x", b[6:8])
	}
}

func TestMapperOrder(t *testing.T) {
	mp := NewMapper()
	var got []string
	for i := 0; i < 300; i++ {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		n := mp.Map(a)
		if mp.Map(a) != n {
			t.Fatal("not stable")
		}
		got = append(got, n.String())
	}
	if got[0] != "198.18.0.1" || got[253] != "198.18.0.254" || got[254] != "198.18.1.1" {
		t.Errorf("unexpected order: %v %v %v", got[0], got[253], got[254])
	}
	if n := mp.Map(netip.MustParseAddr("fe80::1")); n != netip.MustParseAddr("fd00:198:18::1") {
		t.Errorf("first IPv6 -> %v", n)
	}
	if n := mp.Map(netip.MustParseAddr("::ffff:10.0.0.1")); n != netip.MustParseAddr("fd00:198:18::2") {
		t.Errorf("IPv4-mapped IPv6 -> %v, want an IPv6 address", n)
	}
}

// TestSkips checks that non-IP frames keep their index with a reason.
func TestSkips(t *testing.T) {
	pkts, _, err := RewriteFile(filepath.Join(sharedPcaps, "tcpreplay-test.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]int{}
	for _, p := range pkts {
		if p.Skip != "" {
			reasons[p.Skip]++
		}
	}
	t.Logf("skips: %v", reasons)
	var arp, mpls, llc bool
	for r := range reasons {
		arp = arp || strings.Contains(r, "ARP")
		mpls = mpls || strings.Contains(r, "MPLS")
		llc = llc || strings.Contains(r, "LLC")
	}
	if !arp || !mpls || !llc {
		t.Errorf("expected ARP, MPLS and LLC skips, got %v", reasons)
	}
}

func TestWritePcap(t *testing.T) {
	pkts, _, err := RewriteFile(filepath.Join(sharedPcaps, "tcpreplay-fragroute.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	for _, lt := range []uint32{LinkRaw, LinkEthernet} {
		var buf bytes.Buffer
		if err := WritePcap(&buf, pkts, lt); err != nil {
			t.Fatal(err)
		}
		back, _, err := Rewrite(&buf)
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for _, p := range pkts {
			if p.Data == nil {
				continue
			}
			if k >= len(back) {
				t.Fatalf("link %d: only %d packets read back", lt, len(back))
			}
			if !back[k].Timestamp.Equal(p.Timestamp) {
				t.Errorf("link %d packet %d: timestamp %v, want %v", lt, k, back[k].Timestamp, p.Timestamp)
			}
			if back[k].Version() != p.Version() || len(back[k].Data) != len(p.Data) {
				t.Errorf("link %d packet %d: differs after round trip", lt, k)
			}
			k++
		}
		if k != len(back) {
			t.Errorf("link %d: %d packets written, %d read", lt, k, len(back))
		}
	}
}
