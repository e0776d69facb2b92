package defrag

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/statewall/statewall/pkg/packet"
)

// TestIPv6AtomicFragmentJoinsItsPendingDatagram pins what the kernel's
// nf_ct_frag6_gather does with an atomic fragment (offset 0, M clear): it
// looks its datagram up by id and queues it like any other fragment, as
// the last one, [0, length). Alone it completes at once (the packet
// without its fragment header); with fragments held under its id it
// overlaps them (the whole datagram dropped, RFC 5722: inet_frag_queue_insert
// IPFRAG_OVERLAP, inet_frag_kill), duplicates a run from 0 (dropped alone),
// or ends before the data held (dropped alone). A killed datagram is gone:
// a later fragment of it starts a new one. Seed 97605 of the differential
// test (testdata/kerneldiff/ipv6-frag-atomic-overlap.pcap).
func TestIPv6AtomicFragmentJoinsItsPendingDatagram(t *testing.T) {
	echo := []byte{128, 0, 0x78, 0x17, 0xa6, 0, 0x31, 0x6f, 1, 2, 3, 4, 5, 6, 7, 8}
	tests := []struct {
		name   string
		held   [][]byte // tokens 0, 1, ...
		atomic []byte   // token len(held)
		want   Status
		tokens []int
		left   int
	}{
		{"alone: complete", nil, ipv6Frag(58, 0, false, echo[:12]...), Complete, []int{0}, 0},
		{"after a first fragment it overlaps (seed 97605)",
			[][]byte{ipv6Frag(58, 0, true, echo[:8]...)}, ipv6Frag(58, 0, false, echo[:12]...), Overlap, []int{0, 1}, 0},
		{"after a later fragment it overlaps",
			[][]byte{ipv6Frag(58, 8, true, echo[8:16]...)}, ipv6Frag(58, 0, false, echo...), Overlap, []int{0, 1}, 0},
		{"the same bytes as a run from 0: a duplicate",
			[][]byte{ipv6Frag(58, 0, true, echo[:8]...), ipv6Frag(58, 8, true, echo[8:16]...)},
			ipv6Frag(58, 0, false, echo...), Duplicate, []int{2}, 1},
		{"shorter than the data held: dropped alone",
			[][]byte{ipv6Frag(58, 0, true, echo...)}, ipv6Frag(58, 0, false, echo[:8]...), Rejected, []int{1}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Reassembler
			for i, h := range tt.held {
				if st, _, _ := r.Add(decodeOK(t, h), i, 0); st != Pending {
					t.Fatalf("held fragment %d: %v", i, st)
				}
			}
			p := new(packet.Packet)
			p.Decode(tt.atomic, packet.LinkIP)
			if !Atomic(p) || p.Frag.IsFragment {
				t.Fatalf("the atomic fragment decodes as %v", p)
			}
			st, out, tokens := r.Add(p, len(tt.held), 0)
			if st != tt.want || !slices.Equal(tokens, tt.tokens) {
				t.Fatalf("got %v %v, want %v %v", st, tokens, tt.want, tt.tokens)
			}
			if r.Len() != tt.left {
				t.Fatalf("%d datagrams pending, want %d", r.Len(), tt.left)
			}
			if st == Complete {
				var whole packet.Packet
				whole.Decode(out, packet.LinkIP)
				if whole.Kind != packet.KindOK || whole.Proto != packet.ProtoICMPv6 || whole.Frag != (packet.Fragment{}) ||
					!bytes.Equal(out[40:], echo[:12]) || len(out) != 52 {
					t.Fatalf("reassembled %x", out)
				}
			}
			if st == Overlap {
				// The datagram is gone: its next fragment starts anew.
				if st, _, _ := r.Add(decodeOK(t, ipv6Frag(58, 16, false, echo[:8]...)), 9, 0); st != Pending || r.Len() != 1 {
					t.Fatalf("a later fragment: %v, %d pending", st, r.Len())
				}
			}
		})
	}
}

func TestAtomicIsOnlyAnIPv6AtomicFragment(t *testing.T) {
	for _, b := range [][]byte{
		ipv6Frag(58, 0, true, make([]byte, 8)...),
		ipv6Frag(58, 8, false, make([]byte, 8)...),
		whole6(ipv6Frag(58, 0, false, make([]byte, 8)...)),
	} {
		p := new(packet.Packet)
		p.Decode(b, packet.LinkIP)
		if Atomic(p) {
			t.Errorf("%x: atomic", b)
		}
	}
}

// whole6 is b, an IPv6 packet from ipv6Frag, without its fragment header.
func whole6(b []byte) []byte {
	w := append(b[:40:40], b[48:]...)
	w[6] = b[40]
	binary.BigEndian.PutUint16(w[4:], uint16(len(w)-40))
	return w
}
