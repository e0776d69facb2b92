package packet

import (
	"encoding/binary"
	"testing"
)

// firstFrag6 is an IPv6 packet fd00:198:18::1 > fd00:198:18::2 with a fragment
// header (offset off, M set) whose next header is nh, then body.
func firstFrag6(nh byte, off int, body ...byte) []byte {
	b := make([]byte, 48, 48+len(body))
	b[0], b[6], b[7] = 0x60, 44, 64
	copy(b[8:], []byte{0xfd, 0, 1, 0x98, 0, 0x18, 15: 1})
	copy(b[24:], []byte{0xfd, 0, 1, 0x98, 0, 0x18, 15: 2})
	b[40] = nh
	binary.BigEndian.PutUint16(b[42:], uint16(off)|1)
	binary.BigEndian.PutUint32(b[44:], 7)
	b = append(b, body...)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	return b
}

// TestFragmentPassedOnUnreassembledDecodesAsAWholePacket: an IPv6 first
// fragment that the kernel's defragmentation passes on reaches conntrack
// as a packet of its transport protocol (ipv6_skip_exthdr steps over a
// fragment header of offset 0), with the fragment's length; a later
// fragment stays a fragment (ipv6_get_l4proto finds no protocol in it).
func TestFragmentPassedOnUnreassembledDecodesAsAWholePacket(t *testing.T) {
	syn := make([]byte, 20)
	binary.BigEndian.PutUint16(syn[0:], 40000)
	binary.BigEndian.PutUint16(syn[2:], 80)
	syn[12], syn[13] = 5<<4, 0x02
	udp := make([]byte, 67) // the length field says 200: more than the fragment
	binary.BigEndian.PutUint16(udp[0:], 5353)
	binary.BigEndian.PutUint16(udp[2:], 53)
	binary.BigEndian.PutUint16(udp[4:], 200)
	tests := []struct {
		name     string
		b        []byte
		frag     bool // Decode's Frag.IsFragment; DecodeUnreassembled's is false unless later
		kind     Kind // DecodeUnreassembled's
		proto    Proto
		sport    uint16
		l4Off    int // DecodeUnreassembled's, from L3Off
		later    bool
		wantFlag uint8
	}{
		{"a TCP SYN in a 67-byte first fragment", firstFrag6(6, 0, append(syn, make([]byte, 47)...)...), true, KindOK, ProtoTCP, 40000, 48, false, 0x02},
		{"a UDP header whose length runs past the fragment: malformed, as udp_error finds it",
			firstFrag6(17, 0, udp...), true, KindMalformed, ProtoUDP, 5353, 0, false, 0},
		{"a destination options header running past the fragment: the protocol, no header",
			firstFrag6(60, 0, 92, 91, 0, 0, 0, 0, 0, 0), true, KindOK, 92, 0, 0, false, 0},
		{"12 bytes of a TCP header: malformed, as tcp_error finds it", firstFrag6(6, 0, syn[:12]...), true, KindMalformed, ProtoTCP, 0, 0, false, 0},
		{"a later fragment", firstFrag6(6, 64, syn...), true, KindOK, ProtoTCP, 0, 0, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			p.Decode(tt.b, LinkIP)
			if p.Kind != KindOK || p.Frag.IsFragment != tt.frag {
				t.Fatalf("Decode: %v, fragment %v", &p, p.Frag.IsFragment)
			}
			p.DecodeUnreassembled(tt.b, LinkIP)
			if p.Kind != tt.kind || p.Frag.IsFragment != tt.later || p.Proto != tt.proto {
				t.Fatalf("DecodeUnreassembled: %v (kind %v, fragment %v, proto %d), want kind %v, fragment %v, proto %d",
					&p, p.Kind, p.Frag.IsFragment, p.Proto, tt.kind, tt.later, tt.proto)
			}
			if p.Kind != KindOK {
				return
			}
			if p.SrcPort != tt.sport || p.L4Off != tt.l4Off || p.TCPFlags != tt.wantFlag || p.Frag.ID != 7 {
				t.Fatalf("DecodeUnreassembled: %v: port %d, L4Off %d, flags %#x, id %d", &p, p.SrcPort, p.L4Off, p.TCPFlags, p.Frag.ID)
			}
			if !tt.later && p.L4Off != 0 && p.L4Len != len(tt.b)-48 {
				t.Fatalf("L4Len %d, want the fragment's %d", p.L4Len, len(tt.b)-48)
			}
		})
	}
}
