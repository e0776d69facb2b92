package nfq

// verdicts are the verdicts of one queue decided and not yet sent, in the
// order the packets were read, which is the order of their ids: the kernel
// numbers a queue's packets and delivers them to the socket in one step,
// under the queue's lock, and queues only what it delivered.
//
// A batch verdict (NFQNL_MSG_VERDICT_BATCH) for id n applies to every packet
// of the queue still waiting whose id is n or before. Sent in read order, as
// one message per run of equal verdicts, the batch for a run finds waiting
// no packet before the run: those were read earlier, and their verdicts went
// out earlier or in the messages before it. So each packet gets exactly its
// own verdict. This holds as long as every packet read had its id parsed;
// the reader stops batching for good if one did not (see
// queue.unreadable).
//
// A verdict may carry a mark for its packet (NFQA_MARK, which a batch
// verdict sets on every packet it covers): runs are of equal verdicts
// with equal marks, or equally without one.
type verdicts struct {
	ids   []uint32
	vs    []Verdict
	marks []mark
}

// mark is the mark a verdict gives its packet, if set.
type mark struct {
	v   uint32
	set bool
}

func (p *verdicts) init(n int) {
	p.ids = make([]uint32, 0, n)
	p.vs = make([]Verdict, 0, n)
	p.marks = make([]mark, 0, n)
}

// add records a verdict; any Verdict other than Accept is recorded as Drop.
func (p *verdicts) add(id uint32, v Verdict, m mark) {
	if v != Accept {
		v = Drop
	}
	p.ids = append(p.ids, id)
	p.vs = append(p.vs, v)
	p.marks = append(p.marks, m)
}

func (p *verdicts) len() int { return len(p.ids) }

func (p *verdicts) reset() {
	p.ids = p.ids[:0]
	p.vs = p.vs[:0]
	p.marks = p.marks[:0]
}

// runEnd returns the end (exclusive) of the run of equal verdicts and
// marks that starts at i.
func (p *verdicts) runEnd(i int) int {
	j := i + 1
	for j < len(p.vs) && p.vs[j] == p.vs[i] && p.marks[j] == p.marks[i] {
		j++
	}
	return j
}
