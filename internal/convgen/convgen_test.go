package convgen

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/statewall/statewall/internal/pcaprewrite"
)

func seeds(a, b uint64) []uint64 {
	var s []uint64
	for x := a; x <= b; x++ {
		s = append(s, x)
	}
	return s
}

func TestDeterministic(t *testing.T) {
	for _, s := range seeds(1, 200) {
		a := Generate(s, SlotEndpoints(3), Options{Gates: AllGates})
		b := Generate(s, SlotEndpoints(3), Options{Gates: AllGates})
		if len(a.Packets) != len(b.Packets) {
			t.Fatalf("seed %d: %d then %d packets", s, len(a.Packets), len(b.Packets))
		}
		for i := range a.Packets {
			if !bytes.Equal(a.Packets[i].Data, b.Packets[i].Data) || a.Packets[i].At != b.Packets[i].At || a.Packets[i].Note != b.Packets[i].Note {
				t.Fatalf("seed %d packet %d differs between two runs", s, i)
			}
		}
	}
}

func TestSlotEndpoints(t *testing.T) {
	seen := map[netip.Addr]int{}
	for k := 0; k < MaxSlots; k++ {
		ep := SlotEndpoints(k)
		for _, a := range []netip.Addr{ep.C4, ep.S4, ep.R4, ep.C6, ep.S6, ep.R6} {
			if !pcaprewrite.InRange(a) || pcaprewrite.ReservedIPv4.Contains(a) || pcaprewrite.ReservedIPv6.Contains(a) {
				t.Fatalf("slot %d: %v outside the test ranges or reserved", k, a)
			}
			if a.Is4() && (a.As4()[3] == 0 || a.As4()[3] == 255) {
				t.Fatalf("slot %d: %v ends in .0 or .255", k, a)
			}
			if j, dup := seen[a]; dup {
				t.Fatalf("slots %d and %d share %v", j, k, a)
			}
			seen[a] = k
		}
	}
}

// TestAddressesInRange checks what the oracle's KeepAddresses checks: every
// address the rewriter finds in the packets (quotes, neighbour discovery,
// tunnels) is in the test ranges.
func TestAddressesInRange(t *testing.T) {
	pkts, _ := Batch(seeds(1, 3000), Options{Gates: AllGates}, time.Millisecond)
	path := filepath.Join(t.TempDir(), "b.pcap")
	if err := WriteFile(path, pkts); err != nil {
		t.Fatal(err)
	}
	rw, table, err := pcaprewrite.RewriteFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rw) != len(pkts) {
		t.Fatalf("%d packets written, %d read back", len(pkts), len(rw))
	}
	for a := range table {
		if !pcaprewrite.InRange(a) || pcaprewrite.ReservedIPv4.Contains(a) || pcaprewrite.ReservedIPv6.Contains(a) {
			t.Errorf("address %v outside the test ranges", a)
		}
	}
}

// TestChecksums checks the checksums of the packets that are meant to be
// right, with gopacket's own computation.
func TestChecksums(t *testing.T) {
	checked := 0
	for _, s := range seeds(1, 400) {
		for _, p := range Generate(s, SlotEndpoints(0), Options{}).Packets {
			if strings.Contains(p.Note, "bad checksum") || strings.Contains(p.Note, "frag") || strings.Contains(p.Note, "broken header") ||
				strings.Contains(p.Note, "length field") || strings.Contains(p.Note, "truncated") || strings.Contains(p.Note, "trailing bytes") ||
				strings.Contains(p.Note, "zero checksum") || strings.Contains(p.Note, "other IP version") || strings.Contains(p.Note, "quote") {
				continue
			}
			first := layers.LayerTypeIPv4
			if p.Data[0]>>4 == 6 {
				first = layers.LayerTypeIPv6
			}
			g := gopacket.NewPacket(p.Data, first, gopacket.Default)
			var net gopacket.NetworkLayer
			if ip4, ok := g.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
				net = ip4
			} else if ip6, ok := g.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
				net = ip6
			}
			for _, l := range g.Layers() {
				var c gopacket.LayerWithChecksum
				switch x := l.(type) {
				case *layers.TCP:
					x.SetNetworkLayerForChecksum(net)
					c = x
				case *layers.UDP:
					x.SetNetworkLayerForChecksum(net)
					c = x
				case *layers.ICMPv6:
					x.SetNetworkLayerForChecksum(net)
					c = x
				case *layers.ICMPv4, *layers.IPv4:
					c = x.(gopacket.LayerWithChecksum)
				}
				if c == nil {
					continue
				}
				if err, res := c.VerifyChecksum(); err == nil && !res.Valid {
					t.Errorf("seed %d: %T checksum wrong in %q", s, l, p.Note)
				}
				checked++
			}
		}
	}
	if checked < 1000 {
		t.Errorf("only %d checksums checked", checked)
	}
}

// gateSeen reports whether the packets of a conversation show the gate's
// traffic.
func gateSeen(g Gate, pkts []Packet) bool {
	for _, p := range pkts {
		d := p.Data
		v6 := d[0]>>4 == 6
		proto := d[9]
		if v6 {
			proto = lastHeader6(d)
		}
		switch g {
		case GateSCTP:
			if proto == protoSCTP {
				return true
			}
		case GateGRE:
			if proto == protoGRE {
				return true
			}
		case GateUDPLite:
			if proto == protoUDPLite {
				return true
			}
		case GateNoNextHeader:
			if v6 && proto == protoNoNext {
				return true
			}
		case GateSelfReverse:
			if v6 && bytes.Equal(d[8:24], d[24:40]) || !v6 && bytes.Equal(d[12:16], d[16:20]) {
				return true
			}
		case GateBadIPv4HeaderSum:
			if !v6 && ^fold(onesSum(d[:int(d[0]&0x0f)*4], 0)) != 0 {
				return true
			}
		case GateICMPv6OddErrors:
			if strings.Contains(p.Note, "icmp6 error 0/") || strings.Contains(p.Note, "redirect") {
				return true
			}
			for ty := 5; ty < 128; ty++ {
				if strings.Contains(p.Note, "icmp6 error "+strconv.Itoa(ty)+"/") {
					return true
				}
			}
		case GateShortQuote:
			if strings.Contains(p.Note, "header+4") {
				return true
			}
		case GateMultiSACK:
			if strings.Contains(p.Note, "two SACK options") {
				return true
			}
		case GateExtPastPayload:
			if strings.Contains(p.Note, "payload length ends") {
				return true
			}
		case GateIPv6FragUnaligned, GateIPv6FragHeaderChain:
			f := pcaprewrite.FragmentOf(d)
			if !v6 || !f.IsFragment {
				continue
			}
			if g == GateIPv6FragUnaligned && f.More && f.Len%8 != 0 {
				return true
			}
			if g == GateIPv6FragHeaderChain && f.First && f.Len < headerChain6(d[f.DataOff:], f.Proto) {
				return true
			}
		}
	}
	return false
}

func lastHeader6(d []byte) uint8 {
	at, next := 40, d[6]
	for at+8 <= len(d) {
		switch next {
		case protoHopOpts, protoDstOpts, protoRouting:
			next, at = d[at], at+8*(int(d[at+1])+1)
		case protoFragment:
			if binary.BigEndian.Uint16(d[at+2:])&^7 != 0 {
				return protoFragment
			}
			next, at = d[at], at+8
		default:
			return next
		}
	}
	return next
}

// TestGates checks that each gate's traffic appears with the gate on and
// never without it (GateTCPSynRST is not visible in single packets).
func TestGates(t *testing.T) {
	for _, g := range Gates() {
		if g == GateTCPSynRST {
			continue
		}
		on, off := 0, 0
		for _, s := range seeds(1, 600) {
			if gateSeen(g, Generate(s, SlotEndpoints(0), Options{Gates: g}).Packets) {
				on++
			}
			if gateSeen(g, Generate(s, SlotEndpoints(0), Options{Gates: AllGates &^ g}).Packets) {
				off++
			}
		}
		if on == 0 || off != 0 {
			t.Errorf("gate %s: its traffic in %d conversations with it, %d without it", g, on, off)
		}
	}
}

func TestParseGates(t *testing.T) {
	for _, g := range append(Gates(), 0, AllGates, GateSCTP|GateUDPLite) {
		got, err := ParseGates(g.String())
		if err != nil || got != g {
			t.Errorf("ParseGates(%q) = %v, %v; want %v", g.String(), got, err, g)
		}
	}
	if _, err := ParseGates("sctp,nope"); err == nil {
		t.Error("ParseGates accepted an unknown gate")
	}
}

func TestMinimize(t *testing.T) {
	need := []int{3, 17, 42}
	calls := 0
	got, err := Minimize(60, []int{50}, func(keep []int) (bool, error) {
		calls++
		if !slices.Contains(keep, 50) {
			t.Fatal("a must index was left out")
		}
		for _, n := range need {
			if !slices.Contains(keep, n) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{3, 17, 42, 50}; !slices.Equal(got, want) {
		t.Errorf("Minimize = %v, want %v", got, want)
	}
	t.Logf("%d calls", calls)
}

// TestGaps checks the promise of Options.Gaps: every time between two
// packets of a conversation is at least 0.2 s away from a whole second
// once it is above 0.2 s.
func TestGaps(t *testing.T) {
	long := 0
	for _, s := range seeds(1, 300) {
		ps := Generate(s, SlotEndpoints(0), Options{Gaps: true}).Packets
		for i := range ps {
			for j := i + 1; j < len(ps); j++ {
				d := ps[j].At - ps[i].At
				frac := d % time.Second
				if d > 200*time.Millisecond && (frac < 200*time.Millisecond || frac > 800*time.Millisecond) {
					t.Fatalf("seed %d: %v between packets %d and %d", s, d, i, j)
				}
			}
			if i > 0 && ps[i].At-ps[i-1].At > time.Second {
				long++
			}
		}
	}
	if long == 0 {
		t.Error("no long gaps")
	}
}
