package convgen

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/statewall/statewall/internal/pcaprewrite"
)

// TestNoAddressOutsideTestRanges generates the conversations of seeds 1 to
// 50000 (as make fuzz-kernel batches them, 250 to a batch), with every gate
// and with none, and checks every address in every packet: the IP headers
// of the packet and of every packet quoted inside it (ICMP and ICMPv6
// errors, a redirect's redirected header, tunnels), and the addresses ICMP
// messages carry (redirect gateways, neighbour discovery targets, MLD
// groups), each by its own walk below and by the rewriter's, which is what
// the oracle's KeepAddresses checks. An address cut short by a quote must
// still start as the test ranges do. An "altered quote" once changed the
// gateway of a quoted IPv4 redirect to 199.18.1.77 (seed 45361 with the
// bad-ipv4-header-sum gate), and a redirect padded a quote cut inside an
// address with zeros (seed 18741). About 13 s; with the race detector
// (make test), which makes it 95 s, and with -short, seeds 1 to 10000.
func TestNoAddressOutsideTestRanges(t *testing.T) {
	last := uint64(50000)
	if testing.Short() || raceEnabled {
		last = 10000
	}
	for _, gates := range []Gate{AllGates, 0} {
		t.Run(gates.String(), func(t *testing.T) {
			t.Parallel()
			checkAddresses(t, gates, last)
		})
	}
}

func checkAddresses(t *testing.T, gates Gate, last uint64) {
	packets := 0
	for first := uint64(1); first <= last; first += 250 {
		batchEnd := min(first+249, last)
		pkts, _ := Batch(seeds(first, batchEnd), Options{Gates: gates}, time.Millisecond)
		mp := pcaprewrite.NewMapper()
		for i, p := range pkts {
			packets++
			walkIP(p.Data, 0, func(a []byte, size int, what string) {
				if !addrPrefixInRange(a, size) {
					t.Errorf("gates %v, seed %d, packet %d (%s): %s %x outside the test ranges", gates, p.Seed, i, p.Note, what, a)
				}
			})
			pcaprewrite.RewritePacket(mp, uint32(layers.LinkTypeRaw), p.Data)
		}
		for a := range mp.Table() {
			if !pcaprewrite.InRange(a) || pcaprewrite.ReservedIPv4.Contains(a) || pcaprewrite.ReservedIPv6.Contains(a) {
				t.Errorf("gates %v, seeds %d-%d: the rewriter finds %v, outside the test ranges", gates, first, batchEnd, a)
			}
		}
		if t.Failed() {
			return
		}
	}
	t.Logf("gates %v: seeds 1-%d, %d packets", gates, last, packets)
}

// addrPrefixInRange reports whether a, a whole address of size bytes or
// the first bytes of one, is or starts as an address of 198.18.0.0/15
// (size 4) or fd00:198:18::/64 (size 16).
func addrPrefixInRange(a []byte, size int) bool {
	if size == 4 {
		want := []byte{198, 18}
		for i := range min(len(a), 2) {
			if a[i]&^boolByte(i == 1) != want[i] {
				return false
			}
		}
		if len(a) == 4 {
			return pcaprewrite.InRange(netip.AddrFrom4([4]byte(a)))
		}
		return true
	}
	want := []byte{0xfd, 0x00, 0x01, 0x98, 0x00, 0x18, 0, 0}
	for i := range min(len(a), 8) {
		if a[i] != want[i] {
			return false
		}
	}
	return true
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// walkIP calls f with every address (or the part of one that is there) in
// IP packet b, and in what it carries, depth levels down already.
func walkIP(b []byte, depth int, f func(a []byte, size int, what string)) {
	if len(b) == 0 || depth > 4 {
		return
	}
	where := func(s string) string { return fmt.Sprintf("%s (depth %d)", s, depth) }
	field := func(b []byte, off, n int, what string) {
		if off < len(b) {
			f(b[off:min(off+n, len(b))], n, where(what))
		}
	}
	switch b[0] >> 4 {
	case 4:
		field(b, 12, 4, "IPv4 source")
		field(b, 16, 4, "IPv4 destination")
		ihl := int(b[0]&15) * 4
		if len(b) < 20 || ihl < 20 || len(b) < ihl {
			return
		}
		walkOptions4(b[20:ihl], func(off int) { field(b, 20+off, 4, "IPv4 option address") })
		if binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
			return // a non-first fragment: no header of the next layer
		}
		end := min(len(b), max(ihl, int(binary.BigEndian.Uint16(b[2:]))))
		walkL4(b[ihl:end], b[9], false, depth, field, f)
	case 6:
		field(b, 8, 16, "IPv6 source")
		field(b, 24, 16, "IPv6 destination")
		if len(b) < 40 {
			return
		}
		end := min(len(b), 40+int(binary.BigEndian.Uint16(b[4:])))
		at, next := 40, b[6]
		for {
			switch next {
			case protoHopOpts, protoDstOpts, protoRouting, 51:
				if at+2 > end {
					return
				}
				n := 8 * (int(b[at+1]) + 1)
				if next == 51 {
					n = 4 * (int(b[at+1]) + 2)
				}
				next, at = b[at], at+n
				continue
			case protoFragment:
				if at+8 > end {
					return
				}
				if binary.BigEndian.Uint16(b[at+2:])&^7 != 0 {
					return
				}
				next, at = b[at], at+8
				continue
			}
			break
		}
		if at <= end {
			walkL4(b[at:end], next, true, depth, field, f)
		}
	}
}

// walkOptions4 calls at with the offset (in opts) of every address in the
// IPv4 options opts: record route, source routes, timestamps with
// addresses.
func walkOptions4(opts []byte, at func(off int)) {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case 0:
			return
		case 1:
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return
		}
		l := int(opts[i+1])
		switch opts[i] {
		case 7, 131, 137:
			for a := 3; a+4 <= l; a += 4 {
				at(i + a)
			}
		case 68:
			if l >= 4 && (opts[i+3]&15 == 1 || opts[i+3]&15 == 3) {
				for a := 4; a+8 <= l; a += 8 {
					at(i + a)
				}
			}
		}
		i += l
	}
}

// walkL4 walks what an IP packet carries as protocol proto.
func walkL4(p []byte, proto uint8, v6 bool, depth int, field func([]byte, int, int, string), f func([]byte, int, string)) {
	switch proto {
	case 4, 41: // IP in IP
		walkIP(p, depth+1, f)
	case protoGRE:
		if len(p) >= 4 && binary.BigEndian.Uint16(p)&0xf007 == 0 {
			hl := 4
			if p[0]&0x20 != 0 {
				hl += 4
			}
			if p[0]&0x10 != 0 {
				hl += 4
			}
			if et := binary.BigEndian.Uint16(p[2:]); hl <= len(p) && (et == 0x0800 || et == 0x86dd) {
				walkIP(p[hl:], depth+1, f)
			}
		}
	case protoICMP:
		if v6 || len(p) < 8 {
			return
		}
		switch p[0] {
		case 5:
			field(p, 4, 4, "ICMP redirect gateway")
			fallthrough
		case 3, 4, 11, 12:
			walkIP(p[8:], depth+1, f)
		case 9:
			n, size := int(p[4]), int(p[5])*4
			for k := 0; size >= 8 && k < n; k++ {
				field(p, 8+k*size, 4, "ICMP router address")
			}
		}
	case protoICMPv6:
		if !v6 || len(p) < 8 {
			return
		}
		switch t := p[0]; {
		case t >= 1 && t <= 4:
			walkIP(p[8:], depth+1, f)
		case t == 130 || t == 131 || t == 132:
			field(p, 8, 16, "MLD group")
		case t == 135 || t == 136:
			field(p, 8, 16, "neighbour discovery target")
			walkND(p, 24, depth, field, f)
		case t == 137:
			field(p, 8, 16, "redirect target")
			field(p, 24, 16, "redirect destination")
			walkND(p, 40, depth, field, f)
		case t == 133:
			walkND(p, 8, depth, field, f)
		case t == 134:
			walkND(p, 16, depth, field, f)
		}
	}
}

// walkND walks neighbour discovery options from p[o:]: the prefix of a
// prefix information option, the packet a redirected header quotes.
func walkND(p []byte, o, depth int, field func([]byte, int, int, string), f func([]byte, int, string)) {
	for o+2 <= len(p) {
		l := int(p[o+1]) * 8
		if l == 0 || o+l > len(p) {
			return
		}
		switch p[o] {
		case 3:
			field(p, o+16, 16, "prefix information")
		case 4:
			walkIP(p[o+8:o+l], depth+1, f)
		}
		o += l
	}
}
