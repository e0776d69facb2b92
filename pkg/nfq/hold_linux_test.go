//go:build linux

package nfq

import (
	"encoding/binary"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/statewall/statewall/pkg/nfq/internal/nfqnl"
)

// TestRawHoldRelease: a held packet gets no verdict until Release, and
// while it is held no batch verdict goes out (one for a later id would
// cover it); after its Release, batches resume.
func TestRawHoldRelease(t *testing.T) {
	pq := newPairQueue(t, QueueConfig{}, func(p *Packet) Verdict {
		if p.ID == 11 {
			return Hold
		}
		return Accept
	})
	pq.r.queues = []*queue{pq.queue}
	pq.r.cfg.Queues = [2]uint16{7, 7}
	for id := uint32(10); id < 14; id++ {
		pq.process(packetMsg(id, []byte{1, 2, 3}))
	}
	pq.flush()
	want := []sentVerdict{{false, 10, Accept}, {false, 12, Accept}, {false, 13, Accept}}
	if got := pq.written(t); len(got) != 1 || fmt.Sprint(got[0]) != fmt.Sprint(want) {
		t.Errorf("while 11 is held: written %v, want plain verdicts %v", got, want)
	}
	if err := pq.r.Release(7, 11, Drop); err != nil {
		t.Fatal(err)
	}
	if got := pq.written(t); len(got) != 1 || fmt.Sprint(got[0]) != fmt.Sprint([]sentVerdict{{false, 11, Drop}}) {
		t.Errorf("release: written %v", got)
	}
	for id := uint32(14); id < 17; id++ {
		pq.process(packetMsg(id, []byte{1, 2, 3}))
	}
	pq.flush()
	if got := pq.written(t); len(got) != 1 || fmt.Sprint(got[0]) != fmt.Sprint([]sentVerdict{{true, 16, Accept}}) {
		t.Errorf("after the release: written %v, want one batch", got)
	}
	st := pq.r.Stats()
	if st[0].Held != 1 || st[0].Accepted != 6 || st[0].Dropped != 1 || pq.holding.Load() != 0 {
		t.Errorf("stats %+v, holding %d", st[0], pq.holding.Load())
	}
	if err := pq.r.Release(9, 1, Accept); err == nil {
		t.Error("release on a queue not read here: no error")
	}
}

// TestRawHoldReleaseMark: a held packet of a flow-spread queue (queued
// with the flow hash's mark) leaves, once released, with the mark it had
// before the hash, as an unheld one does; one queued with another mark
// keeps it (a plain verdict).
func TestRawHoldReleaseMark(t *testing.T) {
	pq := newPairQueue(t, QueueConfig{}, func(p *Packet) Verdict { return Hold })
	pq.r.queues = []*queue{pq.queue}
	pq.r.cfg.Queues = [2]uint16{7, 7}
	pq.flowMark = FlowMark(0)
	msg := func(id, mark uint32) []byte {
		return nlMsg(nfqnl.MsgTypePacket, 0, packetBody(hdrAttr(id, HookForward), attr{nfqnl.AttrMark, be32b(mark)}, attr{nfqnl.AttrPayload, []byte{1, 2, 3}}))
	}
	pq.process(msg(20, FlowMark(0)))
	pq.process(msg(21, 0x77))
	for _, c := range []struct {
		id         uint32
		len        int
		mark       uint32
		markedWant bool
	}{{20, nfqnl.VerdictMarkMsgLen, 0, true}, {21, nfqnl.VerdictMsgLen, 0, false}} {
		if err := pq.r.Release(7, c.id, Accept); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 256)
		n, err := unix.Read(pq.peer, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n != c.len || binary.BigEndian.Uint32(buf[28:]) != c.id {
			t.Errorf("release of %d: %d bytes % x, want a verdict of %d bytes", c.id, n, buf[:n], c.len)
			continue
		}
		if c.markedWant && (binary.NativeEndian.Uint16(buf[34:]) != nfqnl.AttrMark || binary.BigEndian.Uint32(buf[36:]) != c.mark) {
			t.Errorf("release of %d: mark attribute % x, want mark %#x", c.id, buf[32:n], c.mark)
		}
	}
	if len(pq.heldMarks) != 0 {
		t.Errorf("held marks left: %v", pq.heldMarks)
	}
}
