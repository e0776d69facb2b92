package engine

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/statewall/statewall/pkg/rules"
)

// Per-rule counters, as pf keeps them (pfctl -vsr) and nft's `counter`.
//
// What is counted, per rule:
//
//   - Packets and Bytes: the rule evaluations the rule decided, that is,
//     that stopped at it as the first rule to match (Decision.Rule, and
//     for a forwarded packet Decision.Other, the other evaluation's rule).
//     A forwarded packet that one rule passes both inbound and outbound
//     counts twice for it, once per evaluation, as in pf; when no rule says
//     in, out or on, both evaluations are one (see byRules) and it counts
//     once. Bytes are the whole IP packet, as the kernel handed it over.
//   - States: the connection-table entries made for packets the rule
//     passed (stateful mode, a keep-state pass of a new connection). Two
//     queues racing to make the entry for the same new connection may both
//     count it: at most one extra per such race.
//   - Evaluations: the rule evaluations that reached the rule, were the
//     rules scanned in file order: every evaluation that no earlier rule
//     decided. This is pf's count with its skip steps switched off, an
//     upper bound of what pfctl shows (pf does not count the rules its skip
//     steps jump over). Our index tests only a few rules per packet, so the
//     rules it really tests would be an artefact of its tree shape, and
//     counting them would cost a write per tested rule in pkg/rules;
//     instead, each worker counts the evaluations that no rule decided
//     (the default's, one counter), and a rule's evaluations are derived
//     when read: all evaluations (those plus every rule's packets) minus
//     the packets of the rules before it. That costs nothing for a packet
//     a rule decides and is exact under the definition above.
//
// Packets that connection tracking passed (established, related: Cause
// CauseState) reach no rule and are not counted per rule, unlike pf,
// which charges them to the rule that created the state. A connection
// remembers its rule only for rules with a tag (tags.go: `log (all)` and
// the tracking options, at most MaxTags), so doing pf's accounting for all
// rules would need a rule reference in every conntrack entry; doing it for
// tagged rules only would make the counts mean different things for
// different rules. The daemon's statewall_packets_total{reason="state"}
// counts them as a whole. Packets decided by `set default` (no rule),
// malformed packets and invalid ones count for no rule either.
//
// Cost: the packet path loads one pointer, checks that the decision's rule
// belongs to the counted ruleset (two compares), and adds to counters that
// only its worker writes: no allocation, no write to a cache line another
// worker writes. BenchmarkCount (AMD EPYC, 2 CPUs): 5.3 ns for a packet
// one rule decides (two atomic adds), 13 ns for a forwarded packet two
// rules pass with a state (six), 1.9 ns for a packet of a known
// connection, and 5.2 ns per packet with all workers counting at once.
//
// Reloads. Counters belong to a ruleset generation. SetRules makes a new
// generation in which the rules that did not change (the same canonical
// text, the k-th of equal rules as before; an antispoof rule by its
// statement, whose addresses Bind may change) keep their totals; changed
// and new rules start at 0. Call SetRules before the engines get the new
// ruleset: packets decided with the previous ruleset still land in the
// previous generation, which stays readable (and is added in) until the
// next SetRules. Only a packet decided with a ruleset two SetRules old
// when it is counted is lost, and counted in Lost: a worker would have to
// stall between deciding and counting one packet across two swaps, so at
// most one packet per worker per swap.

// RuleCount is one rule's counters.
type RuleCount struct {
	Evaluations uint64 `json:"evaluations"`
	Packets     uint64 `json:"packets"`
	Bytes       uint64 `json:"bytes"`
	States      uint64 `json:"states"`
}

func (c *RuleCount) add(o RuleCount) {
	c.Evaluations += o.Evaluations
	c.Packets += o.Packets
	c.Bytes += o.Bytes
	c.States += o.States
}

// cell is one rule's counters in one worker's lane. Only that worker
// writes them; readers load them atomically.
type cell struct{ packets, bytes, states atomic.Uint64 }

// cellPad is how many cells pad a lane's cells at each end (72 bytes), so
// that two lanes' allocations never share a cache line.
const cellPad = 3

// lane is one worker's counters in a generation. Lanes are 128 bytes
// apart and their hot words within the first 40, so no two workers'
// hot words share a 64-byte line whatever the slice's alignment.
type lane struct {
	// nomatch counts the rule evaluations this worker made that no rule
	// decided (the default did); with the rules' packets, all it made.
	nomatch atomic.Uint64
	lost    atomic.Uint64 // counts of rules no generation held any more
	cells   []cell        // by rule index - 1 + cellPad
	_       [128 - 40]byte
}

// counterGen is one ruleset's counters.
type counterGen struct {
	rules       []rules.Rule   // rs.Rules: where the decisions' rules point
	directional bool           // rs.Directional()
	dflt        rules.Action   // rs.Default
	rs          *rules.Ruleset // for readers; replaced under Counters.mu
	lanes       []lane

	// Under Counters.mu (written by SetRules, read by Snapshot):
	//
	// base[i] is what rule i had before this generation, not counting
	// the previous generation's lanes, which are read live (prevIdx[i],
	// -1 for none) until the next SetRules folds them in.
	base    []RuleCount
	prevIdx []int
	keys    []string
	// retiring are the previous generation's rules that this one did
	// not keep: their live counts still go to the labels' retired totals.
	retiring []int
	prev     atomic.Pointer[counterGen]
}

// Counters counts packets, bytes, states and evaluations per rule, in
// lanes of per-worker counters. Count is safe for concurrent use by
// distinct workers (one goroutine per worker index); SetRules, Snapshot
// and ByLabel may be called from any goroutine.
type Counters struct {
	// cur is loaded for every packet: it sits apart from mu, which
	// readers write, so that a scrape does not take it from the workers'
	// caches.
	cur     atomic.Pointer[counterGen]
	_       [56]byte
	mu      sync.Mutex // serialises SetRules, Snapshot and ByLabel
	workers int
	// retired are the totals of rules that reloads dropped, by label, so
	// that the label totals never go back; lost, what the generations
	// that are gone lost. Under mu.
	retired map[string]RuleCount
	lost    uint64
}

// NewCounters returns counters for rs and workers workers (indexes 0 to
// workers-1).
func NewCounters(rs *rules.Ruleset, workers int) *Counters {
	if workers < 1 {
		workers = 1
	}
	c := &Counters{workers: workers, retired: map[string]RuleCount{}}
	c.SetRules(rs)
	return c
}

// consulted are the causes of decisions for which the rules were
// evaluated.
const consulted = 1<<CauseRule | 1<<CauseDefault | 1<<CauseUntracked | 1<<CauseLimit | 1<<CauseTableFull

// Count counts decision d of a packet of n bytes at direction dir (the
// rules.Where's: DirForward for a forwarded packet) for worker w. It does
// not allocate, and writes only w's lane.
func (c *Counters) Count(w int, d *Decision, dir rules.Dir, n int) {
	if consulted>>d.Cause&1 == 0 {
		return
	}
	g := c.cur.Load()
	if uint(w) >= uint(len(g.lanes)) {
		w = 0
	}
	r, o := d.Rule, d.Other
	if r != nil {
		if !g.holds(r) {
			if g = g.prev.Load(); g == nil || !g.holds(r) {
				c.cur.Load().lanes[w].lost.Add(1)
				return
			}
		}
	} else if o != nil && !g.holds(o) {
		if g = g.prev.Load(); g == nil || !g.holds(o) {
			c.cur.Load().lanes[w].lost.Add(1)
			return
		}
	}
	l := &g.lanes[w]
	// Evaluations: a forwarded packet is evaluated inbound, then, if that
	// passed and the rules are directional, outbound (byRules). A block
	// by a tracking option or a full table comes after both.
	evals := uint64(1)
	if dir == rules.DirForward && g.directional {
		inPassed := g.dflt == rules.Pass
		if r != nil {
			inPassed = r.Action == rules.Pass
		}
		if d.Dir == rules.DirOut || inPassed {
			evals = 2
		}
	}
	// The stateful engine commits an entry for a new connection that
	// the rules passed unless one of them says no state.
	created := d.Verdict == Pass && d.Tracked && (d.Cause == CauseRule || d.Cause == CauseDefault) &&
		(r == nil || !r.NoState) && (o == nil || !o.NoState)
	decided := uint64(0) // evaluations a rule decided
	if r != nil {
		x := &l.cells[r.Index-1+cellPad]
		x.packets.Add(1)
		x.bytes.Add(uint64(n))
		if created {
			x.states.Add(1)
		}
		decided++
	}
	if o != nil && evals == 2 && g.holds(o) {
		x := &l.cells[o.Index-1+cellPad]
		x.packets.Add(1)
		x.bytes.Add(uint64(n))
		if created && r != o {
			x.states.Add(1)
		}
		decided++
	}
	if evals > decided {
		l.nomatch.Add(evals - decided)
	}
}

// holds reports whether r is a rule of g's ruleset (not merely an equal
// one).
func (g *counterGen) holds(r *rules.Rule) bool {
	i := r.Index - 1
	return uint(i) < uint(len(g.rules)) && &g.rules[i] == r
}

// SetRules makes rs the counted ruleset: call it before the engines get
// rs. Rules that did not change keep their counts. Calls must not overlap
// with the engines' swaps in another order (the daemon makes both under
// its reload lock).
func (c *Counters) SetRules(rs *rules.Ruleset) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var rl []rules.Rule
	if rs != nil {
		rl = rs.Rules
	}
	old := c.cur.Load()
	if old != nil && len(rl) == len(old.rules) && (len(rl) == 0 || &rl[0] == &old.rules[0]) {
		// The same rules (Bind of a ruleset without antispoof shares
		// them): the same generation counts on.
		old.rs = rs
		return
	}
	g := &counterGen{rules: rl, rs: rs, lanes: make([]lane, c.workers)}
	if rs != nil {
		g.directional, g.dflt = rs.Directional(), rs.Default
	}
	for i := range g.lanes {
		g.lanes[i].cells = make([]cell, len(rl)+2*cellPad)
	}
	g.keys = ruleKeys(rl)
	g.base = make([]RuleCount, len(rl))
	g.prevIdx = make([]int, len(rl))
	for i := range g.prevIdx {
		g.prevIdx[i] = -1
	}
	if old != nil {
		c.fold(old, g)
	}
	c.cur.Store(g)
}

// fold carries old's counts into its successor g. Old's own lanes are
// read live through g.prev; old's predecessor, which no packet should
// count into any more, is folded into g.base and dropped. Precondition:
// c.mu is held.
func (c *Counters) fold(old, g *counterGen) {
	var prevLive []RuleCount
	pp := old.prev.Load()
	if pp != nil {
		prevLive = pp.live()
		for _, k := range old.retiring {
			c.retire(&pp.rules[k], prevLive[k])
		}
		c.lost += pp.lost()
	}
	fixed := make([]RuleCount, len(old.rules))
	for j := range old.rules {
		fixed[j] = old.base[j]
		if k := old.prevIdx[j]; k >= 0 && prevLive != nil {
			fixed[j].add(prevLive[k])
		}
	}
	byKey := make(map[string]int, len(old.keys))
	for j, k := range old.keys {
		byKey[k] = j
	}
	kept := make([]bool, len(old.rules))
	for i, k := range g.keys {
		if j, ok := byKey[k]; ok {
			g.base[i], g.prevIdx[i], kept[j] = fixed[j], j, true
		}
	}
	for j := range old.rules {
		if !kept[j] {
			c.retire(&old.rules[j], fixed[j])
			g.retiring = append(g.retiring, j)
		}
	}
	old.prev.Store(nil)
	g.prev.Store(old)
}

func (c *Counters) retire(r *rules.Rule, n RuleCount) {
	t := c.retired[r.Label]
	t.add(n)
	c.retired[r.Label] = t
}

// ruleKeys identifies rules across reloads: the canonical text, or for a
// rule an antispoof statement expanded into, the statement and the rule's
// place in its expansion (Bind changes the rule's addresses, not what it
// is); then "#k" for the k-th rule with that text.
func ruleKeys(rl []rules.Rule) []string {
	keys := make([]string, len(rl))
	seen := map[string]int{}
	var spoof *rules.Antispoof
	nth := 0
	for i := range rl {
		r := &rl[i]
		var s string
		if r.Antispoof != nil {
			if r.Antispoof != spoof {
				spoof, nth = r.Antispoof, 0
			}
			nth++
			s = r.Antispoof.String() + " @" + strconv.Itoa(nth)
		} else {
			s = r.String()
		}
		seen[s]++
		keys[i] = s + " #" + strconv.Itoa(seen[s])
	}
	return keys
}

// live sums g's lanes: what was counted in g itself. Evaluations are
// derived: all evaluations (those rules decided and those none did) minus
// those decided by earlier rules.
func (g *counterGen) live() []RuleCount {
	out := make([]RuleCount, len(g.rules))
	var evals uint64
	for w := range g.lanes {
		l := &g.lanes[w]
		evals += l.nomatch.Load()
		for i := range out {
			x := &l.cells[i+cellPad]
			out[i].Packets += x.packets.Load()
			out[i].Bytes += x.bytes.Load()
			out[i].States += x.states.Load()
		}
	}
	for i := range out {
		evals += out[i].Packets
	}
	for i := range out {
		out[i].Evaluations = evals
		evals -= out[i].Packets
	}
	return out
}

func (g *counterGen) lost() uint64 {
	var n uint64
	for w := range g.lanes {
		n += g.lanes[w].lost.Load()
	}
	return n
}

// Snapshot is what the counters hold at one moment.
type Snapshot struct {
	// Rules is the counted ruleset (nil before any) and Counts its rules'
	// counters, by rule index - 1.
	Rules  *rules.Ruleset
	Counts []RuleCount
	// Lost counts packets that were decided by a ruleset two reloads old
	// by the time they were counted (see Counters), so counted for no rule.
	Lost uint64
}

// Snapshot returns the current ruleset's counters.
func (c *Counters) Snapshot() Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.cur.Load()
	s := Snapshot{Rules: g.rs, Counts: c.totals(g), Lost: c.lost + g.lost()}
	if p := g.prev.Load(); p != nil {
		s.Lost += p.lost()
	}
	return s
}

// totals are g's rules' counts. Precondition: c.mu is held.
func (c *Counters) totals(g *counterGen) []RuleCount {
	out := g.live()
	var prev []RuleCount
	if p := g.prev.Load(); p != nil {
		prev = p.live()
	}
	for i := range out {
		out[i].add(g.base[i])
		if j := g.prevIdx[i]; j >= 0 && prev != nil {
			out[i].add(prev[j])
		}
	}
	return out
}

// ByLabel returns the counts summed by rule label (rules without one
// under ""), of every rule ever counted: the totals of rules that reloads
// dropped stay in, so a label's counts never go back (Evaluations are
// left out: their sum over rules means nothing).
func (c *Counters) ByLabel() map[string]RuleCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.cur.Load()
	out := make(map[string]RuleCount, len(c.retired)+1)
	for l, n := range c.retired {
		out[l] = n
	}
	add := func(r *rules.Rule, n RuleCount) {
		t := out[r.Label]
		t.add(n)
		out[r.Label] = t
	}
	for i, n := range c.totals(g) {
		add(&g.rules[i], n)
	}
	if p := g.prev.Load(); p != nil && len(g.retiring) > 0 {
		live := p.live()
		for _, k := range g.retiring {
			add(&p.rules[k], live[k])
		}
	}
	for l, n := range out {
		n.Evaluations = 0
		out[l] = n
	}
	return out
}
