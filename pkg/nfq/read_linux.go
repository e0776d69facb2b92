//go:build linux

package nfq

import (
	"encoding/binary"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/statewall/statewall/pkg/nfq/internal/nfqnl"
)

// This file is a queue's reader goroutine, from the socket to the Handler.
//
// The goroutine reads up to recvBatch datagrams at a time, each into a
// buffer of its own (no peek: a buffer holds the largest message), parses
// them in place, hands the Handler a reused Packet whose Payload points
// into the buffer, and records the verdict. When a read finds the socket
// empty, the verdicts recorded since the last write go out in one write,
// runs of equal verdicts as one batch verdict (see verdicts in batch.go);
// also when the batch limit is reached or MaxBatchDelay has passed since
// the first, for a steady stream never empties the socket. Nothing is
// allocated per packet.
//
// The answer to the drain probe (see Reader.shutdown) is read in order
// behind every packet queued before it, and the verdicts waiting are sent
// before drained is closed.

// The kernel sends every packet as a datagram of its own: at most the copy
// range (below 64 KiB) and a few hundred bytes of attributes. A queue reads
// up to recvBatch of them with one recvmmsg(2), each into a buffer of its
// own of recvSlack bytes more than the copy range, so a datagram never
// comes truncated (see processRead for what would happen if one did).
//
// Why batch the reads: under load the reader's CPU is what the senders
// lack (two cores shared with them on the development VM), and entering
// and leaving a read system call, with Go's poller around it, was about a
// sixth of what the reader spent per packet beyond the kernel's own work.
const (
	recvBatch = 16
	recvSlack = 16 << 10
)

// mmsghdr is struct mmsghdr: a msghdr and the length received. Go pads the
// struct to its alignment as C does (64 bytes on 64-bit Linux).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// spinBurst: the reader spins (QueueConfig.Spin) only after a burst of at
// most this many packets: sparse traffic, where a wake-up is what a packet
// waits for. After a longer burst the CPU is busy with traffic, and a spin
// would take it from the packets' senders.
const spinBurst = 2

// batchClockEvery: a batch of pending verdicts checks its age
// (nfqnl.MaxBatchDelay) every this many packets.
const batchClockEvery = 8

// run is the reader goroutine. It waits for Run (or Close) before reading.
func (q *queue) run() {
	defer close(q.done)
	select {
	case <-q.r.started:
	case <-q.r.aborted:
		return
	case <-q.quit:
		return
	}
	for {
		q.n, q.rerr = 0, nil
		err := q.rc.Read(q.readFn)
		if err == nil {
			err = q.rerr
		}
		if err == nil {
			q.processRead()
			if q.fatal != nil {
				q.flush()
				q.die(q.fatal)
				return
			}
			continue
		}
		if q.closing.Load() {
			return
		}
		switch err {
		case unix.EINTR:
			continue
		case unix.ENOBUFS:
			q.overrun()
			continue
		}
		q.flush()
		q.die(err)
		return
	}
}

// recv reads up to recvBatch datagrams without waiting.
func (q *queue) recv(fd uintptr) (int, error) {
	for i := range q.mmsgs {
		q.mmsgs[i].hdr.Flags = 0
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&q.mmsgs[0])), recvBatch, unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// read is the syscall.RawConn.Read callback: one read of up to recvBatch
// datagrams, or, if the socket is empty, the pending verdicts written and
// false to wait for more.
func (q *queue) read(fd uintptr) bool {
	n, err := q.recv(fd)
	if err == unix.EAGAIN {
		if q.pending.len() > 0 {
			q.flushFD(int(fd))
		}
		burst := q.burst
		q.burst = 0
		if q.spin <= 0 || burst > spinBurst {
			return false
		}
		deadline := time.Now().Add(q.spin)
		for {
			unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
			if n, err = q.recv(fd); err != unix.EAGAIN {
				break
			}
			if q.closing.Load() || time.Now().After(deadline) {
				return false
			}
		}
	}
	q.n, q.rerr = n, err
	q.burst += n
	return true
}

// processRead handles the datagrams the last read got.
func (q *queue) processRead() {
	q.readAt = time.Now()
	for i := range q.n {
		m := &q.mmsgs[i]
		if m.hdr.Flags&unix.MSG_TRUNC != 0 {
			// Cannot happen with buffers sized for the copy range. The
			// packet in it is not read: it waits until the socket
			// closes (fail-closed), and, as for a packet without id, no
			// batch verdict may cover it from now on.
			q.unreadable("a truncated netlink datagram")
			continue
		}
		q.process(q.bufs[i][:m.len])
	}
}

// process handles the messages of one datagram.
func (q *queue) process(b []byte) {
	for len(b) >= nfqnl.NlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(b))
		if l < nfqnl.NlmsgHdrLen || l > len(b) {
			q.unexpected("malformed netlink message", l)
			return
		}
		switch typ := binary.NativeEndian.Uint16(b[4:]); typ {
		case nfqnl.MsgTypePacket:
			q.packet(b[nfqnl.NlmsgHdrLen:l])
		case unix.NLMSG_ERROR:
			q.nlError(b[nfqnl.NlmsgHdrLen:l])
		case unix.NLMSG_NOOP, unix.NLMSG_DONE, unix.NLMSG_OVERRUN:
		default:
			q.unexpected("unexpected netlink message type", int(typ))
		}
		l = nfqnl.Align(l)
		if l >= len(b) {
			return
		}
		b = b[l:]
	}
}

// unreadable counts a packet that cannot be given a verdict: it waits
// until the socket closes, and a batch verdict for a later id would cover
// it, so no more batches.
func (q *queue) unreadable(what string) {
	if !q.noBatch {
		q.noBatch = true
		q.r.log.Error("nfq: "+what+": it waits until the queue closes; no more batch verdicts", "queue", q.num)
	}
	q.errs.Add(1)
}

// packet hands one packet to the Handler and records its verdict.
func (q *queue) packet(body []byte) {
	p := &q.pkt
	*p = Packet{Queue: q.num, Read: q.readAt}
	haveID, ok := parsePacket(p, body)
	if !haveID {
		q.unreadable("a queued packet without id")
		return
	}
	q.lastID.Store(p.ID)
	v := Drop
	if ok {
		q.packets.Add(1)
		v = q.r.h(p)
	} else if q.errs.Add(1) == 1 {
		q.r.log.Warn("nfq: malformed packet message, dropping the packet; counting further errors", "queue", q.num, "id", p.ID)
	}
	id := p.ID
	p.Payload = nil
	// The mark the packet goes on with: as queued, but for the flow
	// hash's, which was 0 before the hash, and with the Handler's bits.
	m := mark{v: p.Mark}
	if q.flowMark != 0 && p.Mark == q.flowMark {
		m.v = 0
	}
	m.v |= p.SetMark
	m.set = v == Accept && m.v != p.Mark
	if v == Hold {
		q.holding.Add(1)
		q.held.Add(1)
		if m.v != p.Mark {
			// Release gives the packet this mark when it accepts it
			// (the flow hash's taken off, the Handler's bits set).
			q.relMu.Lock()
			if q.heldMarks == nil {
				q.heldMarks = make(map[uint32]uint32)
			}
			q.heldMarks[id] = m.v
			q.relMu.Unlock()
		}
		return
	}
	// The clock is read once per read from the socket (readAt) and
	// then every batchClockEvery packets of a batch, not for each (a
	// clock read is ~50 ns on the development VM, a few percent of the
	// reader's CPU under a flood): a batch may outlive MaxBatchDelay by
	// that many packets.
	n := q.pending.len()
	if n == 0 {
		q.since = q.readAt
		if q.since.IsZero() { // a packet not read by processRead (tests)
			q.since = time.Now()
		}
	}
	q.pending.add(id, v, m)
	n++
	if n >= q.limit || (n%batchClockEvery == 0 && time.Since(q.since) >= nfqnl.MaxBatchDelay) {
		q.flush()
	}
}

// nlError handles an NLMSG_ERROR: an acknowledgement, the answer to the
// drain probe, the copy mode refused, or a message of ours refused.
func (q *queue) nlError(body []byte) {
	if len(body) < nfqnl.NlmsgerrLen {
		q.unexpected("short netlink error message", len(body))
		return
	}
	code := int32(binary.NativeEndian.Uint32(body))
	seq := binary.NativeEndian.Uint32(body[4+8:]) // the refused message's header
	errno := unix.Errno(-code)
	switch {
	case code == 0: // an acknowledgement
	case seq != 0 && seq == q.probeSeq.Load() && errno == unix.ENOENT:
		// The answer to the drain probe: every packet queued before it
		// has been read and decided.
		q.flush()
		q.drainOnce.Do(func() { close(q.drained) })
	case seq != 0 && seq == q.paramsSeq.Load():
		q.fatal = fmt.Errorf("setting the copy mode: %w", errno)
	default:
		if q.errs.Add(1) == 1 {
			q.r.log.Warn("nfq: the kernel refused a message; counting further ones", "queue", q.num, "seq", seq, "err", errno)
		}
	}
}

func (q *queue) unexpected(what string, n int) {
	if q.errs.Add(1) == 1 {
		q.r.log.Warn("nfq: "+what+"; counting further errors", "queue", q.num, "n", n)
	}
}
