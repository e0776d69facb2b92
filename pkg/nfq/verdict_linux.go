//go:build linux

package nfq

import (
	"golang.org/x/sys/unix"

	"github.com/statewall/statewall/pkg/nfq/internal/nfqnl"
)

// This file sends a queue's verdicts: those decided since the last write,
// in one write (see read_linux.go for when), each run of equal verdicts as
// one batch verdict (see verdicts in batch.go for why that gives every
// packet exactly its own verdict).

// flush writes the pending verdicts.
func (q *queue) flush() {
	if q.pending.len() == 0 {
		return
	}
	if err := q.rc.Control(q.flushFn); err != nil {
		q.lost(q.pending.len(), err)
		q.pending.reset()
	}
}

// flushFD writes the pending verdicts in one write: a batch verdict for
// each run of two or more equal verdicts, a plain one for the others. A
// failed write is retried once; if that fails too, the packets wait until
// the socket closes and the kernel drops them.
func (q *queue) flushFD(fd int) {
	b := q.wbuf[:0]
	var accepted, dropped uint64
	nmsgs := 0
	for i := 0; i < q.pending.len(); {
		j := i + 1
		if !q.noBatch && q.holding.Load() == 0 {
			j = q.pending.runEnd(i)
		}
		typ := uint16(nfqnl.MsgVerdict)
		if j-i > 1 {
			typ = nfqnl.MsgVerdictBatch
		}
		id, v := q.pending.ids[j-1], q.pending.vs[i]
		nv := uint32(nfqnl.NfDrop)
		if v == Accept {
			nv = nfqnl.NfAccept
		}
		// The sequence number is the id, but never one of a probe
		// (top bit set): a refusal is then logged with it.
		if m := q.pending.marks[i]; m.set {
			b = nfqnl.AppendVerdictMarkMsg(b, q.num, typ, id&^(1<<31), nv, id, m.v)
		} else {
			b = nfqnl.AppendVerdictMsg(b, q.num, typ, id&^(1<<31), nv, id)
		}
		nmsgs++
		if v == Accept {
			accepted += uint64(j - i)
		} else {
			dropped += uint64(j - i)
		}
		i = j
	}
	q.wbuf = b[:0]
	q.writes++
	q.msgs += uint64(nmsgs)
	n := q.pending.len()
	q.pending.reset()
	_, err := unix.Write(fd, b)
	if err != nil {
		_, err = unix.Write(fd, b)
	}
	if err != nil {
		q.lost(n, err)
		return
	}
	q.accepted.Add(accepted)
	q.dropped.Add(dropped)
}

func (q *queue) lost(n int, err error) {
	if q.closing.Load() {
		return
	}
	if q.errs.Add(uint64(n)) == uint64(n) {
		q.r.log.Error("nfq: sending verdicts", "queue", q.num, "count", n, "err", err)
	}
}
