package tcpstate

import (
	"encoding/binary"
	"testing"

	"github.com/statewall/statewall/pkg/packet"
)

// fuzzSegLen is the number of fuzz bytes one segment is decoded from:
//
//	0     TCP flags
//	1     bit 0: sender (0 client, 1 server); bit 1: relative seq/ack;
//	      bit 2: wscale option; bit 3: SACK-permitted; bits 4-5: SACK
//	      blocks; bit 6: bad data offset; bit 7: timestamp option
//	2-5   seq (absolute, or an int16 offset from the sender's End)
//	6-9   ack (absolute, or an int16 offset from the receiver's End)
//	10-11 window
//	12    payload length; with bit 2 of byte 1 also the wscale shift (low nibble)
//
// Relative numbers keep many segments near the window, where the
// interesting code is; absolute ones cover the wrap-around arithmetic.
const fuzzSegLen = 13

func fuzzSegment(b []byte, s *sim) (side, *packet.Packet) {
	from := side(b[1] & 1)
	seq := binary.BigEndian.Uint32(b[2:])
	ack := binary.BigEndian.Uint32(b[6:])
	if b[1]&2 != 0 && s.has {
		sd, rd := Original, Reply
		if from != s.origin {
			sd, rd = Reply, Original
		}
		seq = uint32(s.c.Peer[sd].End.Add(uint32(int32(int16(seq)))))
		ack = uint32(s.c.Peer[rd].End.Add(uint32(int32(int16(ack)))))
	}
	var opts []segOpt
	if b[1]&4 != 0 {
		opts = append(opts, wscale(b[12]&0x0f+8)) // 8..23: also above the 14 cap
	}
	if b[1]&8 != 0 {
		opts = append(opts, sackOK())
	}
	if n := int(b[1]>>4) & 3; n > 0 {
		edges := make([]uint32, 0, 2*n)
		for i := 0; i < n; i++ {
			edges = append(edges, ack+uint32(i)*100, ack+uint32(i+1)*100+uint32(b[12]))
		}
		opts = append(opts, sack(edges...))
	}
	if b[1]&0x80 != 0 {
		opts = append(opts, ts())
	}
	opts = append(opts, data(int(b[12])))
	p := seg("", seq, ack, binary.BigEndian.Uint16(b[10:]), opts...)
	p.TCPFlags = b[0]
	if b[1]&0x40 != 0 {
		p.TCPHdrLen = int(b[12]) & 0x7f // mostly invalid offsets
	}
	return from, p
}

// FuzzStep drives random segment sequences through Start/Step the way the
// table does and checks invariants that hold for every kernel path:
// no panic, the state stays in range, Ignore and Invalid never change the
// state, Reopen only comes from TIME_WAIT or CLOSE, and a kept timer
// (Accept with Timeout 0) only happens for a SYN in SYN_SENT before any
// reply.
func FuzzStep(f *testing.F) {
	enc := func(segs ...[fuzzSegLen]byte) []byte {
		var out []byte
		for _, s := range segs {
			out = append(out, s[:]...)
		}
		return out
	}
	mk := func(flags, ctl byte, seq, ack uint32, win uint16, n byte) (b [fuzzSegLen]byte) {
		b[0], b[1] = flags, ctl
		binary.BigEndian.PutUint32(b[2:], seq)
		binary.BigEndian.PutUint32(b[6:], ack)
		binary.BigEndian.PutUint16(b[10:], win)
		b[12] = n
		return b
	}
	const (
		S, A, F, R, P = packet.TCPSyn, packet.TCPAck, packet.TCPFin, packet.TCPRst, packet.TCPPsh
	)
	f.Add(enc(
		mk(S, 0, 1000, 0, 8192, 0),
		mk(S|A, 1, 5000, 1001, 8192, 0),
		mk(A, 0, 1001, 5001, 8192, 0),
		mk(P|A, 2, 0, 0, 8192, 100),
		mk(A, 3, 0, 0, 8192, 0),
		mk(F|A, 2, 0, 0, 8192, 0),
		mk(F|A, 3, 0, 0, 8192, 0),
		mk(A, 2, 0, 0, 8192, 0),
		mk(S, 0, 90000, 0, 8192, 0),
	))
	f.Add(enc(
		mk(S, 4|8, 1000, 0, 1024, 7),
		mk(S, 1|4|8, 3000, 0, 1024, 7),
		mk(S|A, 2|4|8, 0xffff, 1, 1024, 7),
		mk(A, 3|0x30, 0, 0, 1024, 0),
		mk(R, 2, 0, 0, 0, 0),
	))
	f.Add(enc(
		mk(P|A, 0, 1000, 5000, 1000, 10),
		mk(P|A, 1, 5000, 1010, 1000, 20),
		mk(R|A, 1, 0, 0, 0, 0),
	))
	f.Add(enc(mk(0xff, 0x40, 0, 0, 0, 3), mk(S|R, 0, 0, 0, 0, 0)))

	f.Fuzz(func(t *testing.T, in []byte) {
		s := &sim{}
		for len(in) >= fuzzSegLen {
			from, p := fuzzSegment(in[:fuzzSegLen], s)
			in = in[fuzzSegLen:]

			had, before, st := s.has, s.c, s.st
			dir := Original
			if from != s.origin {
				dir = Reply
			}
			o := s.send(from, p)
			r := o.res
			if r.Verdict > Reopen {
				t.Fatalf("verdict %d out of range", r.Verdict)
			}
			if s.has && s.c.State >= NumStates {
				t.Fatalf("state %d out of range after %s", s.c.State, packet.TCPFlagsString(p.TCPFlags))
			}
			if r.Timeout < 0 || r.ShrinkTo < 0 {
				t.Fatalf("negative timeout: %+v", r)
			}
			if !had {
				continue
			}
			if o.reopen && before.State != TimeWait && before.State != Close {
				t.Fatalf("reopen from %v", before.State)
			}
			if (r.Verdict == Ignore || r.Verdict == Invalid) && !o.reopen && s.c.State != before.State {
				t.Fatalf("%v changed state %v -> %v", r.Verdict, before.State, s.c.State)
			}
			if r.Verdict == Accept && !o.reopen && !r.Kill && r.Timeout == 0 &&
				!(FlagIndex(p.TCPFlags) == IndexSyn && before.State == SynSent && !st.SeenReply) {
				t.Fatalf("timer kept for %s in %v (dir %d, %+v)", packet.TCPFlagsString(p.TCPFlags), before.State, dir, st)
			}
		}
	})
}
