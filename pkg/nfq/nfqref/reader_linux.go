//go:build linux

package nfqref

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/statewall/statewall/pkg/nfq"
	"github.com/statewall/statewall/pkg/nfq/internal/nfqnl"
)

// Impl names a reference reader; the names are those of the benchmark's
// sub-benchmarks and the tests' subtests.
type Impl string

// The references.
const (
	// GoNFQueue is github.com/florianl/go-nfqueue, one verdict message
	// per packet.
	GoNFQueue Impl = "go-nfqueue"
	// GoNFQueueBatch is go-nfqueue with go-nfqueue's SetVerdictBatch,
	// sent when a poll finds the socket empty.
	GoNFQueueBatch Impl = "go-nfqueue-batch"
)

// Reader is a reference reader of a range of queues. It has the lifecycle
// of nfq.Reader (Open, Run, Close; see there), and its methods are safe
// for concurrent use.
type Reader struct {
	impl   Impl
	cfg    nfq.QueueConfig
	h      nfq.Handler
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

	afterDrain func() // see SetAfterDrain
}

// normalize applies nfq.QueueConfig's defaults.
func normalize(c nfq.QueueConfig) (nfq.QueueConfig, error) {
	if c.Queues[0] > c.Queues[1] {
		return c, fmt.Errorf("nfqref: queue range %d:%d is reversed", c.Queues[0], c.Queues[1])
	}
	if c.MaxLen == 0 {
		c.MaxLen = nfqnl.DefaultMaxLen
	}
	if c.CopyRange == 0 || c.CopyRange > nfqnl.DefaultCopyRange {
		c.CopyRange = nfqnl.DefaultCopyRange
	}
	if c.SockBuf <= 0 {
		c.SockBuf = nfqnl.DefaultSockBuf
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = nfqnl.DefaultDrainTimeout
	}
	return c, nil
}

// Open binds the queues cfg names with the reference impl, as nfq.Open
// does with nfq's reader.
func Open(impl Impl, cfg nfq.QueueConfig, h nfq.Handler, log *slog.Logger) (*Reader, error) {
	switch impl {
	case GoNFQueue, GoNFQueueBatch:
	default:
		return nil, fmt.Errorf("nfqref: unknown reader %q (want %s or %s)", impl, GoNFQueue, GoNFQueueBatch)
	}
	cfg, err := normalize(cfg)
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("nfqref: nil Handler")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nsfd := 0
	if cfg.NetnsName != "" {
		ns, err := netns.GetFromName(cfg.NetnsName)
		if err != nil {
			return nil, fmt.Errorf("nfqref: network namespace %s: %w", cfg.NetnsName, err)
		}
		defer ns.Close()
		nsfd = int(ns)
	}
	n := int(cfg.Queues[1]) - int(cfg.Queues[0]) + 1
	r := &Reader{
		impl:     impl,
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
	for i := range n {
		num := cfg.Queues[0] + uint16(i)
		q, err := r.openQueue(num, nsfd, flags)
		// EPERM: the queue is still bound to a socket of ours just
		// closed (see nfq.Open).
		for deadline := time.Now().Add(time.Second); errors.Is(err, unix.EPERM) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
			q, err = r.openQueue(num, nsfd, flags)
		}
		if err != nil {
			close(r.aborted)
			for _, q := range r.queues {
				q.close()
			}
			return nil, fmt.Errorf("nfqref: queue %d: %w", num, err)
		}
		r.queues = append(r.queues, q)
	}
	log.Debug("nfqref: queues bound", "impl", impl, "first", cfg.Queues[0], "last", cfg.Queues[1], "netns", cfg.NetnsName)
	return r, nil
}

// SetAfterDrain sets f to run after every queue is drained and before the
// sockets are closed, for tests that look at the kernel's queue then. Call
// it before Run or Close.
func (r *Reader) SetAfterDrain(f func()) { r.afterDrain = f }

// Run lets the Handler decide packets until ctx is done, Close is called,
// or a queue fails, as nfq.Reader.Run does.
func (r *Reader) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return nfq.ErrClosed
	}
	select {
	case <-r.closeReq:
		return nfq.ErrClosed
	default:
	}
	r.start()
	var err error
	select {
	case <-ctx.Done():
	case <-r.closeReq:
	case err = <-r.fatal:
		r.log.Error("nfqref: queue failed, shutting down", "err", err)
	}
	return errors.Join(err, r.shutdown())
}

func (r *Reader) start() {
	r.startOnce.Do(func() {
		r.isStarted.Store(true)
		close(r.started)
	})
}

// Close stops the Reader as nfq.Reader.Close does: the packets queued get
// the Handler's verdict, then the sockets are closed.
func (r *Reader) Close() error {
	r.closeOnce.Do(func() { close(r.closeReq) })
	return r.shutdown()
}

// shutdown drains and closes every queue, once, the way nfq's reader does
// (see nfq.Reader's shutdown): stop the queue, send the drain probe, read
// and decide until its answer arrives (onError), close.
func (r *Reader) shutdown() error {
	r.shutOnce.Do(func() {
		r.start()
		var errs []error
		for _, q := range r.queues {
			if !q.dead.Load() {
				if err := q.send(nfqnl.ConfigMsg(q.num, nfqnl.CfgQueueMaxLen, 0)); err != nil {
					errs = append(errs, fmt.Errorf("nfqref: queue %d: stopping the queue: %w", q.num, err))
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
			if err := q.close(); err != nil && !errors.Is(err, unix.EBADF) {
				errs = append(errs, fmt.Errorf("nfqref: queue %d: close: %w", q.num, err))
			}
		}
		r.shutErr = errors.Join(errs...)
	})
	return r.shutErr
}

// Stats returns the counters of every queue, as nfq.Reader.Stats does.
func (r *Reader) Stats() []nfq.Stats {
	st := make([]nfq.Stats, len(r.queues))
	for i, q := range r.queues {
		st[i] = nfq.Stats{
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
