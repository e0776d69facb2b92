//go:build linux

package nfq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
	"unsafe"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The kernel sends every packet as a datagram of its own: at most the copy
// range (below 64 KiB) and a few hundred bytes of attributes. A raw queue
// reads up to rawBatch of them with one recvmmsg(2), each into a buffer of
// its own of rawSlack bytes more than the copy range, so a datagram never
// comes truncated (see processRead for what would happen if one did).
//
// Why batch the reads: under load the reader's CPU is what the senders
// lack (two cores shared with them on the development VM), and entering
// and leaving a read system call, with Go's poller around it, was about a
// sixth of what the reader spent per packet beyond the kernel's own work.
const (
	rawBatch = 16
	rawSlack = 16 << 10
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
// (maxBatchDelay) every this many packets.
const batchClockEvery = 8

// rawQueue is ImplRaw's half of a queue: its own reader goroutine on the
// queue's netlink socket (made by mdlayher/netlink, which also enters the
// network namespace, and read and written through its syscall.RawConn, so
// that the runtime's poller does the waiting).
//
// The goroutine reads up to rawBatch datagrams at a time, each into a
// buffer of its own (no peek: a buffer holds the largest message), parses
// them in place, hands the Handler a reused Packet whose Payload points
// into the buffer, and records the verdict. When a read finds the socket
// empty, the verdicts recorded since the last write go out in one write, runs of equal verdicts as one batch
// verdict (see verdicts); also when batchLimit verdicts are waiting or
// maxBatchDelay has passed since the first, for a steady stream never
// empties the socket. Nothing is allocated per packet.
//
// Drain and errors work as with go-nfqueue (see Reader.shutdown): the
// answer to the drain probe is read in order behind every packet queued
// before it, and the verdicts waiting are sent before drained is closed.
type rawQueue struct {
	q  *queue
	rc syscall.RawConn

	quit     chan struct{} // closed by close: stop waiting for Run
	quitOnce sync.Once
	done     chan struct{} // closed when the reader goroutine returns

	bufs   [rawBatch][]byte
	iovs   [rawBatch]unix.Iovec
	mmsgs  [rawBatch]mmsghdr
	n      int   // datagrams the last read got
	rerr   error // and its error
	readFn func(uintptr) bool

	spin    time.Duration
	burst   int // packets read since the socket was last found empty
	pending verdicts
	limit   int
	since   time.Time // when the first pending verdict was recorded
	wbuf    []byte
	flushFn func(uintptr)
	noBatch bool  // a packet without id was read: batch verdicts could cover it
	fatal   error // set by process: the reader must stop

	writes, msgs uint64 // verdict writes and messages (tests; read after close)
}

// openRawQueue binds one queue for ImplRaw. As openQueue explains, the
// bind leaves the copy mode at "none", under which the kernel queues
// nothing, and the copy mode is set last by a message whose answer (only an
// error would come) is read by the reader goroutine. The bind, the queue
// length and the flags go in one acknowledged message.
func (r *Reader) openRawQueue(num uint16, nsfd int, flags uint32) (*queue, error) {
	q := r.newQueue(num)
	con, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: nsfd})
	if err != nil {
		return nil, err
	}
	q.con = con
	rc, err := con.SyscallConn()
	if err != nil {
		con.Close()
		return nil, err
	}
	if err := setRcvBuf(con, r.cfg.SockBuf); err != nil {
		r.log.Warn("nfq: socket buffer", "queue", num, "want", r.cfg.SockBuf, "err", err)
	}
	rq := newRawQueue(q, rc)
	go rq.run()

	data := nfgenHeader(num)
	data = appendAttr(data, nfqaCfgCmd, nfqnlCfgCmdBind, 0, 0, 0) // command, pad, __be16 pf (unused)
	data = appendAttrU32(data, nfqaCfgQueueMaxLen, r.cfg.MaxLen)
	data = appendAttrU32(data, nfqaCfgFlags, flags)
	data = appendAttrU32(data, nfqaCfgMask, nfqueue.NfQaCfgFlagFailOpen|nfqueue.NfQaCfgFlagGSO)
	_, err = con.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysQueue<<8 | nfqnlMsgConfig), Flags: netlink.Request | netlink.Acknowledge},
		Data:   data,
	})
	if err == nil {
		m := paramsMsg(num, nfqnlCopyPacket, r.cfg.CopyRange)
		m.Header.Sequence = nextSeq()
		q.paramsSeq.Store(m.Header.Sequence)
		err = q.send(m)
	}
	if err != nil {
		q.closeSock()
		if errors.Is(err, unix.EPERM) {
			err = fmt.Errorf("%w (is the queue bound by another process?)", err)
		}
		return nil, err
	}
	return q, nil
}

// newRawQueue makes q an ImplRaw queue reading and writing through rc.
func newRawQueue(q *queue, rc syscall.RawConn) *rawQueue {
	rq := &rawQueue{
		q:     q,
		rc:    rc,
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
		limit: batchLimit(q.r.cfg.MaxLen),
	}
	size := int(q.r.cfg.CopyRange) + rawSlack
	for i := range rq.bufs {
		rq.bufs[i] = make([]byte, size)
		rq.iovs[i].Base = &rq.bufs[i][0]
		rq.iovs[i].SetLen(size)
		rq.mmsgs[i].hdr.Iov = &rq.iovs[i]
		rq.mmsgs[i].hdr.SetIovlen(1)
	}
	switch rq.spin = q.r.cfg.Spin; {
	case rq.spin == 0:
		rq.spin = DefaultSpin
	case rq.spin < 0:
		rq.spin = 0
	}
	rq.pending.init(rq.limit)
	rq.wbuf = make([]byte, 0, rq.limit*verdictMsgLen)
	rq.readFn = rq.read
	rq.flushFn = func(fd uintptr) { rq.flushFD(int(fd)) }
	q.raw = rq
	return rq
}

func appendAttr(b []byte, typ uint16, data ...byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%nlmsgAlignment != 0 {
		b = append(b, 0)
	}
	return b
}

func appendAttrU32(b []byte, typ uint16, v uint32) []byte {
	return appendAttr(b, typ, binary.BigEndian.AppendUint32(nil, v)...)
}

// run is the reader goroutine. It waits for Run (or Close) before reading.
func (rq *rawQueue) run() {
	q := rq.q
	defer close(rq.done)
	select {
	case <-q.r.started:
	case <-q.r.aborted:
		return
	case <-rq.quit:
		return
	}
	for {
		rq.n, rq.rerr = 0, nil
		err := rq.rc.Read(rq.readFn)
		if err == nil {
			err = rq.rerr
		}
		if err == nil {
			rq.processRead()
			if rq.fatal != nil {
				rq.flush()
				q.die(rq.fatal)
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
		rq.flush()
		q.die(err)
		return
	}
}

// recv reads up to rawBatch datagrams without waiting.
func (rq *rawQueue) recv(fd uintptr) (int, error) {
	for i := range rq.mmsgs {
		rq.mmsgs[i].hdr.Flags = 0
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&rq.mmsgs[0])), rawBatch, unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// read is the syscall.RawConn.Read callback: one read of up to rawBatch
// datagrams, or, if the socket is empty, the pending verdicts written and
// false to wait for more.
func (rq *rawQueue) read(fd uintptr) bool {
	n, err := rq.recv(fd)
	if err == unix.EAGAIN {
		if rq.pending.len() > 0 {
			rq.flushFD(int(fd))
		}
		burst := rq.burst
		rq.burst = 0
		if rq.spin <= 0 || burst > spinBurst {
			return false
		}
		deadline := time.Now().Add(rq.spin)
		for {
			unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
			if n, err = rq.recv(fd); err != unix.EAGAIN {
				break
			}
			if rq.q.closing.Load() || time.Now().After(deadline) {
				return false
			}
		}
	}
	rq.n, rq.rerr = n, err
	rq.burst += n
	return true
}

// processRead handles the datagrams the last read got.
func (rq *rawQueue) processRead() {
	for i := range rq.n {
		m := &rq.mmsgs[i]
		if m.hdr.Flags&unix.MSG_TRUNC != 0 {
			// Cannot happen with buffers sized for the copy range. The
			// packet in it is not read: it waits until the socket
			// closes (fail-closed), and, as for a packet without id, no
			// batch verdict may cover it from now on.
			rq.unreadable("a truncated netlink datagram")
			continue
		}
		rq.process(rq.bufs[i][:m.len])
	}
}

// process handles the messages of one datagram.
func (rq *rawQueue) process(b []byte) {
	for len(b) >= nlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(b))
		if l < nlmsgHdrLen || l > len(b) {
			rq.unexpected("malformed netlink message", l)
			return
		}
		switch typ := binary.NativeEndian.Uint16(b[4:]); typ {
		case nfqnlMsgTypePkt:
			rq.packet(b[nlmsgHdrLen:l])
		case unix.NLMSG_ERROR:
			rq.nlError(b[nlmsgHdrLen:l])
		case unix.NLMSG_NOOP, unix.NLMSG_DONE, unix.NLMSG_OVERRUN:
		default:
			rq.unexpected("unexpected netlink message type", int(typ))
		}
		l = nlAlign(l)
		if l >= len(b) {
			return
		}
		b = b[l:]
	}
}

// unreadable counts a packet that cannot be given a verdict: it waits
// until the socket closes, and a batch verdict for a later id would cover
// it, so no more batches.
func (rq *rawQueue) unreadable(what string) {
	q := rq.q
	if !rq.noBatch {
		rq.noBatch = true
		q.r.log.Error("nfq: "+what+": it waits until the queue closes; no more batch verdicts", "queue", q.num)
	}
	q.errs.Add(1)
}

// packet hands one packet to the Handler and records its verdict.
func (rq *rawQueue) packet(body []byte) {
	q := rq.q
	p := &q.pkt
	*p = Packet{Queue: q.num}
	haveID, ok := parsePacket(p, body)
	if !haveID {
		rq.unreadable("a queued packet without id")
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
	// The clock is read when a batch starts and then every
	// batchClockEvery packets, not for each (a clock read is ~50 ns on
	// the development VM, a few percent of the reader's CPU under a
	// flood): a batch may outlive maxBatchDelay by that many packets.
	n := rq.pending.len()
	if n == 0 {
		rq.since = time.Now()
	}
	rq.pending.add(id, v)
	n++
	if n >= rq.limit || (n%batchClockEvery == 0 && time.Since(rq.since) >= maxBatchDelay) {
		rq.flush()
	}
}

// nlError handles an NLMSG_ERROR: an acknowledgement, the answer to the
// drain probe, the copy mode refused, or a message of ours refused.
func (rq *rawQueue) nlError(body []byte) {
	q := rq.q
	if len(body) < nlmsgerrLen {
		rq.unexpected("short netlink error message", len(body))
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
		rq.flush()
		q.drainOnce.Do(func() { close(q.drained) })
	case seq != 0 && seq == q.paramsSeq.Load():
		rq.fatal = fmt.Errorf("setting the copy mode: %w", errno)
	default:
		if q.errs.Add(1) == 1 {
			q.r.log.Warn("nfq: the kernel refused a message; counting further ones", "queue", q.num, "seq", seq, "err", errno)
		}
	}
}

func (rq *rawQueue) unexpected(what string, n int) {
	if rq.q.errs.Add(1) == 1 {
		rq.q.r.log.Warn("nfq: "+what+"; counting further errors", "queue", rq.q.num, "n", n)
	}
}

// flush writes the pending verdicts.
func (rq *rawQueue) flush() {
	if rq.pending.len() == 0 {
		return
	}
	if err := rq.rc.Control(rq.flushFn); err != nil {
		rq.lost(rq.pending.len(), err)
		rq.pending.reset()
	}
}

// flushFD writes the pending verdicts in one write: a batch verdict for
// each run of two or more equal verdicts, a plain one for the others. A
// failed write is retried once; if that fails too, the packets wait until
// the socket closes and the kernel drops them.
func (rq *rawQueue) flushFD(fd int) {
	q := rq.q
	b := rq.wbuf[:0]
	var accepted, dropped uint64
	for i := 0; i < rq.pending.len(); {
		j := i + 1
		if !rq.noBatch {
			j = rq.pending.runEnd(i)
		}
		typ := uint16(nfqnlMsgVerdict)
		if j-i > 1 {
			typ = nfqnlMsgVerdictBatch
		}
		id, v := rq.pending.ids[j-1], rq.pending.vs[i]
		// The sequence number is the id, but never one of a probe
		// (top bit set): a refusal is then logged with it.
		b = appendVerdictMsg(b, q.num, typ, id&^(1<<31), v, id)
		if v == Accept {
			accepted += uint64(j - i)
		} else {
			dropped += uint64(j - i)
		}
		i = j
	}
	rq.wbuf = b[:0]
	rq.writes++
	rq.msgs += uint64(len(b) / verdictMsgLen)
	n := rq.pending.len()
	rq.pending.reset()
	_, err := unix.Write(fd, b)
	if err != nil {
		_, err = unix.Write(fd, b)
	}
	if err != nil {
		rq.lost(n, err)
		return
	}
	q.accepted.Add(accepted)
	q.dropped.Add(dropped)
}

func (rq *rawQueue) lost(n int, err error) {
	q := rq.q
	if q.closing.Load() {
		return
	}
	if q.errs.Add(uint64(n)) == uint64(n) {
		q.r.log.Error("nfq: sending verdicts", "queue", q.num, "count", n, "err", err)
	}
}

// close stops the reader goroutine, closes the socket and waits for the
// goroutine to return. q.closing is set.
func (rq *rawQueue) close() error {
	rq.quitOnce.Do(func() { close(rq.quit) })
	err := rq.q.con.Close()
	<-rq.done
	return err
}

// overrun counts an ENOBUFS and, if the drain probe is out, has it sent
// again: the overrun may have swallowed its answer.
func (q *queue) overrun() {
	if q.enobufs.Add(1) == 1 {
		q.r.log.Warn("nfq: socket buffer overrun (ENOBUFS): the kernel accepted or dropped packets it could not queue; counting further ones", "queue", q.num)
	}
	if q.probeSeq.Load() != 0 {
		select {
		case q.resend <- struct{}{}:
		default:
		}
	}
}

// die stops the queue on an error it cannot survive.
func (q *queue) die(err error) {
	q.errs.Add(1)
	q.dead.Store(true)
	close(q.stopped)
	q.r.fatal <- fmt.Errorf("nfq: queue %d: %w", q.num, err)
}
