//go:build linux

package nfq

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Netlink constants of nfnetlink_queue (include/uapi/linux/netfilter/
// nfnetlink_queue.h) for the messages go-nfqueue cannot send: the copy mode
// after binding, the shutdown gate and the drain probe.
const (
	nfnlSubsysQueue    = 3
	nfqnlMsgVerdict    = 1
	nfqnlMsgConfig     = 2
	nfqaVerdictHdr     = 2
	nfqaCfgParams      = 2
	nfqaCfgQueueMaxLen = 3
	nfqnlCopyPacket    = 2
)

// Reader reads packets from a range of queues and sends the Handler's
// verdicts. Its methods are safe for concurrent use.
//
// Between Open and Run the queues are bound, so packets wait in the kernel
// (up to MaxLen per queue) and in the socket buffers; the Handler is first
// called when Run starts (or when Close drains them). Close waits for the
// Handler to return, so a Handler that never returns blocks Close.
type Reader struct {
	cfg    QueueConfig
	h      Handler
	log    *slog.Logger
	queues []*queue

	started   chan struct{} // closed by Run or shutdown: the Handler may run
	startOnce sync.Once
	isStarted atomic.Bool   // started is closed (the hot path's check)
	aborted   chan struct{} // closed when Open fails: hooks waiting for started give up
	running   atomic.Bool
	closeReq  chan struct{} // closed by Close
	closeOnce sync.Once
	fatal     chan error // one slot per queue

	shutOnce sync.Once
	shutErr  error

	// afterDrain, if set (tests), runs after every queue is drained and
	// before the sockets are closed.
	afterDrain func()
}

// queue is one NFQUEUE number and its socket.
type queue struct {
	r      *Reader
	num    uint16
	con    *netlink.Conn      // the queue's socket, either implementation's
	nf     *nfqueue.Nfqueue   // ImplGoNFQueue and ImplGoNFQueueBatch
	cancel context.CancelFunc // stops go-nfqueue's reader goroutine
	batch  *gonfqBatch        // ImplGoNFQueueBatch's unsent verdicts
	raw    *rawQueue          // ImplRaw (raw_linux.go); nf, cancel and batch are nil

	pkt    Packet        // reused for every packet; reader goroutine only
	lastID atomic.Uint32 // id of the last packet read

	// Shutdown: probeSeq is the sequence number of the drain probe in
	// flight (0: none), drained is closed when the kernel's answer to it
	// arrives, resend is signalled when an ENOBUFS may have swallowed it.
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

// Open binds the queues cfg names, one netlink socket each. It fails if a
// setting is refused or a queue is bound by another socket (after a second
// of retries: that socket may be one of ours, just closed).
//
// While a queue is being bound, a few system calls' time, the kernel drops
// packets diverted to it, even with FailOpen (it does so from the bind to
// the setting of the copy mode). A daemon avoids that window by calling
// Open before Install; with leftover rules of a crashed run in place, the
// window is unavoidable, but Open still works under any load.
func Open(cfg QueueConfig, h Handler, log *slog.Logger) (*Reader, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("nfq: nil Handler")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nsfd := 0
	if cfg.NetnsName != "" {
		ns, err := netns.GetFromName(cfg.NetnsName)
		if err != nil {
			return nil, fmt.Errorf("nfq: network namespace %s: %w", cfg.NetnsName, err)
		}
		defer ns.Close()
		nsfd = int(ns)
	}
	n := int(cfg.Queues[1]) - int(cfg.Queues[0]) + 1
	r := &Reader{
		cfg:      cfg,
		h:        h,
		log:      log,
		started:  make(chan struct{}),
		aborted:  make(chan struct{}),
		closeReq: make(chan struct{}),
		fatal:    make(chan error, n),
	}
	var flags uint32
	if cfg.FailOpen {
		flags |= nfqueue.NfQaCfgFlagFailOpen
	}
	if !cfg.NoGSO {
		flags |= nfqueue.NfQaCfgFlagGSO
	}
	open := r.openQueue
	if cfg.Impl == ImplRaw {
		open = r.openRawQueue
	}
	for i := range n {
		num := cfg.Queues[0] + uint16(i)
		q, err := open(num, nsfd, flags)
		// EPERM: the queue is bound to another socket. That can be our
		// own closed one for a moment: a child forked by another thread
		// holds a copy of every descriptor until it execs, and the kernel
		// unbinds at the last close (seen once in the tests, which fork
		// ip and ping all the time). So EPERM is retried for a while.
		for deadline := time.Now().Add(time.Second); errors.Is(err, unix.EPERM) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
			q, err = open(num, nsfd, flags)
		}
		if err != nil {
			close(r.aborted)
			for _, q := range r.queues {
				q.closeSock()
			}
			return nil, fmt.Errorf("nfq: queue %d: %w", num, err)
		}
		r.queues = append(r.queues, q)
	}
	log.Debug("nfq: queues bound", "first", cfg.Queues[0], "last", cfg.Queues[1], "netns", cfg.NetnsName)
	return r, nil
}

// openQueue binds one queue.
//
// newQueue is the part of a queue both implementations share, before it
// is bound.
func (r *Reader) newQueue(num uint16) *queue {
	q := &queue{
		r:       r,
		num:     num,
		drained: make(chan struct{}),
		resend:  make(chan struct{}, 1),
		stopped: make(chan struct{}),
	}
	q.pkt.Queue = num
	return q
}

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
	q := r.newQueue(num)
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
	q.nf, q.con = nf, nf.Con
	if r.cfg.Impl == ImplGoNFQueueBatch {
		q.batch = newGonfqBatch(q)
	}
	if err := setRcvBuf(nf.Con, r.cfg.SockBuf); err != nil {
		r.log.Warn("nfq: socket buffer", "queue", num, "want", r.cfg.SockBuf, "err", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel
	err = nf.RegisterWithErrorFunc(ctx, q.hook, q.onError)
	if err == nil {
		m := paramsMsg(num, nfqnlCopyPacket, r.cfg.CopyRange)
		m.Header.Sequence = nextSeq()
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

// setRcvBuf sets the receive buffer with SO_RCVBUFFORCE (CAP_NET_ADMIN,
// which binding a queue needs anyway), falling back to SO_RCVBUF.
func setRcvBuf(c *netlink.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err != nil {
		return err
	}
	if serr == nil {
		return nil
	}
	return errors.Join(serr, c.SetReadBuffer(n))
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
	*p = Packet{ID: *a.PacketID, Queue: q.num}
	q.lastID.Store(p.ID)
	if a.Hook != nil {
		p.Hook = Hook(*a.Hook)
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
		p.Flags = PacketFlags(binary.BigEndian.Uint32(*a.SkbInfo))
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
func (q *queue) verdict(id uint32, v Verdict) {
	nv, ctr := nfqueue.NfDrop, &q.dropped
	if v == Accept {
		nv, ctr = nfqueue.NfAccept, &q.accepted
	}
	err := q.nf.SetVerdict(id, nv)
	if err != nil {
		err = q.nf.SetVerdict(id, nv)
	}
	if err != nil {
		if q.errs.Add(1) == 1 {
			q.r.log.Error("nfq: sending verdict", "queue", q.num, "id", id, "err", err)
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
			q.r.log.Warn("nfq: socket buffer overrun (ENOBUFS): the kernel accepted or dropped packets it could not queue; counting further ones", "queue", q.num)
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
			q.r.log.Warn("nfq: the kernel refused a message; counting further ones", "queue", q.num, "err", err)
		}
		return 0
	}
	// Anything else stops the queue: a socket error, or the copy mode
	// refused (no packet would ever come).
	q.errs.Add(1)
	q.dead.Store(true)
	close(q.stopped)
	q.r.fatal <- fmt.Errorf("nfq: queue %d: %w", q.num, err)
	return 1
}

// Run lets the Handler decide packets until ctx is done, Close is called,
// or a queue fails; then it shuts the Reader down as Close does. It returns
// nil when stopped by ctx or Close, else the failure. Run may be called
// once.
func (r *Reader) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrClosed
	}
	select {
	case <-r.closeReq:
		return ErrClosed
	default:
	}
	r.start()
	var err error
	select {
	case <-ctx.Done():
	case <-r.closeReq:
	case err = <-r.fatal:
		r.log.Error("nfq: queue failed, shutting down", "err", err)
	}
	return errors.Join(err, r.shutdown())
}

func (r *Reader) start() {
	r.startOnce.Do(func() {
		r.isStarted.Store(true)
		close(r.started)
	})
}

// Close stops the Reader. Packets already queued get the Handler's verdict
// (within DrainTimeout); packets arriving meanwhile are accepted by the
// kernel with FailOpen and dropped without; then the sockets are closed.
// Close waits for all that, also when Run is doing it, and is idempotent.
func (r *Reader) Close() error {
	r.closeOnce.Do(func() { close(r.closeReq) })
	return r.shutdown()
}

// shutdown drains and closes every queue, once.
//
// Draining works with the kernel's order of messages: the kernel queues a
// packet and sends it to the socket under the queue's lock, and answers a
// message synchronously during our send. So, per queue: (1) set the queue
// length to 0, after which the kernel queues nothing more (FailOpen accepts,
// otherwise it drops); (2) send a verdict for an id no packet has, whose
// ENOENT answer lands in the socket behind every packet queued before (1);
// (3) keep reading and deciding until that answer arrives. An ENOBUFS may
// swallow the answer, so the probe is sent again after one.
func (r *Reader) shutdown() error {
	r.shutOnce.Do(func() {
		r.start()
		var errs []error
		for _, q := range r.queues {
			if !q.dead.Load() {
				if err := q.send(configMsg(q.num, nfqaCfgQueueMaxLen, 0)); err != nil {
					errs = append(errs, fmt.Errorf("nfq: queue %d: stopping the queue: %w", q.num, err))
				}
			}
		}
		deadline := time.NewTimer(r.cfg.DrainTimeout)
		defer deadline.Stop()
		for _, q := range r.queues {
			if !q.dead.Load() {
				if err := q.drain(deadline.C); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if r.afterDrain != nil {
			r.afterDrain()
		}
		for _, q := range r.queues {
			// Closing the socket unbinds the queue; the kernel drops
			// whatever is still queued, which after a drain is nothing.
			if err := q.closeSock(); err != nil && !errors.Is(err, unix.EBADF) {
				errs = append(errs, fmt.Errorf("nfq: queue %d: close: %w", q.num, err))
			}
		}
		r.shutErr = errors.Join(errs...)
		st := r.Stats()
		for _, s := range st {
			r.log.Debug("nfq: queue closed", "queue", s.Queue, "packets", s.Packets, "accepted", s.Accepted,
				"dropped", s.Dropped, "enobufs", s.ENOBUFS, "errors", s.Errors)
		}
	})
	return r.shutErr
}

// drain sends the probe and waits for its answer (see shutdown).
func (q *queue) drain(deadline <-chan time.Time) error {
	for {
		// An id half the id space away from the last one read cannot be
		// queued: the ids in the queue are at most MaxLen apart.
		m := verdictMsg(q.num, q.lastID.Load()+1<<31)
		m.Header.Sequence = nextSeq()
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

// closeSock stops the queue's reader and closes its socket, which unbinds
// the queue. It waits for the reader to return (with ImplRaw; go-nfqueue's
// Close waits for its reader goroutine too).
func (q *queue) closeSock() error {
	q.closing.Store(true)
	if q.raw != nil {
		return q.raw.close()
	}
	q.cancel()
	return q.nf.Close()
}

// probeSeqs hands out sequence numbers for drain probes: top bit set, so
// never 0 ("no probe"). netlink.Conn numbers go-nfqueue's verdicts from a
// random start, so one may meet a probe's number, but it would also have to
// be refused with ENOENT while the probe is out to be taken for its answer.
var probeSeqs atomic.Uint32

func nextSeq() uint32 { return probeSeqs.Add(1) | 1<<31 }

// configMsg is an NFQNL_MSG_CONFIG with one u32 attribute, without an
// acknowledgement request: success is silent, failure arrives as an error.
func configMsg(num uint16, attr uint16, val uint32) netlink.Message {
	data := nfgenHeader(num)
	data = binary.NativeEndian.AppendUint16(data, 8) // struct nlattr: length, type
	data = binary.NativeEndian.AppendUint16(data, attr)
	data = binary.BigEndian.AppendUint32(data, val)
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysQueue<<8 | nfqnlMsgConfig), Flags: netlink.Request},
		Data:   data,
	}
}

// paramsMsg is an NFQNL_MSG_CONFIG setting the copy mode and range (struct
// nfqnl_msg_config_params: __be32 copy_range, __u8 copy_mode, packed),
// without an acknowledgement request.
func paramsMsg(num uint16, mode uint8, copyRange uint32) netlink.Message {
	data := nfgenHeader(num)
	data = binary.NativeEndian.AppendUint16(data, 4+5)
	data = binary.NativeEndian.AppendUint16(data, nfqaCfgParams)
	data = binary.BigEndian.AppendUint32(data, copyRange)
	data = append(data, mode, 0, 0, 0) // and padding to 4 bytes
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysQueue<<8 | nfqnlMsgConfig), Flags: netlink.Request},
		Data:   data,
	}
}

// verdictMsg is an NFQNL_MSG_VERDICT accepting packet id.
func verdictMsg(num uint16, id uint32) netlink.Message {
	data := nfgenHeader(num)
	data = binary.NativeEndian.AppendUint16(data, 12)
	data = binary.NativeEndian.AppendUint16(data, nfqaVerdictHdr)
	data = binary.BigEndian.AppendUint32(data, nfqueue.NfAccept)
	data = binary.BigEndian.AppendUint32(data, id)
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysQueue<<8 | nfqnlMsgVerdict), Flags: netlink.Request},
		Data:   data,
	}
}

// nfgenHeader is struct nfgenmsg: family, version, resource id (the queue,
// big endian).
func nfgenHeader(num uint16) []byte {
	return []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, byte(num >> 8), byte(num)}
}

// Stats returns the counters of every queue.
func (r *Reader) Stats() []Stats {
	st := make([]Stats, len(r.queues))
	for i, q := range r.queues {
		st[i] = Stats{
			Queue:    q.num,
			Packets:  q.packets.Load(),
			Accepted: q.accepted.Load(),
			Dropped:  q.dropped.Load(),
			ENOBUFS:  q.enobufs.Load(),
			Errors:   q.errs.Load(),
		}
	}
	return st
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
