//go:build linux

package nfq

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/statewall/statewall/pkg/nfq/internal/nfqnl"
)

// Release gives the verdict of a packet its Handler held (Hold), by the
// packet's queue and id; an accepted packet leaves with the mark it would
// have had without the hold (the flow hash's mark taken off, the
// Handler's SetMark bits set). It may be called from any goroutine, once per
// held packet; a verdict for an id that is not held is refused by the
// kernel (counted as an error). Only Accept accepts; anything else drops.
// After Close the kernel has dropped (or, fail-open, accepted) the packet
// already: Release then reports an error and changes nothing.
func (r *Reader) Release(queue uint16, id uint32, v Verdict) error {
	i := int(queue) - int(r.cfg.Queues[0])
	if i < 0 || i >= len(r.queues) {
		return fmt.Errorf("nfq: release: queue %d is not read here", queue)
	}
	q := r.queues[i]
	nv := uint32(nfqnl.NfDrop)
	if v == Accept {
		nv = nfqnl.NfAccept
	}
	q.relMu.Lock()
	mark, remark := q.heldMarks[id]
	delete(q.heldMarks, id)
	if remark && v == Accept {
		q.relBuf = nfqnl.AppendVerdictMarkMsg(q.relBuf[:0], q.num, nfqnl.MsgVerdict, id&^(1<<31), nv, id, mark)
	} else {
		q.relBuf = nfqnl.AppendVerdictMsg(q.relBuf[:0], q.num, nfqnl.MsgVerdict, id&^(1<<31), nv, id)
	}
	var werr error
	err := q.rc.Control(func(fd uintptr) { _, werr = unix.Write(int(fd), q.relBuf) })
	q.relMu.Unlock()
	// Only now may batch verdicts resume: the packet is no longer
	// waiting, so none can cover it.
	q.holding.Add(-1)
	if err == nil {
		err = werr
	}
	if err != nil {
		q.lost(1, err)
		return fmt.Errorf("nfq: release queue %d id %d: %w", queue, id, err)
	}
	if v == Accept {
		q.accepted.Add(1)
	} else {
		q.dropped.Add(1)
	}
	return nil
}
