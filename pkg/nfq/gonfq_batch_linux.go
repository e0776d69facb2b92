//go:build linux

package nfq

import (
	"syscall"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"golang.org/x/sys/unix"
)

// Batching bounds, for ImplRaw and ImplGoNFQueueBatch: verdicts wait for the
// socket to be empty, but at most maxBatch of them (and at most half the
// queue length: the kernel counts undecided packets against it) and at most
// maxBatchDelay after the first of them was decided (a slow Handler under a
// steady stream never sees an empty socket).
const (
	maxBatch      = 64
	maxBatchDelay = time.Millisecond
)

func batchLimit(maxLen uint32) int {
	return max(1, min(maxBatch, int(maxLen/2)))
}

// gonfqBatch is ImplGoNFQueueBatch: go-nfqueue's reader, with the verdicts
// held until a poll(2) of the socket finds it empty and then sent with
// go-nfqueue's SetVerdictBatch, one message per run of equal verdicts. It
// exists to measure what batching alone gains (go-nfqueue's reader loop
// cannot tell when the socket is empty, hence the extra system call).
type gonfqBatch struct {
	q       *queue
	pending verdicts
	limit   int
	since   time.Time
	rc      syscall.RawConn
	pfd     []unix.PollFd
	pollFn  func(uintptr)
	ready   bool
}

func newGonfqBatch(q *queue) *gonfqBatch {
	b := &gonfqBatch{q: q, limit: batchLimit(q.r.cfg.MaxLen), pfd: make([]unix.PollFd, 1)}
	b.pending.init(b.limit)
	b.rc, _ = q.con.SyscallConn()
	b.pollFn = func(fd uintptr) {
		b.pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
		n, err := unix.Poll(b.pfd, 0)
		b.ready = err != nil || n > 0
	}
	return b
}

// add records a verdict and sends what is pending if the socket is empty or
// a bound is reached.
func (b *gonfqBatch) add(id uint32, v Verdict) {
	now := time.Now()
	if b.pending.len() == 0 {
		b.since = now
	}
	b.pending.add(id, v)
	if b.pending.len() < b.limit && now.Sub(b.since) < maxBatchDelay && b.rc != nil {
		b.ready = false
		if err := b.rc.Control(b.pollFn); err == nil && b.ready {
			return // more to read: the next packet's verdict may join
		}
	}
	b.flush()
}

// flush sends the pending verdicts, each run of equal verdicts as one
// batch verdict for the run's last id (a single one as a plain verdict); a
// failed send is retried once, then counted.
func (b *gonfqBatch) flush() {
	q := b.q
	b.pending.runs(func(last uint32, n int, v Verdict) {
		nv, ctr := nfqueue.NfDrop, &q.dropped
		if v == Accept {
			nv, ctr = nfqueue.NfAccept, &q.accepted
		}
		send := q.nf.SetVerdictBatch
		if n == 1 {
			send = q.nf.SetVerdict
		}
		err := send(last, nv)
		if err != nil {
			err = send(last, nv)
		}
		if err != nil {
			if q.errs.Add(1) == 1 {
				q.r.log.Error("nfq: sending verdicts", "queue", q.num, "last", last, "count", n, "err", err)
			}
			return
		}
		ctr.Add(uint64(n))
	})
	b.pending.reset()
}
