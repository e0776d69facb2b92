package defrag

import (
	"bytes"
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/packet"
)

// FuzzReassemble feeds sequences of fragments cut from two datagrams at
// fuzzed offsets, lengths and times, with small bounds, and checks that
// nothing panics, that the bounds hold, that a reassembled datagram has the
// length its IP header says, and that every fragment's fate is reported
// exactly once: by Add, by Discard (a fuzzed byte asks for it), or later by
// Expire.
func FuzzReassemble(f *testing.F) {
	f.Add([]byte{0, 0, 3, 1, 0, 0, 3, 3, 0, 0, 6, 2, 0, 0})
	f.Add([]byte{1, 0, 3, 1, 0, 1, 3, 3, 1, 0, 6, 2, 0, 0})
	f.Add([]byte{0, 6, 2, 0, 0, 0, 6, 1, 0, 0, 1, 4, 1, 0, 200})
	// The second fragment discards its datagram.
	f.Add([]byte{0, 0, 3, 1, 0, 0, 3, 0x83, 0, 0, 6, 2, 0, 0})
	v4 := append(tcp4(f, 0), bytes.Repeat([]byte{7}, 200)...) // room for larger offsets
	v6 := append(udp6(f), bytes.Repeat([]byte{9}, 200)...)
	f.Fuzz(func(t *testing.T, in []byte) {
		r := New(Config{MaxDatagrams: 3, MaxBytes: 3 * 4096})
		reported := map[int]int{}
		report := func(tokens []int) {
			for _, tok := range tokens {
				reported[tok]++
			}
		}
		var now int64
		n := 0
		for ; len(in) >= 5; in = in[5:] {
			v6frag := in[0]&1 != 0
			off := int(in[1]) % 32 * 8
			size := int(in[2]) % 33 * 4
			more := in[3]&1 != 0
			now += int64(in[4]) * int64(time.Second) / 4
			var b []byte
			if v6frag {
				size = min(size, len(v6)-udp6Unfrag-off)
				b = frag6(v6, off, max(size, 0), more)
			} else {
				size = min(size, len(v4)-20-off)
				b = frag4(v4, off, max(size, 0), more)
			}
			var p packet.Packet
			p.Decode(b, packet.LinkIP)
			st, out, tokens := r.Add(&p, n, now)
			if st != Pending {
				report(tokens)
			}
			if st == Unreassembled {
				reported[n]++ // passed on: its tokens are its datagram's
			}
			if in[3]&0x80 != 0 {
				// Give the datagram up, as a replay at its hold limit
				// does: after Expire, as Discard asks.
				for _, d := range r.Expire(now) {
					report(d.Tokens)
				}
				report(r.Discard(Datagram{V6: p.IPVersion == 6, Src: p.Src, Dst: p.Dst, Proto: p.Proto, ID: p.Frag.ID}))
			}
			if st == Complete {
				var whole packet.Packet
				whole.Decode(out, packet.LinkIP)
				if whole.IPLen != len(out) || whole.Frag.IsFragment {
					t.Fatalf("reassembled %d bytes decode as %v (IPLen %d)", len(out), &whole, whole.IPLen)
				}
			}
			if r.Len() > 3 || r.Bytes() > 3*4096 || r.Bytes() < 0 {
				t.Fatalf("bounds: %d datagrams, %d bytes", r.Len(), r.Bytes())
			}
			for _, d := range r.Expire(now) {
				report(d.Tokens)
			}
			n++
		}
		for _, d := range r.Expire(now + int64(time.Hour)) {
			report(d.Tokens)
		}
		if r.Len() != 0 || r.Bytes() != 0 {
			t.Fatalf("after everything expired: %d datagrams, %d bytes", r.Len(), r.Bytes())
		}
		for tok := range n {
			if reported[tok] != 1 {
				t.Fatalf("fragment %d reported %d times (%v)", tok, reported[tok], reported)
			}
		}
	})
}
