package defrag

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/statewall/statewall/pkg/packet"
)

// ipv6Frag is an IPv6 packet fd00:198:18::1 > fd00:198:18::2 carrying a
// fragment header (id 9, offset off, M more) whose next header is nh,
// then body.
func ipv6Frag(nh byte, off int, more bool, body ...byte) []byte {
	b := make([]byte, 48, 48+len(body))
	b[0], b[6], b[7] = 0x60, 44, 64
	src := [16]byte{0xfd, 0, 1, 0x98, 0, 0x18, 15: 1}
	dst := [16]byte{0xfd, 0, 1, 0x98, 0, 0x18, 15: 2}
	copy(b[8:], src[:])
	copy(b[24:], dst[:])
	fo := uint16(off)
	if more {
		fo |= 1
	}
	b[40] = nh
	binary.BigEndian.PutUint16(b[42:], fo)
	binary.BigEndian.PutUint32(b[44:], 9)
	b = append(b, body...)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	return b
}

// TestIPv6FragmentsTheKernelPassesOnUnreassembled pins the two cases in
// which nf_ct_frag6_gather returns 0 for a fragment (ipv6_defrag accepts
// it, conntrack tracks it as it is): a first fragment without the whole
// header chain (ipv6frag_thdr_truncated, checked before the datagram is
// looked up, so one pending is left alone), and a non-last fragment whose
// length is not a multiple of 8 (nf_ct_frag6_queue's -EPROTO after
// inet_frag_kill: the datagram's fragments are dropped). And the cases
// next to them that the kernel still queues or drops.
func TestIPv6FragmentsTheKernelPassesOnUnreassembled(t *testing.T) {
	eight := make([]byte, 8)
	tests := []struct {
		name   string
		frag   []byte
		want   Status
		tokens []int // besides a pending datagram's fragment, token 0
		left   int   // datagrams pending after
	}{
		{"a destination options header running past the first fragment",
			ipv6Frag(60, 0, true, 92, 91, 0, 0, 0, 0, 0, 0), Unreassembled, nil, 1},
		{"half a 16-byte destination options header",
			ipv6Frag(60, 0, true, 103, 1, 0, 0, 0, 0, 0, 0), Unreassembled, nil, 1},
		{"19 bytes of a TCP header", ipv6Frag(6, 0, true, make([]byte, 19)...), Unreassembled, nil, 1},
		{"4 bytes of an ICMPv6 header", ipv6Frag(58, 0, true, 128, 0, 0, 0), Unreassembled, nil, 1},
		{"1 byte of an unknown protocol is enough",
			ipv6Frag(253, 0, true, 1), Unreassembled, []int{0}, 0}, // queued, then -EPROTO: 1 is not a multiple of 8
		{"a non-last first fragment of 67 bytes", ipv6Frag(253, 0, true, make([]byte, 67)...), Unreassembled, []int{0}, 0},
		{"a non-last later fragment of 12 bytes", ipv6Frag(253, 16, true, make([]byte, 12)...), Unreassembled, []int{0}, 0},
		{"no next header, nothing after: queued, empty, dropped alone (ipv6_skip_exthdr fails, not truncated)",
			ipv6Frag(59, 0, true), Rejected, []int{1}, 1},
		{"an unaligned last fragment is queued", ipv6Frag(253, 24, false, make([]byte, 13)...), Pending, nil, 1},
		{"a whole header chain is queued", ipv6Frag(17, 0, true, eight...), Pending, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Reassembler
			held := ipv6Frag(253, 8, true, eight...) // token 0: the datagram's
			if st, _, _ := r.Add(decodeOK(t, held), 0, 0); st != Pending {
				t.Fatalf("the held fragment: %v", st)
			}
			st, out, tokens := r.Add(decodeOK(t, tt.frag), 1, 0)
			if st != tt.want || !slices.Equal(tokens, tt.tokens) && len(tokens)+len(tt.tokens) > 0 || out != nil {
				t.Fatalf("got %v %v (%d bytes), want %v %v", st, tokens, len(out), tt.want, tt.tokens)
			}
			if r.Len() != tt.left {
				t.Fatalf("%d datagrams pending, want %d", r.Len(), tt.left)
			}
		})
	}
}

func decodeOK(t *testing.T, b []byte) *packet.Packet {
	t.Helper()
	p := new(packet.Packet)
	p.Decode(b, packet.LinkIP)
	if p.Kind != packet.KindOK || !p.Frag.IsFragment {
		t.Fatalf("test fragment decodes as %v", p)
	}
	return p
}
