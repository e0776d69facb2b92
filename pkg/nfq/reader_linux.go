//go:build linux

package nfq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/statewall/statewall/pkg/nfq/internal/nfqnl"
)

// This file is the Reader's lifecycle: Open binds the queues, Run starts
// their reader goroutines, Close and shutdown drain and unbind them. One
// queue, its socket and its goroutine are in queue_linux.go, read_linux.go
// and verdict_linux.go.

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
	aborted   chan struct{} // closed when Open fails: reader goroutines give up
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
		flags |= nfqnl.CfgFlagFailOpen
	}
	if !cfg.NoGSO {
		flags |= nfqnl.CfgFlagGSO
	}
	for i := range n {
		num := cfg.Queues[0] + uint16(i)
		q, err := r.openQueue(num, nsfd, flags)
		// EPERM: the queue is bound to another socket. That can be our
		// own closed one for a moment: a child forked by another thread
		// holds a copy of every descriptor until it execs, and the kernel
		// unbinds at the last close (seen once in the tests, which fork
		// ip and ping all the time). So EPERM is retried for a while.
		for deadline := time.Now().Add(time.Second); errors.Is(err, unix.EPERM) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
			q, err = r.openQueue(num, nsfd, flags)
		}
		if err != nil {
			close(r.aborted)
			for _, q := range r.queues {
				q.close()
			}
			return nil, fmt.Errorf("nfq: queue %d: %w", num, err)
		}
		r.queues = append(r.queues, q)
	}
	log.Debug("nfq: queues bound", "first", cfg.Queues[0], "last", cfg.Queues[1], "netns", cfg.NetnsName)
	return r, nil
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
	r.startOnce.Do(func() { close(r.started) })
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
// (3) keep reading and deciding until that answer arrives (queue.drain).
// An ENOBUFS may swallow the answer, so the probe is sent again after one.
func (r *Reader) shutdown() error {
	r.shutOnce.Do(func() {
		r.start()
		var errs []error
		for _, q := range r.queues {
			if !q.dead.Load() {
				if err := q.send(nfqnl.ConfigMsg(q.num, nfqnl.CfgQueueMaxLen, 0)); err != nil {
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
			if err := q.close(); err != nil && !errors.Is(err, unix.EBADF) {
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
			Held:     q.held.Load(),
		}
	}
	return st
}
