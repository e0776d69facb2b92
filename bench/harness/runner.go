package harness

import (
	"github.com/statewall/statewall/bench/trafficgen"
	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/rules"
)

// The configurations every run measures, in report order. Each includes
// everything a packet goes through in that mode, from bytes in memory to a
// verdict:
//
//   - decode: packet.Decode alone (the floor under the other three);
//   - stateless: decode, direction from `set local`, the rules (Match);
//   - stateful: decode, direction, conntrack (Track) and, for a new
//     connection, the rules (MatchNew) and the entry's Commit;
//   - compare: decode once, then both engines and their comparison, as
//     `statewall replay --mode compare` does per packet.
//
// Every loop also counts its results (kinds, verdicts, labels), which is
// how the loop consumes them.
const (
	Decode    = "decode"
	Stateless = "stateless"
	Stateful  = "stateful"
	Compare   = "compare"
)

// Configurations lists them in report order.
var Configurations = []string{Decode, Stateless, Stateful, Compare}

// chunk is a run of packets every configuration processes in turn: a batch
// in one arena, played passes times with timestamps moved by tsOff, then
// tsOff+shift, ... (a capture loop; generated traffic plays once).
type chunk struct {
	b      *trafficgen.Batch
	links  []packet.LinkType // per packet; nil means all raw IP
	tsOff  int64
	passes int
	shift  int64
}

func (c *chunk) packets() int { return c.b.Len() * max(c.passes, 1) }

// counts are what a runner saw.
type counts struct {
	kinds   [8]uint64 // packet.Kind
	verdict [2]uint64 // engine.Verdict (compare: the stateful one)
	labels  [5]uint64 // conntrack.Label of tracked packets
	differ  uint64    // compare: packets whose two verdicts differ
}

// runner is one configuration with its own state: a stateful runner has
// its own connection table.
type runner struct {
	name string
	rs   *rules.Ruleset
	sl   *engine.Stateless
	sf   *engine.Stateful
	p    packet.Packet
	c    counts

	// batch: the stateful configurations decode this many packets ahead
	// and announce them to conntrack (Stateful.PrefetchBatch, into cb)
	// before deciding them one by one (DecideBatch), as replay does, so
	// that the connection table's cache misses overlap.
	batch [batchSize]packet.Packet
	cb    conntrack.Batch
}

// batchSize is how many packets the stateful runners decode ahead.
const batchSize = conntrack.BatchSize

func newRunner(name string, rs *rules.Ruleset, ct conntrack.Config) *runner {
	r := &runner{name: name, rs: rs}
	if name == Stateless || name == Compare {
		r.sl = engine.NewStateless(rs)
	}
	if name == Stateful || name == Compare {
		r.sf = engine.NewStatefulTable(rs, ct)
	}
	return r
}

// stateful reports whether the runner keeps connection state.
func (r *runner) stateful() bool { return r.sf != nil }

// run processes every packet of c.
func (r *runner) run(c *chunk) {
	for pass := range max(c.passes, 1) {
		off := c.tsOff + int64(pass)*c.shift
		switch r.name {
		case Decode:
			r.runDecode(c)
		case Stateless:
			r.runStateless(c)
		case Stateful:
			r.runStateful(c, off)
		case Compare:
			r.runCompare(c, off)
		}
	}
}

func link(c *chunk, i int) packet.LinkType {
	if c.links == nil {
		return packet.LinkIP
	}
	return c.links[i]
}

func (r *runner) runDecode(c *chunk) {
	p := &r.p
	for i := range c.b.Len() {
		p.Decode(c.b.At(i), link(c, i))
		r.c.kinds[p.Kind&7]++
	}
}

func (r *runner) runStateless(c *chunk) {
	p := &r.p
	for i := range c.b.Len() {
		p.Decode(c.b.At(i), link(c, i))
		var d engine.Decision
		r.sl.DecideInto(&d, p, r.rs.Direction(p.Src, p.Dst))
		r.c.verdict[d.Verdict&1]++
	}
}

// decodeBatch decodes packets i.. of c (at most batchSize) into r.batch,
// announces them to conntrack and returns how many it decoded.
func (r *runner) decodeBatch(c *chunk, i int) int {
	n := min(batchSize, c.b.Len()-i)
	for j := range n {
		r.batch[j].Decode(c.b.At(i+j), link(c, i+j))
	}
	r.sf.PrefetchBatch(&r.cb, r.batch[:n])
	return n
}

func (r *runner) runStateful(c *chunk, off int64) {
	for i := 0; i < c.b.Len(); {
		n := r.decodeBatch(c, i)
		for j := range n {
			p := &r.batch[j]
			var d engine.Decision
			r.sf.DecideBatch(&d, &r.cb, j, rules.Where{Dir: r.rs.Direction(p.Src, p.Dst)}, c.b.Time[i+j]+off)
			r.c.verdict[d.Verdict&1]++
			if d.Tracked {
				r.c.labels[d.CT.Label%5]++
			}
		}
		i += n
	}
}

func (r *runner) runCompare(c *chunk, off int64) {
	for i := 0; i < c.b.Len(); {
		n := r.decodeBatch(c, i)
		for j := range n {
			p := &r.batch[j]
			dir := r.rs.Direction(p.Src, p.Dst)
			var a engine.Decision
			r.sl.DecideInto(&a, p, dir)
			var b engine.Decision
			r.sf.DecideBatch(&b, &r.cb, j, rules.Where{Dir: dir}, c.b.Time[i+j]+off)
			r.c.verdict[b.Verdict&1]++
			if b.Tracked {
				r.c.labels[b.CT.Label%5]++
			}
			if engine.Compare(a, b) != engine.Agree {
				r.c.differ++
			}
		}
		i += n
	}
}

// step processes packet i of c (first pass only): the per-packet form of
// run, for Go benchmarks that count one packet as one op.
func (r *runner) step(c *chunk, i int) {
	p := &r.p
	p.Decode(c.b.At(i), link(c, i))
	switch r.name {
	case Decode:
		r.c.kinds[p.Kind&7]++
	case Stateless:
		var d engine.Decision
		r.sl.DecideInto(&d, p, r.rs.Direction(p.Src, p.Dst))
		r.c.verdict[d.Verdict&1]++
	case Stateful:
		var d engine.Decision
		r.sf.DecideInto(&d, p, r.rs.Direction(p.Src, p.Dst), c.b.Time[i]+c.tsOff)
		r.c.verdict[d.Verdict&1]++
	case Compare:
		dir := r.rs.Direction(p.Src, p.Dst)
		var a engine.Decision
		r.sl.DecideInto(&a, p, dir)
		var b engine.Decision
		r.sf.DecideInto(&b, p, dir, c.b.Time[i]+c.tsOff)
		if engine.Compare(a, b) != engine.Agree {
			r.c.differ++
		}
	}
}
