package defrag

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/statewall/statewall/pkg/packet"
)

// The shared captures live next to the repository (see MANIFEST.md there).
const pcapDir = "../../../shared/pcaps"

// TestCaptures replays the fragments of the shared captures and pins what
// happens to each, then decodes the reassembled datagram.
func TestCaptures(t *testing.T) {
	tests := []struct {
		file   string
		status map[int]Status // by packet index; packets not listed are not fragments
		tokens []int          // of the completed datagram
		badSum bool           // the reassembled datagram's transport checksum is wrong
		check  func(t *testing.T, p *packet.Packet)
	}{
		{
			file:   "ipv4-frags.pcap",
			status: map[int]Status{0: Pending, 1: Complete},
			tokens: []int{0, 1},
			check: func(t *testing.T, p *packet.Packet) {
				if p.Proto != packet.ProtoICMP || p.ICMPType != 8 || p.ICMPID != 5058 || p.ICMPSeq != 1 {
					t.Errorf("got %v, want the echo request id 5058 seq 1", p)
				}
			},
		},
		{
			// The TCP header itself is cut into 8-byte fragments.
			file:   "ipv4-frag-tcp-syn.pcap",
			status: map[int]Status{0: Pending, 1: Pending, 2: Complete},
			tokens: []int{0, 1, 2},
			check: func(t *testing.T, p *packet.Packet) {
				if p.Proto != packet.ProtoTCP || p.SrcPort != 12345 || p.DstPort != 8080 || p.TCPFlags != packet.TCPSyn {
					t.Errorf("got %v, want the SYN 1.1.1.1:12345 > 2.2.2.2:8080", p)
				}
			},
		},
		{
			file:   "ipv6-frag-tcp.pcap",
			status: map[int]Status{0: Pending, 1: Pending, 2: Complete},
			tokens: []int{0, 1, 2},
			check: func(t *testing.T, p *packet.Packet) {
				// The manifest's 444 bytes are the first fragment's share.
				if p.Proto != packet.ProtoTCP || p.SrcPort != 12345 || p.DstPort != 8080 || p.PayloadLen != 1000 {
					t.Errorf("got %v, want ::1:12345 > ::1:8080 with 1000 bytes", p)
				}
			},
		},
		{
			// The fragment at offset 408 comes twice (hop limit 1, then 64)
			// with different bytes. The second lies inside data already
			// received, so it drops alone and the first copy's bytes stay,
			// as in the kernel. Only the second copy makes the ICMPv6
			// checksum right (checked by hand): the datagram the kernel
			// reassembles has a bad checksum, and conntrack calls it invalid.
			file:   "ipv6-malformed-fragments.pcap",
			status: map[int]Status{4: Pending, 5: Pending, 7: Duplicate, 8: Complete},
			tokens: []int{4, 5, 8},
			badSum: true,
			check: func(t *testing.T, p *packet.Packet) {
				if p.Proto != packet.ProtoICMPv6 || p.ICMPType != 128 || p.ICMPID != 64206 || p.TTL != 64 {
					t.Errorf("got %v (hop limit %d), want the echo request id 64206 with the first fragment's hop limit 64", p, p.TTL)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join(pcapDir, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rd, err := pcapgo.NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			var r Reassembler
			var p, whole packet.Packet
			done := false
			for i := 0; ; i++ {
				data, ci, err := rd.ReadPacketData()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				p.Decode(data, packet.LinkType(rd.LinkType()))
				want, isFrag := tt.status[i]
				if p.Frag.IsFragment != isFrag {
					t.Fatalf("packet %d: IsFragment %v, want %v (%v)", i, p.Frag.IsFragment, isFrag, &p)
				}
				if !isFrag {
					continue
				}
				st, out, tokens := r.Add(&p, i, ci.Timestamp.UnixNano())
				if st != want {
					t.Fatalf("packet %d: %v, want %v", i, st, want)
				}
				if st != Complete {
					continue
				}
				done = true
				if !slices.Equal(tokens, tt.tokens) {
					t.Errorf("tokens %v, want %v", tokens, tt.tokens)
				}
				whole.Decode(out, packet.LinkIP)
				if whole.Kind != packet.KindOK || whole.Frag.IsFragment || whole.IPLen != len(out) ||
					whole.L4ChecksumOK() == tt.badSum || !whole.IPv4HeaderChecksumOK() || whole.Src != p.Src || whole.Dst != p.Dst {
					t.Errorf("reassembled datagram: %v, %d bytes, checksums %v %v", &whole, len(out), whole.L4ChecksumOK(), whole.IPv4HeaderChecksumOK())
				}
				tt.check(t, &whole)
			}
			if !done {
				t.Errorf("no datagram completed")
			}
			if r.Len() != 0 {
				t.Errorf("%d datagrams left pending", r.Len())
			}
		})
	}
}
