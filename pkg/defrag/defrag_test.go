package defrag

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/statewall/statewall/pkg/packet"
)

// Datagrams are built whole with gopacket and cut into fragments by the
// helpers below, so a reassembled datagram can be compared byte for byte
// with the original.

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

type raw []byte

func (r raw) SerializeTo(b gopacket.SerializeBuffer, _ gopacket.SerializeOptions) error {
	buf, err := b.PrependBytes(len(r))
	copy(buf, r)
	return err
}
func (r raw) LayerType() gopacket.LayerType { return gopacket.LayerTypePayload }

// tcp4 is an IPv4 TCP segment 10.0.0.1:1000 > 10.0.0.2:80 with id 0x4242,
// tos tos and 44 bytes of data: 64 bytes to fragment after the IP header.
func tcp4(t testing.TB, tos uint8) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: 0x4242, TOS: tos, Protocol: layers.IPProtocolTCP,
		SrcIP: net.IPv4(10, 0, 0, 1), DstIP: net.IPv4(10, 0, 0, 2)}
	tcp := &layers.TCP{SrcPort: 1000, DstPort: 80, Seq: 7, ACK: true, Ack: 9, Window: 1000}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, ip, tcp, gopacket.Payload(bytes.Repeat([]byte("0123456789a"), 4)))
}

// udp6 is an IPv6 UDP datagram 2001:db8::1:1000 > 2001:db8::2:53 behind a
// hop-by-hop header (the unfragmentable part is 48 bytes), with 56 bytes
// of data: 64 bytes to fragment.
func udp6(t testing.TB) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6HopByHop,
		SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
	udp := &layers.UDP{SrcPort: 1000, DstPort: 53}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	hbh := raw{byte(layers.IPProtocolUDP), 0, 1, 4, 0, 0, 0, 0}
	return serialize(t, ip, hbh, udp, gopacket.Payload(bytes.Repeat([]byte("abcdefg"), 8)))
}

const udp6Unfrag = 48 // IPv6 header and hop-by-hop header
const udp6NH = 40     // the hop-by-hop header's next-header byte

// frag4 cuts bytes [off, off+n) of dg's payload into an IPv4 fragment
// (zeros past the end of dg).
func frag4(dg []byte, off, n int, more bool) []byte {
	ihl := int(dg[0]&0x0f) * 4
	pl := dg[ihl:]
	if off+n > len(pl) {
		pl = append(bytes.Clone(pl), make([]byte, off+n-len(pl))...)
	}
	f := append(bytes.Clone(dg[:ihl]), pl[off:off+n]...)
	binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
	fo := binary.BigEndian.Uint16(dg[6:])&0x4000 | uint16(off/8)
	if more {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(f[6:], fo)
	f[10], f[11] = 0, 0
	binary.BigEndian.PutUint16(f[10:], ipv4Checksum(f[:ihl]))
	return f
}

// frag6 cuts bytes [off, off+n) of dg's fragmentable part into an IPv6
// fragment with id 77.
func frag6(dg []byte, off, n int, more bool) []byte {
	f := bytes.Clone(dg[:udp6Unfrag])
	nh := f[udp6NH]
	f[udp6NH] = 44
	fo := uint16(off)
	if more {
		fo |= 1
	}
	f = append(f, nh, 0, byte(fo>>8), byte(fo), 0, 0, 0, 77)
	f = append(f, dg[udp6Unfrag+off:udp6Unfrag+off+n]...)
	binary.BigEndian.PutUint16(f[4:], uint16(len(f)-40))
	return f
}

func decode(t testing.TB, b []byte) *packet.Packet {
	t.Helper()
	p := new(packet.Packet)
	p.Decode(b, packet.LinkIP)
	if p.Kind != packet.KindOK {
		t.Fatalf("test fragment does not decode: %v", p)
	}
	return p
}

type step struct {
	off, n int
	more   bool
	want   Status
	tokens []int
}

// TestReassemblyPolicy runs fragment sequences through a Reassembler and
// pins the status and the tokens reported for each fragment. Tokens are
// the step indexes.
func TestReassemblyPolicy(t *testing.T) {
	const M, L = true, false // more fragments, last fragment
	tests := []struct {
		name  string
		v6    bool
		steps []step
	}{
		{"v4 in order", false, []step{
			{0, 24, M, Pending, nil}, {24, 24, M, Pending, nil}, {48, 16, L, Complete, []int{0, 1, 2}}}},
		{"v4 last first, then the rest out of order", false, []step{
			{48, 16, L, Pending, nil}, {0, 24, M, Pending, nil}, {24, 24, M, Complete, []int{0, 1, 2}}}},
		{"v4 an exact duplicate drops only itself", false, []step{
			{0, 24, M, Pending, nil}, {0, 24, M, Duplicate, []int{1}}, {24, 40, L, Complete, []int{0, 2}}}},
		{"v4 a fragment inside a run received in order is a duplicate", false, []step{
			{0, 24, M, Pending, nil}, {24, 24, M, Pending, nil}, {8, 32, M, Duplicate, []int{2}}, {48, 16, L, Complete, []int{0, 1, 3}}}},
		{"v4 a fragment across two runs received out of order is an overlap", false, []step{
			{24, 24, M, Pending, nil}, {0, 24, M, Pending, nil}, {16, 16, M, Overlap, []int{0, 1, 2}},
			// The datagram is gone: the next fragment starts a new one.
			{48, 16, L, Pending, nil}}},
		{"v4 a partial overlap at the tail drops the datagram", false, []step{
			{0, 24, M, Pending, nil}, {16, 16, M, Overlap, []int{0, 1}}}},
		{"v4 a partial overlap in the middle drops the datagram", false, []step{
			{48, 16, L, Pending, nil}, {0, 24, M, Pending, nil}, {40, 16, M, Overlap, []int{0, 1, 2}}}},
		{"v4 a second, different last fragment drops the datagram", false, []step{
			{48, 16, L, Pending, nil}, {40, 16, L, Invalid, []int{0, 1}}}},
		{"v4 data past the last fragment drops the datagram (before any overlap check)", false, []step{
			{24, 24, L, Pending, nil}, {40, 24, M, Invalid, []int{0, 1}}}},
		{"v4 a non-last fragment is cut to a multiple of 8", false, []step{
			{0, 28, M, Pending, nil}, {24, 40, L, Complete, []int{0, 1}}}},
		{"v4 an empty fragment drops the datagram", false, []step{
			{0, 24, M, Pending, nil}, {24, 0, M, Invalid, []int{0, 1}}}},
		{"v6 in order", true, []step{
			{0, 24, M, Pending, nil}, {24, 24, M, Pending, nil}, {48, 16, L, Complete, []int{0, 1, 2}}}},
		{"v6 reversed", true, []step{
			{48, 16, L, Pending, nil}, {24, 24, M, Pending, nil}, {0, 24, M, Complete, []int{0, 1, 2}}}},
		{"v6 an exact duplicate drops only itself", true, []step{
			{0, 24, M, Pending, nil}, {24, 24, M, Pending, nil}, {24, 24, M, Duplicate, []int{2}}, {48, 16, L, Complete, []int{0, 1, 3}}}},
		{"v6 an overlap drops the datagram", true, []step{
			{0, 24, M, Pending, nil}, {16, 32, M, Overlap, []int{0, 1}}}},
		{"v6 a second, different last fragment drops only itself", true, []step{
			{48, 16, L, Pending, nil}, {40, 16, L, Rejected, []int{1}}, {0, 48, M, Complete, []int{0, 2}}}},
		{"v6 data past the last fragment drops only itself", true, []step{
			{24, 24, L, Pending, nil}, {48, 16, M, Rejected, []int{1}}}},
		{"v6 a non-last fragment of odd length drops the datagram and is passed on", true, []step{
			{0, 24, M, Pending, nil}, {24, 20, M, Unreassembled, []int{0}},
			// The datagram is gone: the next fragment starts a new one.
			{48, 16, L, Pending, nil}}},
		{"v6 an empty fragment drops only itself", true, []step{
			{0, 24, M, Pending, nil}, {24, 0, M, Rejected, []int{1}}, {24, 40, L, Complete, []int{0, 2}}}},
		{"v6 a first fragment without the whole udp header is passed on, its datagram left alone", true, []step{
			{24, 24, M, Pending, nil}, {0, 4, M, Unreassembled, nil}, {48, 16, L, Pending, nil}, {0, 24, M, Complete, []int{0, 2, 3}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dg := tcp4(t, 0)
			if tt.v6 {
				dg = udp6(t)
			}
			var r Reassembler
			for i, s := range tt.steps {
				var f []byte
				if tt.v6 {
					f = frag6(dg, s.off, s.n, s.more)
				} else {
					f = frag4(dg, s.off, s.n, s.more)
				}
				st, out, tokens := r.Add(decode(t, f), i, 0)
				if st != s.want || !slices.Equal(tokens, s.tokens) && len(tokens)+len(s.tokens) > 0 {
					t.Fatalf("step %d [%d,%d) more=%v: got %v %v, want %v %v", i, s.off, s.off+s.n, s.more, st, tokens, s.want, s.tokens)
				}
				if st == Complete {
					checkReassembled(t, out, dg)
				} else if out != nil {
					t.Fatalf("step %d: bytes returned with %v", i, st)
				}
			}
		})
	}
}

// checkReassembled compares a reassembled datagram with the original and
// decodes it.
func checkReassembled(t *testing.T, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("reassembled datagram differs:\ngot  %x\nwant %x", got, want)
	}
	var p packet.Packet
	p.Decode(got, packet.LinkIP)
	if p.Kind != packet.KindOK || p.Frag.IsFragment || !p.L4ChecksumOK() || !p.IPv4HeaderChecksumOK() {
		t.Fatalf("reassembled datagram decodes as %v (checksums %v %v)", &p, p.L4ChecksumOK(), p.IPv4HeaderChecksumOK())
	}
}

// TestIPv4KeyIncludesProtocol: IPv4 fragments with the same addresses and
// id but another protocol belong to another datagram; IPv6 has no such
// field in its key.
func TestIPv4KeyIncludesProtocol(t *testing.T) {
	dg := tcp4(t, 0)
	var r Reassembler
	first := frag4(dg, 0, 24, true)
	other := bytes.Clone(frag4(dg, 24, 40, false))
	other[9] = 17 // UDP
	other[10], other[11] = 0, 0
	binary.BigEndian.PutUint16(other[10:], ipv4Checksum(other[:20]))
	if st, _, _ := r.Add(decode(t, first), 0, 0); st != Pending {
		t.Fatal(st)
	}
	if st, _, _ := r.Add(decode(t, other), 1, 0); st != Pending {
		t.Fatalf("a fragment of another protocol completed the datagram: %v", st)
	}
	if r.Len() != 2 {
		t.Fatalf("%d datagrams pending, want 2", r.Len())
	}
}

func TestUnusablePackets(t *testing.T) {
	dg := tcp4(t, 0)
	f := frag4(dg, 0, 24, true)
	var whole, cut, bad packet.Packet
	whole.Decode(dg, packet.LinkIP)
	cut.Decode(f[:len(f)-1], packet.LinkIP) // decodes OK: a snap length cut
	bad.Decode(f[:10], packet.LinkIP)
	var r Reassembler
	for name, p := range map[string]*packet.Packet{"not a fragment": &whole, "cut by the capture": &cut, "truncated": &bad} {
		if st, out, tokens := r.Add(p, 5, 0); st != Unusable || out != nil || !slices.Equal(tokens, []int{5}) {
			t.Errorf("%s: got %v %v %v, want unusable", name, st, out, tokens)
		}
	}
	if r.Len() != 0 {
		t.Errorf("unusable packets left %d datagrams", r.Len())
	}
}

func TestECN(t *testing.T) {
	const notECT, ect0, ce = 0, 2, 3
	tests := []struct {
		name       string
		tos1, tos2 uint8
		want       Status
		wantECN    uint8
	}{
		{"all not-ect", notECT, notECT, Complete, notECT},
		{"all ect(0)", ect0, ect0, Complete, ect0},
		{"ce and ect(0) make ce", ect0, ce, Complete, ce},
		{"not-ect and ect(0) drop the datagram", notECT, ect0, Invalid, 0},
		{"not-ect and ce drop the datagram", ce, notECT, Invalid, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Reassembler
			r.Add(decode(t, frag4(tcp4(t, tt.tos1), 0, 24, true)), 0, 0)
			st, out, _ := r.Add(decode(t, frag4(tcp4(t, tt.tos2), 24, 40, false)), 1, 0)
			if st != tt.want {
				t.Fatalf("got %v, want %v", st, tt.want)
			}
			if st == Complete {
				if out[1]&3 != tt.wantECN {
					t.Errorf("ECN %d, want %d", out[1]&3, tt.wantECN)
				}
				var p packet.Packet
				p.Decode(out, packet.LinkIP)
				if !p.IPv4HeaderChecksumOK() {
					t.Errorf("header checksum not updated")
				}
			}
		})
	}
}

// TestDontFragmentKeptFromLargestFragment: the reassembled IPv4 header has
// DF when the largest fragment had it (ip_frag_reasm), and never MF.
func TestDontFragmentKeptFromLargestFragment(t *testing.T) {
	dg := tcp4(t, 0)
	withDF := func(f []byte) []byte {
		f[6] |= 0x40
		f[10], f[11] = 0, 0
		binary.BigEndian.PutUint16(f[10:], ipv4Checksum(f[:20]))
		return f
	}
	for _, tc := range []struct {
		name   string
		f1, f2 []byte
		df     bool
	}{
		{"no DF", frag4(dg, 0, 40, true), frag4(dg, 40, 24, false), false},
		{"DF on the largest", withDF(frag4(dg, 0, 40, true)), frag4(dg, 40, 24, false), true},
		{"DF on the smaller only", frag4(dg, 0, 40, true), withDF(frag4(dg, 40, 24, false)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Reassembler
			r.Add(decode(t, tc.f1), 0, 0)
			st, out, _ := r.Add(decode(t, tc.f2), 1, 0)
			if st != Complete {
				t.Fatal(st)
			}
			if fo := binary.BigEndian.Uint16(out[6:]); fo != map[bool]uint16{true: 0x4000}[tc.df] {
				t.Errorf("flags and offset %#04x, want DF %v only", fo, tc.df)
			}
		})
	}
}

// TestOversizeDatagramDropped: IPv4 fragments can describe more than 65535
// bytes; the kernel drops such a datagram when it completes. IPv6 rejects
// the fragment that goes past 65535 at once.
func TestOversizeDatagramDropped(t *testing.T) {
	const size = 65536 // payload bytes: with the header, one too many... and then some
	dg := tcp4(t, 0)
	hdr := dg[:20]
	payload := make([]byte, size)
	copy(payload, dg[20:40]) // a TCP header, or the first fragment would not decode
	var r Reassembler
	var st Status
	var tokens []int
	for i, off := 0, 0; off < size; i, off = i+1, off+1480 {
		n := min(1480, size-off)
		f := append(bytes.Clone(hdr), payload[off:off+n]...)
		binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
		fo := uint16(off / 8)
		if off+n < size {
			fo |= 0x2000
		}
		binary.BigEndian.PutUint16(f[6:], fo)
		f[10], f[11] = 0, 0
		binary.BigEndian.PutUint16(f[10:], ipv4Checksum(f[:20]))
		st, _, tokens = r.Add(decode(t, f), i, 0)
	}
	if st != Invalid || len(tokens) != 45 || r.Len() != 0 || r.Bytes() != 0 {
		t.Errorf("got %v with %d tokens, %d pending, %d bytes held; want invalid, 45, 0, 0", st, len(tokens), r.Len(), r.Bytes())
	}

	f := frag6(udp6(t), 0, 16, false)
	binary.BigEndian.PutUint16(f[udp6Unfrag+2:], 65528) // offset 65528 + 16 bytes
	if st, _, _ := r.Add(decode(t, f), 0, 0); st != Rejected {
		t.Errorf("ipv6 fragment past 65535: %v, want rejected", st)
	}
}

// TestTimeouts: the timer starts with the first fragment and later
// fragments do not refresh it; IPv4 gets 30 s, IPv6 60 s.
func TestTimeouts(t *testing.T) {
	s := int64(time.Second)
	tests := []struct {
		name string
		v6   bool
		at   []int64 // when each of the three fragments arrives
		want []Status
	}{
		{"v4 within 30 s", false, []int64{0, 10 * s, 30*s - 1}, []Status{Pending, Pending, Complete}},
		{"v4 at 30 s the datagram is gone", false, []int64{0, 10 * s, 30 * s}, []Status{Pending, Pending, Pending}},
		{"v4 later fragments do not refresh the timer", false, []int64{0, 29 * s, 31 * s}, []Status{Pending, Pending, Pending}},
		{"v6 within 60 s", true, []int64{0, 40 * s, 60*s - 1}, []Status{Pending, Pending, Complete}},
		{"v6 at 60 s the datagram is gone", true, []int64{0, 40 * s, 60 * s}, []Status{Pending, Pending, Pending}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var frags [][]byte
			if tt.v6 {
				dg := udp6(t)
				frags = [][]byte{frag6(dg, 0, 24, true), frag6(dg, 24, 24, true), frag6(dg, 48, 16, false)}
			} else {
				dg := tcp4(t, 0)
				frags = [][]byte{frag4(dg, 0, 24, true), frag4(dg, 24, 24, true), frag4(dg, 48, 16, false)}
			}
			var r Reassembler
			for i, f := range frags {
				if st, _, _ := r.Add(decode(t, f), i, tt.at[i]); st != tt.want[i] {
					t.Fatalf("fragment %d at %v: %v, want %v", i, time.Duration(tt.at[i]), st, tt.want[i])
				}
			}
			if tt.want[2] == Complete {
				return
			}
			// The old datagram was found expired by Add; the new one
			// (the last fragment alone) expires later.
			got := r.Expire(tt.at[2])
			if len(got) != 1 || got[0].Status != Expired || !slices.Equal(got[0].Tokens, []int{0, 1}) {
				t.Errorf("Expire = %+v, want the first two fragments expired", got)
			}
			if got := r.Expire(tt.at[2] + 61*s); len(got) != 1 || !slices.Equal(got[0].Tokens, []int{2}) {
				t.Errorf("later Expire = %+v, want the last fragment expired", got)
			}
			if r.Len() != 0 || r.Bytes() != 0 {
				t.Errorf("%d datagrams, %d bytes left", r.Len(), r.Bytes())
			}
		})
	}
}

// TestExpireOrder: Expire reports datagrams oldest first and leaves the
// others; IPv6 datagrams live twice as long.
func TestExpireOrder(t *testing.T) {
	s := int64(time.Second)
	var r Reassembler
	r.Add(decode(t, frag6(udp6(t), 0, 24, true)), 0, 0)
	for i := range 3 {
		dg := tcp4(t, 0)
		dg[5] = byte(i) // another id
		r.Add(decode(t, frag4(dg, 0, 24, true)), i+1, int64(i)*s)
	}
	if got := r.Expire(29 * s); len(got) != 0 {
		t.Fatalf("expired before time: %+v", got)
	}
	got := r.Expire(31 * s)
	want := []Dropped{{Expired, []int{1}}, {Expired, []int{2}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Expire(31s) = %v, want %v", got, want)
	}
	got = r.Expire(60 * s)
	want = []Dropped{{Expired, []int{3}}, {Expired, []int{0}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Expire(60s) = %v, want %v", got, want)
	}
}

// TestBounds: at MaxDatagrams or MaxBytes the oldest datagram makes room,
// and Expire reports it as evicted.
func TestBounds(t *testing.T) {
	fragOf := func(id byte, off, n int, more bool) *packet.Packet {
		dg := tcp4(t, 0)
		dg[5] = id
		return decode(t, frag4(dg, off, n, more))
	}
	t.Run("max datagrams", func(t *testing.T) {
		r := New(Config{MaxDatagrams: 2})
		r.Add(fragOf(1, 0, 24, true), 0, 0)
		r.Add(fragOf(2, 0, 24, true), 1, 1)
		r.Add(fragOf(1, 24, 24, true), 2, 2)
		if st, _, _ := r.Add(fragOf(3, 0, 24, true), 3, 3); st != Pending {
			t.Fatal(st)
		}
		got := r.Expire(4)
		if len(got) != 1 || got[0].Status != Evicted || !slices.Equal(got[0].Tokens, []int{0, 2}) {
			t.Errorf("Expire = %+v, want datagram 1 (tokens 0, 2) evicted", got)
		}
		if r.Len() != 2 {
			t.Errorf("%d pending", r.Len())
		}
	})
	t.Run("max bytes", func(t *testing.T) {
		r := New(Config{MaxBytes: 8192})
		r.Add(fragOf(1, 0, 24, true), 0, 0)
		r.Add(fragOf(2, 0, 24, true), 1, 1)
		if r.Bytes() != 8192 {
			t.Fatalf("Bytes() = %d, want two 4 KiB buffers", r.Bytes())
		}
		r.Add(fragOf(3, 0, 24, true), 2, 2)
		if got := r.Expire(3); len(got) != 1 || got[0].Status != Evicted || !slices.Equal(got[0].Tokens, []int{0}) {
			t.Errorf("Expire = %+v, want the oldest evicted", got)
		}
		if r.Bytes() > 8192 {
			t.Errorf("Bytes() = %d over the bound", r.Bytes())
		}
	})
	t.Run("a datagram bigger than the bound drops itself", func(t *testing.T) {
		r := New(Config{MaxBytes: 4096})
		r.Add(fragOf(1, 0, 24, true), 0, 0)
		if st, _, tokens := r.Add(fragOf(1, 4096, 24, false), 1, 0); st != Evicted || !slices.Equal(tokens, []int{0, 1}) {
			t.Errorf("got %v %v, want evicted [0 1]", st, tokens)
		}
		if r.Len() != 0 || r.Bytes() != 0 {
			t.Errorf("%d datagrams, %d bytes left", r.Len(), r.Bytes())
		}
	})
}

// datagramOf names the datagram of a decoded fragment.
func datagramOf(p *packet.Packet) Datagram {
	return Datagram{V6: p.IPVersion == 6, Src: p.Src, Dst: p.Dst, Proto: p.Proto, ID: p.Frag.ID}
}

// TestDiscard: Discard drops the datagram it names and returns its
// fragments' tokens; Expire does not report them again, and a later
// fragment of it starts a datagram of its own. The name follows the key:
// IPv4's includes the protocol, IPv6's does not.
func TestDiscard(t *testing.T) {
	s := int64(time.Second)
	for _, tc := range []struct {
		name  string
		frag  func(off, n int, more bool) []byte // cuts a datagram of 64 bytes
		other []byte                             // a fragment of another datagram
	}{
		{"IPv4", func(off, n int, more bool) []byte { return frag4(tcp4(t, 0), off, n, more) },
			func() []byte { dg := tcp4(t, 0); dg[5] = 1; return frag4(dg, 0, 24, true) }()},
		{"IPv6", func(off, n int, more bool) []byte { return frag6(udp6(t), off, n, more) },
			frag4(tcp4(t, 0), 0, 24, true)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Reassembler
			first := decode(t, tc.frag(0, 24, true))
			r.Add(first, 0, 0)
			r.Add(decode(t, tc.other), 1, 0)
			r.Add(decode(t, tc.frag(24, 16, true)), 2, s)
			dg := datagramOf(first)
			otherProto := dg
			otherProto.Proto++
			got := r.Discard(otherProto)
			if !dg.V6 {
				if len(got) != 0 {
					t.Fatalf("Discard with another protocol = %v, want nothing", got)
				}
				got = r.Discard(dg)
			}
			if !slices.Equal(got, []int{0, 2}) {
				t.Fatalf("Discard = %v, want [0 2]", got)
			}
			if got := r.Discard(dg); len(got) != 0 {
				t.Errorf("Discard again = %v, want nothing", got)
			}
			if r.Len() != 1 || r.Bytes() != 4096 {
				t.Errorf("%d datagrams, %d bytes left; want the other one", r.Len(), r.Bytes())
			}
			// The rest of it: a datagram of its own, which never completes.
			if st, _, _ := r.Add(decode(t, tc.frag(40, 24, false)), 3, 2*s); st != Pending {
				t.Errorf("the last fragment after Discard: %v, want pending", st)
			}
			expired := r.Expire(time.Hour.Nanoseconds())
			if want := []Dropped{{Expired, []int{1}}, {Expired, []int{3}}}; fmt.Sprint(expired) != fmt.Sprint(want) {
				t.Errorf("Expire = %v, want %v", expired, want)
			}
			if r.Len() != 0 || r.Bytes() != 0 {
				t.Errorf("%d datagrams, %d bytes left", r.Len(), r.Bytes())
			}
		})
	}
}

func TestNoAllocsInOrder(t *testing.T) {
	dg := tcp4(t, 0)
	f1, f2 := decode(t, frag4(dg, 0, 24, true)), decode(t, frag4(dg, 24, 40, false))
	var r Reassembler
	r.Add(f1, 0, 0)
	r.Add(f2, 1, 0) // warm up: the buffers are kept for reuse
	n := testing.AllocsPerRun(100, func() {
		r.Add(f1, 0, 0)
		if st, _, _ := r.Add(f2, 1, 0); st != Complete {
			t.Fatal(st)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per reassembly, want 0", n)
	}
}

func BenchmarkReassembleTwoFragments(b *testing.B) {
	dg := tcp4(b, 0)
	f1, f2 := decode(b, frag4(dg, 0, 24, true)), decode(b, frag4(dg, 24, 40, false))
	var r Reassembler
	b.ReportAllocs()
	for b.Loop() {
		r.Add(f1, 0, 0)
		r.Add(f2, 1, 0)
	}
}
