//go:build linux

package nfqref

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/statewall/statewall/pkg/nfq"
	"github.com/statewall/statewall/pkg/nfq/internal/nfqnl"
)

// queue is one NFQUEUE number, read by go-nfqueue's reader goroutine,
// which calls hook for every packet and onError for everything else.
type queue struct {
	r      *Reader
	num    uint16
	nf     *nfqueue.Nfqueue
	cancel context.CancelFunc // stops go-nfqueue's reader goroutine
	batch  *batch             // GoNFQueueBatch's unsent verdicts; nil for GoNFQueue

	pkt    nfq.Packet    // reused for every packet; reader goroutine only
	lastID atomic.Uint32 // id of the last packet read

	// Shutdown, as in nfq's reader: probeSeq is the sequence number of
	// the drain probe in flight (0: none), drained is closed when the
	// kernel's answer to it arrives, resend is signalled when an ENOBUFS
	// may have swallowed it.
	probeSeq  atomic.Uint32
	drained   chan struct{}
	drainOnce sync.Once
	resend    chan struct{}
	paramsSeq atomic.Uint32 // sequence number of the copy-mode message
	closing   atomic.Bool
	dead      atomic.Bool   // the reader goroutine stopped on an error
	stopped   chan struct{} // closed when dead is set

	packets, accepted, dropped, enobufs, errs atomic.Uint64
}

// openQueue binds one queue.
//
// go-nfqueue binds in request/response steps (bind, copy mode, flags and
// length), and once the copy mode lets packets through the kernel queues
// them, so a packet can arrive where the next step's answer is expected:
// the step then fails with "mismatched sequence" (15 of 20 Opens under a
// UDP flood). So go-nfqueue binds with copy mode "none", under which the
// kernel queues nothing (it drops packets for the queue, as it does between
// a bind and the copy mode anyway), and the copy mode is set last, by a
// message whose answer (only an error would come) is read by the reader
// goroutine, which also reads the packets.
func (r *Reader) openQueue(num uint16, nsfd int, flags uint32) (*queue, error) {
	q := &queue{
		r:       r,
		num:     num,
		drained: make(chan struct{}),
		resend:  make(chan struct{}, 1),
		stopped: make(chan struct{}),
	}
	q.pkt.Queue = num
	nf, err := nfqueue.Open(&nfqueue.Config{
		NetNS:       nsfd,
		NfQueue:     num,
		MaxQueueLen: r.cfg.MaxLen,
		Copymode:    nfqueue.NfQnlCopyNone,
		Flags:       flags,
		AfFamily:    unix.AF_UNSPEC,
		Logger:      libLogger{q},
	})
	if err != nil {
		return nil, err
	}
	q.nf = nf
	if r.impl == GoNFQueueBatch {
		q.batch = newBatch(q)
	}
	if err := nfqnl.SetRcvBuf(nf.Con, r.cfg.SockBuf); err != nil {
		r.log.Warn("nfqref: socket buffer", "queue", num, "want", r.cfg.SockBuf, "err", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel
	err = nf.RegisterWithErrorFunc(ctx, q.hook, q.onError)
	if err == nil {
		m := nfqnl.ParamsMsg(num, nfqnl.CopyPacket, r.cfg.CopyRange)
		m.Header.Sequence = nfqnl.NextSeq()
		q.paramsSeq.Store(m.Header.Sequence)
		err = q.send(m)
	}
	if err != nil {
		q.closing.Store(true)
		cancel()
		nf.Close()
		if errors.Is(err, unix.EPERM) {
			err = fmt.Errorf("%w (is the queue bound by another process?)", err)
		}
		return nil, err
	}
	return q, nil
}

// hook is go-nfqueue's callback, on the queue's reader goroutine: one packet
// in, one verdict out.
func (q *queue) hook(a nfqueue.Attribute) int {
	if !q.r.isStarted.Load() {
		select {
		case <-q.r.started:
		case <-q.r.aborted:
			return 1 // Open failed; the kernel drops the packet at unbind
		}
	}
	if a.PacketID == nil {
		q.errs.Add(1)
		return 0
	}
	p := &q.pkt
	*p = nfq.Packet{ID: *a.PacketID, Queue: q.num}
	q.lastID.Store(p.ID)
	if a.Hook != nil {
		p.Hook = nfq.Hook(*a.Hook)
	}
	if a.Payload != nil {
		p.Payload = *a.Payload
	}
	p.Length = uint32(len(p.Payload))
	if a.CapLen != nil {
		p.Length = *a.CapLen
	}
	if a.Mark != nil {
		p.Mark = *a.Mark
	}
	if a.InDev != nil {
		p.InDev = *a.InDev
	}
	if a.OutDev != nil {
		p.OutDev = *a.OutDev
	}
	if a.SkbInfo != nil && len(*a.SkbInfo) >= 4 {
		p.Flags = nfq.PacketFlags(binary.BigEndian.Uint32(*a.SkbInfo))
	}
	if a.Timestamp != nil {
		p.Timestamp = *a.Timestamp
	}
	q.packets.Add(1)
	v := q.r.h(p)
	id := p.ID
	p.Payload = nil
	if q.batch != nil {
		q.batch.add(id, v)
	} else {
		q.verdict(id, v)
	}
	return 0
}

// verdict sends one verdict; a failed send is retried once, then counted.
// A packet whose verdict cannot be sent stays queued until the socket is
// closed, when the kernel drops it.
func (q *queue) verdict(id uint32, v nfq.Verdict) {
	nv, ctr := nfqueue.NfDrop, &q.dropped
	if v == nfq.Accept {
		nv, ctr = nfqueue.NfAccept, &q.accepted
	}
	err := q.nf.SetVerdict(id, nv)
	if err != nil {
		err = q.nf.SetVerdict(id, nv)
	}
	if err != nil {
		if q.errs.Add(1) == 1 {
			q.r.log.Error("nfqref: sending verdict", "queue", q.num, "id", id, "err", err)
		}
		return
	}
	ctr.Add(1)
}

// onError is go-nfqueue's error callback, on the reader goroutine. It
// returns 0 to keep reading.
func (q *queue) onError(err error) int {
	if q.closing.Load() {
		return 1
	}
	var oe *netlink.OpError
	isOp := errors.As(err, &oe)
	switch {
	case isOp && oe.Sequence != 0 && oe.Sequence == q.probeSeq.Load() && errors.Is(err, unix.ENOENT):
		// The answer to the drain probe: every packet queued before it
		// has been read and decided.
		if q.batch != nil {
			q.batch.flush()
		}
		q.drainOnce.Do(func() { close(q.drained) })
		return 0
	case errors.Is(err, unix.ENOBUFS):
		if q.enobufs.Add(1) == 1 {
			q.r.log.Warn("nfqref: socket buffer overrun (ENOBUFS): the kernel accepted or dropped packets it could not queue; counting further ones", "queue", q.num)
		}
		if q.probeSeq.Load() != 0 {
			select {
			case q.resend <- struct{}{}:
			default:
			}
		}
		return 0
	case isOp && oe.Timeout():
		// go-nfqueue's way of stopping its reader: a past read deadline.
		return 0
	case isOp && oe.Sequence != 0 && oe.Sequence != q.paramsSeq.Load():
		// The kernel refused a message of ours, usually a verdict.
		if q.errs.Add(1) == 1 {
			q.r.log.Warn("nfqref: the kernel refused a message; counting further ones", "queue", q.num, "err", err)
		}
		return 0
	}
	// Anything else stops the queue: a socket error, or the copy mode
	// refused (no packet would ever come).
	q.errs.Add(1)
	q.dead.Store(true)
	close(q.stopped)
	q.r.fatal <- fmt.Errorf("nfqref: queue %d: %w", q.num, err)
	return 1
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
			return fmt.Errorf("nfqref: queue %d: drain probe: %w", q.num, err)
		}
		select {
		case <-q.drained:
			return nil
		case <-q.resend:
		case <-q.stopped:
			return fmt.Errorf("nfqref: queue %d: reader stopped while draining; the kernel drops what it held", q.num)
		case <-deadline:
			return fmt.Errorf("nfqref: queue %d: packets still in flight after %v; the kernel drops them", q.num, q.r.cfg.DrainTimeout)
		}
	}
}

func (q *queue) send(m netlink.Message) error {
	_, err := q.nf.Con.Send(m)
	return err
}

// close stops go-nfqueue's reader and closes the socket, which unbinds the
// queue; go-nfqueue's Close waits for its reader goroutine to return.
func (q *queue) close() error {
	q.closing.Store(true)
	q.cancel()
	return q.nf.Close()
}

// libLogger passes go-nfqueue's messages on at debug level: its errors are
// either reported by us with more context (receive errors reach onError) or
// routine ("Stop receiving" and a failed unbind on the closed socket at
// shutdown, "Unknown attribute" for attributes it does not parse). The one
// that matters, a message it could not parse, which leaves a packet without
// a verdict until the socket closes, is also counted and logged as a warning.
type libLogger struct{ q *queue }

func (l libLogger) Debugf(format string, args ...any) {
	l.q.r.log.Debug("go-nfqueue: "+fmt.Sprintf(format, args...), "queue", l.q.num)
}

func (l libLogger) Errorf(format string, args ...any) {
	msg := "go-nfqueue: " + fmt.Sprintf(format, args...)
	if strings.HasPrefix(format, "Could not parse message") {
		if l.q.errs.Add(1) == 1 {
			l.q.r.log.Warn(msg, "queue", l.q.num)
		}
		return
	}
	l.q.r.log.Debug(msg, "queue", l.q.num)
}
