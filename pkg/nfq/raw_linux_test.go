//go:build linux

package nfq

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/statewall/statewall/pkg/nfq/internal/nfqnl"
)

// Tests of the reader's message handling (read_linux.go, verdict_linux.go,
// parse_linux.go), on a socket pair instead of a netlink socket: they need
// no privileges.

type attr struct {
	typ  uint16
	data []byte
}

func be32b(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// nlMsg is a netlink message: header, then body, padded.
func nlMsg(typ uint16, seq uint32, body []byte) []byte {
	b := binary.NativeEndian.AppendUint32(nil, uint32(nfqnl.NlmsgHdrLen+len(body)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// packetBody is the body of an NFQNL_MSG_PACKET of queue 7.
func packetBody(attrs ...attr) []byte {
	b := []byte{unix.AF_INET, 0, 0, 7}
	for _, a := range attrs {
		b = nfqnl.AppendAttr(b, a.typ, a.data...)
	}
	return b
}

func hdrAttr(id uint32, hook Hook) attr {
	return attr{nfqnl.AttrPacketHdr, append(be32b(id), 0x08, 0x00, byte(hook))}
}

func packetMsg(id uint32, payload []byte) []byte {
	return nlMsg(nfqnl.MsgTypePacket, 0, packetBody(hdrAttr(id, HookInput), attr{nfqnl.AttrPayload, payload}))
}

func errorMsg(errno unix.Errno, seq uint32) []byte {
	body := binary.NativeEndian.AppendUint32(nil, uint32(-int32(errno)))
	return nlMsg(unix.NLMSG_ERROR, seq, append(body, nlMsg(nfqnl.SubsysQueue<<8|nfqnl.MsgVerdict, seq, nil)...))
}

func TestParsePacket(t *testing.T) {
	payload := bytes.Repeat([]byte{0x45, 1, 2}, 20)
	ts := append(binary.BigEndian.AppendUint64(nil, 1700000000), binary.BigEndian.AppendUint64(nil, 123456)...)
	body := packetBody(
		hdrAttr(0x01020304, HookOutput),
		attr{nfqnl.AttrMark, be32b(0xdeadbeef)},
		attr{nfqnl.AttrTimestamp, ts},
		attr{nfqnl.AttrIfIndexIn, be32b(2)},
		attr{nfqnl.AttrIfIndexOut, be32b(5)},
		attr{9, []byte{0, 6, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0}}, // NFQA_HWADDR: skipped
		attr{11 | 0x8000, []byte{4, 0, 1, 0}},               // NFQA_CT, nested: skipped
		attr{nfqnl.AttrPayload, payload},
		attr{nfqnl.AttrCapLen, be32b(1500)},
		attr{nfqnl.AttrSkbInfo, be32b(uint32(FlagChecksumNotReady | FlagGSO))},
	)
	var p Packet
	haveID, ok := parsePacket(&p, body)
	want := Packet{ID: 0x01020304, Hook: HookOutput, Payload: payload, Length: 1500, Mark: 0xdeadbeef, InDev: 2, OutDev: 5,
		Flags: FlagChecksumNotReady | FlagGSO, Timestamp: time.Unix(1700000000, 123456000)}
	if !haveID || !ok || fmt.Sprint(p) != fmt.Sprint(want) {
		t.Errorf("parsePacket = %v, %v,\n%+v\nwant\n%+v", haveID, ok, p, want)
	}

	// Without NFQA_CAP_LEN the packet is whole.
	p = Packet{}
	if haveID, ok := parsePacket(&p, packetBody(hdrAttr(9, HookInput), attr{nfqnl.AttrPayload, payload})); !haveID || !ok || p.Length != uint32(len(payload)) || p.ID != 9 {
		t.Errorf("without cap len: %v %v %+v", haveID, ok, p)
	}

	// Malformed.
	for name, c := range map[string]struct {
		body       []byte
		haveID, ok bool
	}{
		"empty":           {nil, false, false},
		"no header":       {packetBody(attr{nfqnl.AttrPayload, payload}), false, true},
		"short header":    {packetBody(attr{nfqnl.AttrPacketHdr, []byte{0, 0, 0, 1}}), false, false},
		"short mark":      {packetBody(hdrAttr(3, HookInput), attr{nfqnl.AttrMark, []byte{1}}), true, false},
		"short timestamp": {packetBody(hdrAttr(3, HookInput), attr{nfqnl.AttrTimestamp, []byte{1, 2, 3}}), true, false},
		"overlong attr":   {append(packetBody(hdrAttr(3, HookInput)), 200, 0, nfqnl.AttrPayload, 0, 1, 2, 3, 4), true, false},
		"attr len 2":      {append(packetBody(hdrAttr(3, HookInput)), 2, 0, 0, 0), true, false},
		"trailing bytes":  {append(packetBody(hdrAttr(3, HookInput)), 1, 2), true, true},
	} {
		var p Packet
		haveID, ok := parsePacket(&p, c.body)
		if haveID != c.haveID || ok != c.ok {
			t.Errorf("%s: parsePacket = %v, %v, want %v, %v", name, haveID, ok, c.haveID, c.ok)
		}
	}
}

func FuzzParsePacket(f *testing.F) {
	f.Add(packetBody(hdrAttr(1, HookInput), attr{nfqnl.AttrPayload, []byte{0x45, 0, 0, 20}}, attr{nfqnl.AttrCapLen, be32b(99)}))
	f.Add([]byte{2, 0, 0, 0, 8, 0, 1, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Packet
		parsePacket(&p, b)
		if len(p.Payload) > 0 && !bytes.Contains(b, p.Payload) {
			t.Errorf("payload not from the message")
		}
	})
}

// pairQueue is a queue reading nothing and writing its verdicts to a
// socket pair, whose other end the test reads.
type pairQueue struct {
	*queue
	peer int
}

func newPairQueue(t testing.TB, cfg QueueConfig, h Handler) pairQueue {
	t.Helper()
	cfg, err := cfg.normalize()
	if err != nil {
		t.Fatal(err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(fds[1], true); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "pair")
	t.Cleanup(func() { f.Close(); unix.Close(fds[1]) })
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	r := &Reader{cfg: cfg, h: h, log: slog.New(slog.DiscardHandler), fatal: make(chan error, 1)}
	return pairQueue{r.newQueue(7, rc), fds[1]}
}

type sentVerdict struct {
	batch bool
	id    uint32
	v     Verdict
}

// written reads what the queue wrote since the last call: one write per
// datagram, each a sequence of verdict messages.
func (pq pairQueue) written(t *testing.T) (writes [][]sentVerdict) {
	t.Helper()
	buf := make([]byte, 1<<16)
	for {
		n, err := unix.Read(pq.peer, buf)
		if errors.Is(err, unix.EAGAIN) {
			return writes
		}
		if err != nil {
			t.Fatal(err)
		}
		var w []sentVerdict
		for b := buf[:n]; len(b) > 0; b = b[nfqnl.VerdictMsgLen:] {
			if len(b) < nfqnl.VerdictMsgLen || binary.NativeEndian.Uint32(b) != nfqnl.VerdictMsgLen {
				t.Fatalf("bad verdict message % x", b)
			}
			typ := binary.NativeEndian.Uint16(b[4:])
			if typ>>8 != nfqnl.SubsysQueue || (typ&0xff != nfqnl.MsgVerdict && typ&0xff != nfqnl.MsgVerdictBatch) ||
				binary.NativeEndian.Uint16(b[6:]) != nfqnl.NlmFRequest || b[18] != 0 || b[19] != 7 ||
				binary.NativeEndian.Uint16(b[20:]) != 12 || binary.NativeEndian.Uint16(b[22:]) != nfqnl.AttrVerdictHdr {
				t.Fatalf("bad verdict message % x", b[:nfqnl.VerdictMsgLen])
			}
			nv := binary.BigEndian.Uint32(b[24:])
			if nv > 1 {
				t.Fatalf("verdict %d", nv)
			}
			w = append(w, sentVerdict{typ&0xff == nfqnl.MsgVerdictBatch, binary.BigEndian.Uint32(b[28:]), Verdict(nv)})
		}
		writes = append(writes, w)
	}
}

// TestRawVerdictRuns: the verdicts decided go out in one write, a batch
// per run of equal verdicts, a plain verdict for a single one; after a
// packet without id, only plain verdicts.
func TestRawVerdictRuns(t *testing.T) {
	verdicts := map[uint32]Verdict{10: Accept, 11: Accept, 12: Drop, 13: Drop, 14: 7, 15: Accept, 16: Drop, 17: Accept, 18: Accept, 19: Accept}
	var seen []uint32
	pq := newPairQueue(t, QueueConfig{}, func(p *Packet) Verdict {
		seen = append(seen, p.ID)
		if len(p.Payload) != 3 {
			t.Errorf("payload %v", p.Payload)
		}
		return verdicts[p.ID]
	})
	var datagram []byte
	for id := uint32(10); id < 20; id++ {
		datagram = append(datagram, packetMsg(id, []byte{1, 2, 3})...)
	}
	pq.process(datagram[:len(datagram)/2]) // messages 10 to 14
	pq.process(datagram[len(datagram)/2:])
	if got := pq.written(t); len(got) != 0 {
		t.Errorf("written before the flush: %v", got)
	}
	pq.flush()
	want := []sentVerdict{{true, 11, Accept}, {true, 14, Drop}, {false, 15, Accept}, {false, 16, Drop}, {true, 19, Accept}}
	if got := pq.written(t); len(got) != 1 || fmt.Sprint(got[0]) != fmt.Sprint(want) {
		t.Errorf("written %v, want one write of %v", got, want)
	}
	if fmt.Sprint(seen) != "[10 11 12 13 14 15 16 17 18 19]" {
		t.Errorf("handler saw %v", seen)
	}
	q := pq.queue
	if q.packets.Load() != 10 || q.accepted.Load() != 6 || q.dropped.Load() != 4 || q.errs.Load() != 0 || q.lastID.Load() != 19 {
		t.Errorf("counters: packets %d accepted %d dropped %d errors %d last id %d",
			q.packets.Load(), q.accepted.Load(), q.dropped.Load(), q.errs.Load(), q.lastID.Load())
	}

	// A packet without id stops batching.
	pq.process(nlMsg(nfqnl.MsgTypePacket, 0, packetBody(attr{nfqnl.AttrPayload, []byte{1, 2, 3}})))
	pq.process(packetMsg(20, []byte{1, 2, 3}))
	pq.process(packetMsg(21, []byte{1, 2, 3}))
	pq.flush()
	want = []sentVerdict{{false, 20, Drop}, {false, 21, Drop}}
	if got := pq.written(t); len(got) != 1 || fmt.Sprint(got[0]) != fmt.Sprint(want) {
		t.Errorf("after a packet without id: written %v, want %v", got, want)
	}
	if q.errs.Load() != 1 || !pq.noBatch {
		t.Errorf("errors %d, noBatch %v", q.errs.Load(), pq.noBatch)
	}
}

// TestRawBatchBounds: at most batchLimit verdicts wait, and none longer
// than nfqnl.MaxBatchDelay once batchClockEvery more packets are decided.
func TestRawBatchBounds(t *testing.T) {
	slow := false
	pq := newPairQueue(t, QueueConfig{MaxLen: 8}, func(p *Packet) Verdict {
		if slow {
			time.Sleep(nfqnl.MaxBatchDelay)
		}
		return Accept
	})
	if pq.limit != 4 {
		t.Fatalf("limit %d for MaxLen 8", pq.limit)
	}
	for id := range uint32(10) {
		pq.process(packetMsg(id, nil))
	}
	got := pq.written(t)
	if fmt.Sprint(got) != "[[{true 3 1}] [{true 7 1}]]" || pq.pending.len() != 2 {
		t.Errorf("written %v, %d pending", got, pq.pending.len())
	}
	pq.flush()
	pq.written(t)
	// A slow handler under a steady stream: the socket is never found
	// empty, and the batch limit is far; the age check sends the batch.
	slow = true
	sq := newPairQueue(t, QueueConfig{}, func(p *Packet) Verdict {
		if slow {
			time.Sleep(nfqnl.MaxBatchDelay / 2)
		}
		return Accept
	})
	for id := range uint32(batchClockEvery - 1) {
		sq.process(packetMsg(id, nil))
	}
	if got := sq.written(t); len(got) != 0 {
		t.Errorf("slow handler: written %v before the age check", got)
	}
	sq.process(packetMsg(batchClockEvery-1, nil))
	if got, want := fmt.Sprint(sq.written(t)), fmt.Sprintf("[[{true %d 1}]]", batchClockEvery-1); got != want {
		t.Errorf("slow handler: written %v, want %v", got, want)
	}
	if n := nfqnl.BatchLimit(nfqnl.DefaultMaxLen); n != nfqnl.MaxBatch {
		t.Errorf("nfqnl.BatchLimit(%d) = %d", nfqnl.DefaultMaxLen, n)
	}
	if n := nfqnl.BatchLimit(1); n != 1 {
		t.Errorf("nfqnl.BatchLimit(1) = %d", n)
	}
}

// TestRawErrors: the answer to the drain probe sends what is pending and
// marks the queue drained; a refused copy mode is fatal; other refusals
// and unknown messages are counted; acknowledgements are not.
func TestRawErrors(t *testing.T) {
	pq := newPairQueue(t, QueueConfig{}, func(p *Packet) Verdict { return Drop })
	q := pq.queue
	q.probeSeq.Store(1<<31 | 5)
	q.paramsSeq.Store(1<<31 | 4)
	pq.process(append(packetMsg(1, nil), errorMsg(unix.ENOENT, 1<<31|5)...))
	select {
	case <-q.drained:
	default:
		t.Errorf("not drained")
	}
	if got := pq.written(t); fmt.Sprint(got) != "[[{false 1 0}]]" {
		t.Errorf("written %v", got)
	}
	pq.process(errorMsg(0, 77))                                     // an acknowledgement
	pq.process(errorMsg(unix.ENOENT, 12))                           // a verdict refused
	pq.process(nlMsg(nfqnl.SubsysQueue<<8|nfqnl.MsgConfig, 0, nil)) // not for us
	pq.process([]byte{200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	if q.errs.Load() != 3 || pq.fatal != nil {
		t.Errorf("errors %d, fatal %v", q.errs.Load(), pq.fatal)
	}
	pq.process(errorMsg(unix.EINVAL, 1<<31|4))
	if !errors.Is(pq.fatal, unix.EINVAL) {
		t.Errorf("fatal %v after the copy mode was refused", pq.fatal)
	}
}

// TestNoAllocs (the verdict path): reading, parsing, deciding and sending verdicts
// allocates nothing, one packet per write or many.
func TestNoAllocs(t *testing.T) {
	pq := newPairQueue(t, QueueConfig{}, func(p *Packet) Verdict { return Verdict(p.ID & 1) })
	msg := packetMsg(1, bytes.Repeat([]byte{0x45}, 1400))
	id := uint32(0)
	drain := func() {
		for {
			if _, err := unix.Read(pq.peer, pq.bufs[0]); err != nil {
				return
			}
		}
	}
	one := testing.AllocsPerRun(1000, func() {
		id++
		binary.BigEndian.PutUint32(msg[nfqnl.NlmsgHdrLen+4+4:], id)
		pq.process(msg)
		pq.flush()
		drain()
	})
	many := testing.AllocsPerRun(100, func() {
		for range 3*nfqnl.MaxBatch + 5 {
			id++
			binary.BigEndian.PutUint32(msg[nfqnl.NlmsgHdrLen+4+4:], id)
			pq.process(msg)
		}
		pq.flush()
		drain()
	})
	if one != 0 || many != 0 {
		t.Errorf("allocations: %v for a packet on its own, %v for %d packets", one, many, 3*nfqnl.MaxBatch+5)
	}
	if q := pq.queue; q.errs.Load() != 0 || q.accepted.Load()+q.dropped.Load() != q.packets.Load() {
		t.Errorf("errors %d, accepted %d + dropped %d of %d", q.errs.Load(), q.accepted.Load(), q.dropped.Load(), q.packets.Load())
	}
}

// TestSpin: after sparse traffic the reader polls an empty socket for
// Spin and picks up a packet that arrives meanwhile; after a burst it
// sleeps at once; with nothing arriving it gives up after Spin.
func TestSpin(t *testing.T) {
	accept := func(*Packet) Verdict { return Accept }
	pq := newPairQueue(t, QueueConfig{Spin: 10 * time.Second}, accept)
	var fd uintptr
	if err := pq.rc.Control(func(f uintptr) { fd = f }); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(int(fd), true); err != nil {
		t.Fatal(err)
	}
	msg := packetMsg(1, bytes.Repeat([]byte{0x45}, 40))
	sent := make(chan error, 1)
	go func() {
		time.Sleep(20 * time.Millisecond)
		_, err := unix.Write(pq.peer, msg)
		sent <- err
	}()
	if !pq.read(fd) || pq.n != 1 || pq.mmsgs[0].len != uint32(len(msg)) {
		t.Fatalf("the spin returned without the packet (n %d, err %v)", pq.n, pq.rerr)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}

	pq.burst = spinBurst + 1
	start := time.Now()
	if pq.read(fd) {
		t.Fatal("read a packet that was never sent")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("spun for %v after a burst", d)
	}

	pq.spin = 30 * time.Millisecond
	start = time.Now()
	if pq.read(fd) {
		t.Fatal("read a packet that was never sent")
	}
	if d := time.Since(start); d < pq.spin {
		t.Errorf("gave up after %v, before the spin of %v", d, pq.spin)
	}
}

// TestRawRecvBatch: one read takes up to recvBatch datagrams, each whole in
// its own buffer, the next read the rest; reading allocates nothing; a
// datagram too large for its buffer is counted, not parsed, and no batch
// verdict may cover its packet afterwards.
func TestRawRecvBatch(t *testing.T) {
	var seen []uint32
	pq := newPairQueue(t, QueueConfig{CopyRange: 512}, func(p *Packet) Verdict {
		seen = append(seen, p.ID)
		if len(p.Payload) != 100 {
			t.Errorf("packet %d: %d bytes of payload, want 100", p.ID, len(p.Payload))
		}
		return Accept
	})
	send := func(id uint32, payload []byte) {
		t.Helper()
		if _, err := unix.Write(pq.peer, packetMsg(id, payload)); err != nil {
			t.Fatal(err)
		}
	}
	var (
		rn   int
		rerr error
	)
	recvFn := func(fd uintptr) { rn, rerr = pq.recv(fd) }
	recv := func() (int, error) {
		if err := pq.rc.Control(recvFn); err != nil {
			t.Fatal(err)
		}
		pq.n = rn
		return rn, rerr
	}
	for id := range uint32(recvBatch + 4) {
		send(id, bytes.Repeat([]byte{0x45}, 100))
	}
	for _, want := range []int{recvBatch, 4} {
		if n, err := recv(); n != want || err != nil {
			t.Fatalf("read %d datagrams (%v), want %d", n, err, want)
		}
		pq.processRead()
	}
	if _, err := recv(); err != unix.EAGAIN {
		t.Fatalf("read of an empty socket: %v, want EAGAIN", err)
	}
	if len(seen) != recvBatch+4 || seen[0] != 0 || seen[len(seen)-1] != recvBatch+3 {
		t.Errorf("handler saw %v", seen)
	}
	pq.flush()
	pq.written(t)

	msg1, msg2 := packetMsg(1, bytes.Repeat([]byte{0x45}, 100)), packetMsg(2, bytes.Repeat([]byte{0x45}, 100))
	if n := testing.AllocsPerRun(200, func() {
		unix.Write(pq.peer, msg1)
		unix.Write(pq.peer, msg2)
		recv()
		pq.processRead()
		pq.flush()
		for {
			if _, err := unix.Read(pq.peer, pq.bufs[0]); err != nil {
				break
			}
		}
	}); n != 0 {
		t.Errorf("reading and deciding: %v allocations", n)
	}

	errs := pq.errs.Load()
	seen = seen[:0]
	send(99, bytes.Repeat([]byte{0x45}, len(pq.bufs[0])))
	if n, err := recv(); n != 1 || err != nil {
		t.Fatalf("read %d datagrams (%v), want the large one", n, err)
	}
	pq.processRead()
	if len(seen) != 0 || pq.errs.Load() != errs+1 || !pq.noBatch {
		t.Errorf("a truncated datagram: handler saw %v, errors %d -> %d, batch verdicts still on: %v", seen, errs, pq.errs.Load(), !pq.noBatch)
	}
}
