package conntrack

import "github.com/statewall/statewall/pkg/packet"

// Batch keeps what Prefetch computed for a run of packets, for their
// Track: each packet's tuple and its hash, which Track would otherwise
// compute again (the tuple's two 16-byte addresses and the seeded hash:
// BenchmarkStatefulKnown at 1M connections, the two tables alternated in
// one process, 200-207 ns without the batch, 181 with). Callers that
// decide packets in batches (replay, the benchmark harness) keep one; its
// zero value is ready to use. A Batch belongs to one goroutine, and the
// packets it was given must not change before they are tracked.
type Batch struct {
	ps []packet.Packet
	// tuples[i] is ps[i]'s tuple and hash when has[i]: a whole, decoded
	// packet, not a fragment.
	tuples [BatchSize]tuple
	has    [BatchSize]bool
}

// BatchSize is the most packets one Batch holds.
const BatchSize = prefetchBatch

// tuple is a packet's tuple in its own direction and the tuple's hash.
// The trackers that take one (trackTCP, trackUDP) branch on it where they
// use it: a helper that returned it by pointer, or the pair, cost 1-2 ns
// a packet on the unbatched path (the daemon's), not inlined
// (BenchmarkStatefulEstablished's loop, old and new code alternated in one
// process).
type tuple struct {
	k Key
	h uint64
}

// PrefetchBatch is Prefetch for at most BatchSize packets, keeping the
// tuples it computes in b for TrackBatchInto. Below the size at which
// Prefetch pays (PrefetchPays) it only computes them.
func (t *Table) PrefetchBatch(b *Batch, ps []packet.Packet) {
	ps = ps[:min(len(ps), BatchSize)]
	b.ps = ps
	for i := range ps {
		p := &ps[i]
		b.has[i] = p.Kind == packet.KindOK && !p.Frag.IsFragment
		if b.has[i] {
			tp := &b.tuples[i]
			packetKey(&tp.k, p)
			tp.h = t.hash.sum(&tp.k)
		}
	}
	if t.PrefetchPays() {
		t.prefetch(ps, b)
	}
}

// Packet returns the batch's packet i (of the slice PrefetchBatch got).
func (b *Batch) Packet(i int) *packet.Packet { return &b.ps[i] }

// TrackBatchInto is TrackInto for the batch's packet i, with the tuple
// PrefetchBatch computed for it.
func (t *Table) TrackBatchInto(r *Result, b *Batch, i int, now int64) {
	var pre *tuple
	if b.has[i] {
		pre = &b.tuples[i]
	}
	t.trackInto(r, &b.ps[i], pre, now)
}
