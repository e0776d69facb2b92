package packet

import (
	"encoding/binary"
	"testing"
)

// ipv6With is an IPv6 packet from fd00:198:18::1 to ::2 with next header
// nh and body.
func ipv6With(nh byte, body []byte) []byte {
	b := make([]byte, 40+len(body))
	b[0], b[6], b[7] = 0x60, nh, 64
	binary.BigEndian.PutUint16(b[4:], uint16(len(body)))
	b[23], b[39] = 1, 2
	copy(b[8:], []byte{0xfd, 0, 0x01, 0x98, 0, 0x18})
	copy(b[24:], []byte{0xfd, 0, 0x01, 0x98, 0, 0x18})
	copy(b[40:], body)
	return b
}

// TestIPv6ChainsAsTheKernelWalksThem: the kernel's ipv6_skip_exthdr reads
// two bytes of an extension header and moves on, past the datagram's end
// if the header says so, and skips atomic fragment headers however many
// there are; the decoder follows it (testdata/parity-ipv6-odd-chains.pcap
// checks the labels against the kernel).
func TestIPv6ChainsAsTheKernelWalksThem(t *testing.T) {
	udp := []byte{0x9c, 0x40, 0, 53, 0, 8, 0, 0}
	for _, c := range []struct {
		name  string
		data  []byte
		kind  Kind
		proto Proto
		l4    bool // a transport header was decoded
		frag  bool
	}{
		{"destination options running past the end, then UDP", ipv6With(60, []byte{17, 2, 1, 4, 0, 0, 0, 0}), KindOK, ProtoUDP, false, false},
		{"destination options running past the end, then GRE", ipv6With(60, []byte{47, 3, 1, 4, 0, 0, 0, 0, 0, 0, 0x88, 0x0b}), KindOK, ProtoGRE, false, false},
		{"destination options running past the end, then another extension header", ipv6With(60, []byte{0, 3, 1, 4, 0, 0, 0, 0}), KindMalformed, 0, false, false},
		// ip6_rcv drops a hop-by-hop header that is not all there, before
		// netfilter (found by the differential test, seed 57165).
		{"hop-by-hop running past the end", ipv6With(0, []byte{17, 0, 1, 4}), KindMalformed, 0, false, false},
		{"hop-by-hop longer than the packet", ipv6With(0, []byte{17, 1, 1, 4, 0, 0, 0, 0}), KindMalformed, 0, false, false},
		{"two atomic fragment headers, then UDP", ipv6With(44, append([]byte{44, 0, 0, 0, 0, 0, 0, 8, 17, 0, 0, 0, 0, 0, 0, 9}, udp...)), KindOK, ProtoUDP, true, false},
		{"an atomic fragment header, then a real fragment", ipv6With(44, append([]byte{44, 0, 0, 0, 0, 0, 0, 8, 17, 0, 0, 1, 0, 0, 0, 9}, udp...)), KindMalformed, 0, false, false},
		{"a real fragment, then another fragment header", ipv6With(44, append([]byte{44, 0, 0, 1, 0, 0, 0, 8, 17, 0, 0, 0, 0, 0, 0, 9}, udp...)), KindMalformed, 0, false, false},
	} {
		var p Packet
		p.Decode(c.data, LinkIP)
		if p.Kind != c.kind {
			t.Errorf("%s: kind %v, want %v", c.name, p.Kind, c.kind)
			continue
		}
		if c.kind != KindOK {
			continue
		}
		if p.Proto != c.proto || (p.L4Off != 0) != c.l4 || p.Frag.IsFragment != c.frag {
			t.Errorf("%s: proto %v, transport header %v, fragment %v; want %v, %v, %v", c.name, p.Proto, p.L4Off != 0, p.Frag.IsFragment, c.proto, c.l4, c.frag)
		}
	}
}
