//go:build linux

package nfq

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/statewall/statewall/pkg/nfq/internal/nfqnl"
)

// queue is one NFQUEUE number, the netlink socket it is bound to, and the
// reader goroutine (run, in read_linux.go) that reads the socket, hands
// each packet to the Handler and sends the verdicts (verdict_linux.go).
// The socket is made by mdlayher/netlink, which also enters the network
// namespace, and is read and written through its syscall.RawConn, so that
// the runtime's poller does the waiting.
type queue struct {
	r   *Reader
	num uint16
	con *netlink.Conn // nil in the tests that read a socket pair
	rc  syscall.RawConn

	// Shutdown (see Reader.shutdown): lastID is the id of the last packet
	// read, probeSeq the sequence number of the drain probe in flight (0:
	// none); drained is closed when the kernel's answer to it arrives,
	// resend is signalled when an ENOBUFS may have swallowed it.
	lastID    atomic.Uint32
	probeSeq  atomic.Uint32
	drained   chan struct{}
	drainOnce sync.Once
	resend    chan struct{}
	paramsSeq atomic.Uint32 // sequence number of the copy-mode message
	closing   atomic.Bool
	dead      atomic.Bool   // the reader goroutine stopped on an error
	stopped   chan struct{} // closed when dead is set
	quit      chan struct{} // closed by close: stop waiting for Run
	quitOnce  sync.Once
	done      chan struct{} // closed when the reader goroutine returns

	// The reader goroutine's own (read_linux.go).
	pkt    Packet // reused for every packet
	bufs   [recvBatch][]byte
	iovs   [recvBatch]unix.Iovec
	mmsgs  [recvBatch]mmsghdr
	n      int   // datagrams the last read got
	rerr   error // and its error
	readFn func(uintptr) bool
	spin   time.Duration
	burst  int   // packets read since the socket was last found empty
	fatal  error // set by process: the reader must stop

	// The verdicts decided and not yet sent (verdict_linux.go); the
	// reader goroutine's own too.
	pending      verdicts
	limit        int
	since        time.Time // when the first pending verdict was recorded
	readAt       time.Time // when the last read from the socket returned (Packet.Read)
	wbuf         []byte
	flushFn      func(uintptr)
	noBatch      bool   // a packet without id was read: batch verdicts could cover it
	flowMark     uint32 // the flow hash's mark for this queue (SpreadFlow), 0 if none
	writes, msgs uint64 // verdict writes and messages (tests; read after close)

	packets, accepted, dropped, enobufs, errs atomic.Uint64

	// Held packets (hold_linux.go): holding is how many await Release
	// (while any does, no batch verdicts), held how many ever did.
	holding atomic.Int64
	held    atomic.Uint64
	relMu   sync.Mutex // guards relBuf and heldMarks
	relBuf  []byte
	// heldMarks: the marks held packets leave with when they are
	// accepted, by id, for those whose mark changes (a flow hash's mark
	// taken off, offload's bit set); absent: the mark as queued.
	heldMarks map[uint32]uint32
}

// newQueue makes queue num, reading and writing through rc, with its
// buffers; its reader goroutine is not started.
func (r *Reader) newQueue(num uint16, rc syscall.RawConn) *queue {
	q := &queue{
		r:       r,
		num:     num,
		rc:      rc,
		drained: make(chan struct{}),
		resend:  make(chan struct{}, 1),
		stopped: make(chan struct{}),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		limit:   nfqnl.BatchLimit(r.cfg.MaxLen),
	}
	q.pkt.Queue = num
	size := int(r.cfg.CopyRange) + recvSlack
	for i := range q.bufs {
		q.bufs[i] = make([]byte, size)
		q.iovs[i].Base = &q.bufs[i][0]
		q.iovs[i].SetLen(size)
		q.mmsgs[i].hdr.Iov = &q.iovs[i]
		q.mmsgs[i].hdr.SetIovlen(1)
	}
	switch q.spin = r.cfg.Spin; {
	case q.spin == 0:
		q.spin = DefaultSpin
	case q.spin < 0:
		q.spin = 0
	}
	q.pending.init(q.limit)
	q.wbuf = make([]byte, 0, q.limit*nfqnl.VerdictMarkMsgLen)
	if r.cfg.Spread == SpreadFlow && r.cfg.Queues[1] > r.cfg.Queues[0] && int(r.cfg.Queues[1]-r.cfg.Queues[0]) < MaxFlowQueues {
		q.flowMark = FlowMark(int(num - r.cfg.Queues[0]))
	}
	q.readFn = q.read
	q.flushFn = func(fd uintptr) { q.flushFD(int(fd)) }
	return q
}

// openQueue binds one queue and starts its reader goroutine, which waits
// for Run (or Close) before it reads.
//
// Binding is a series of request/response steps (bind, flags and length,
// copy mode), and once the copy mode lets packets through the kernel
// queues them, so a packet can arrive where the next step's answer is
// expected (go-nfqueue, which reads step by step, then failed with
// "mismatched sequence": 15 of 20 Opens under a UDP flood). So the bind
// leaves the copy mode at "none", under which the kernel queues nothing
// (it drops packets for the queue, as it does between a bind and the copy
// mode anyway); the bind, the queue length and the flags go in one
// acknowledged message; and the copy mode is set last, by a message whose
// answer (only an error would come) is read by the reader goroutine,
// which also reads the packets.
func (r *Reader) openQueue(num uint16, nsfd int, flags uint32) (*queue, error) {
	con, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: nsfd})
	if err != nil {
		return nil, err
	}
	rc, err := con.SyscallConn()
	if err != nil {
		con.Close()
		return nil, err
	}
	if err := nfqnl.SetRcvBuf(con, r.cfg.SockBuf); err != nil {
		r.log.Warn("nfq: socket buffer", "queue", num, "want", r.cfg.SockBuf, "err", err)
	}
	q := r.newQueue(num, rc)
	q.con = con
	go q.run()

	data := nfqnl.NfgenHeader(num)
	data = nfqnl.AppendAttr(data, nfqnl.CfgCmd, nfqnl.CfgCmdBind, 0, 0, 0) // command, pad, __be16 pf (unused)
	data = nfqnl.AppendAttrU32(data, nfqnl.CfgQueueMaxLen, r.cfg.MaxLen)
	data = nfqnl.AppendAttrU32(data, nfqnl.CfgFlags, flags)
	data = nfqnl.AppendAttrU32(data, nfqnl.CfgMask, nfqnl.CfgFlagFailOpen|nfqnl.CfgFlagGSO)
	_, err = con.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfqnl.SubsysQueue<<8 | nfqnl.MsgConfig), Flags: netlink.Request | netlink.Acknowledge},
		Data:   data,
	})
	if err == nil {
		m := nfqnl.ParamsMsg(num, nfqnl.CopyPacket, r.cfg.CopyRange)
		m.Header.Sequence = nfqnl.NextSeq()
		q.paramsSeq.Store(m.Header.Sequence)
		err = q.send(m)
	}
	if err != nil {
		q.close()
		if errors.Is(err, unix.EPERM) {
			err = fmt.Errorf("%w (is the queue bound by another process?)", err)
		}
		return nil, err
	}
	return q, nil
}

// drain sends the probe and waits for its answer (see Reader.shutdown).
func (q *queue) drain(deadline <-chan time.Time) error {
	for {
		// An id half the id space away from the last one read cannot be
		// queued: the ids in the queue are at most MaxLen apart.
		m := nfqnl.ProbeMsg(q.num, q.lastID.Load()+1<<31)
		m.Header.Sequence = nfqnl.NextSeq()
		q.probeSeq.Store(m.Header.Sequence)
		if err := q.send(m); err != nil {
			return fmt.Errorf("nfq: queue %d: drain probe: %w", q.num, err)
		}
		select {
		case <-q.drained:
			return nil
		case <-q.resend:
		case <-q.stopped:
			return fmt.Errorf("nfq: queue %d: reader stopped while draining; the kernel drops what it held", q.num)
		case <-deadline:
			return fmt.Errorf("nfq: queue %d: packets still in flight after %v; the kernel drops them", q.num, q.r.cfg.DrainTimeout)
		}
	}
}

func (q *queue) send(m netlink.Message) error {
	_, err := q.con.Send(m)
	return err
}

// close stops the reader goroutine, closes the socket, which unbinds the
// queue, and waits for the goroutine to return.
func (q *queue) close() error {
	q.closing.Store(true)
	q.quitOnce.Do(func() { close(q.quit) })
	err := q.con.Close()
	<-q.done
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
