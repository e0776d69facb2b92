package srctrack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultLimit is pf's default for `set limit src-nodes`.
const DefaultLimit = 10000

const (
	shardBits = 6
	numShards = 1 << shardBits

	// rateUnit is pf's PF_THRESHOLD_MULT: the connection-rate counter is
	// kept in thousandths of a connection so that its decay keeps
	// fractions without floating point.
	rateUnit = 1000

	// reapGap spaces the full sweeps that a limit hit triggers (see
	// Acquire): at most one per reapGap of the caller's time, so a flood
	// of refused packets at the limit costs one sweep, not one per packet.
	reapGap = int64(100 * time.Millisecond)
)

// ErrInvalidLimits is wrapped by SetLimits' error for limits it cannot
// enforce (a negative number, a rate without a period).
var ErrInvalidLimits = errors.New("srctrack: invalid limits")

// Config is the tracker's global setting. The zero value means pf's
// defaults: 10000 source nodes, src.track 0 (a node goes with its last
// state).
type Config struct {
	// Limit is `set limit src-nodes`: source nodes of all rules together.
	// 0 means DefaultLimit.
	Limit int
	// Timeout is `set timeout src.track`: how long a source node stays
	// after its last state went, keeping its connection-rate history and
	// its place under max-src-nodes.
	Timeout time.Duration
}

// Limits are one rule's stateful tracking options (pf.conf(5) "STATEFUL
// TRACKING OPTIONS"). A zero field means no limit.
type Limits struct {
	Max          int // max: states of the rule at once
	MaxSrcNodes  int // max-src-nodes: distinct sources with states (or lingering nodes) at once
	MaxSrcStates int // max-src-states: states per source
	MaxSrcConn   int // max-src-conn: handshake-completed TCP connections per source at once
	// ConnRate/ConnRatePer is max-src-conn-rate N/S: handshake-completed
	// TCP connections per source per period, as pf's moving average (see
	// the package comment).
	ConnRate    int
	ConnRatePer time.Duration
	// Overload is set when the rule has `overload <table>`. The tracker
	// adds nothing to any table; it counts Stats.Overloads so that the
	// numbers agree with pf's "overload table insertion" counter.
	Overload bool
	// SourceTrack is `source-track rule` without per-source limits: keep
	// source nodes (for listing) anyway. Any per-source limit implies it.
	SourceTrack bool
	// SrcTrack is the rule's own `src.track` timeout; 0 means
	// Config.Timeout, as in pf.
	SrcTrack time.Duration
}

// tracksSources reports whether states of the rule need a source node.
// `max` alone does not: pf counts it on the rule.
func (l Limits) tracksSources() bool {
	return l.SourceTrack || l.MaxSrcNodes > 0 || l.MaxSrcStates > 0 ||
		l.MaxSrcConn > 0 || l.ConnRate > 0
}

func (l Limits) validate() error {
	switch {
	case l.Max < 0, l.MaxSrcNodes < 0, l.MaxSrcStates < 0, l.MaxSrcConn < 0,
		l.ConnRate < 0, l.ConnRatePer < 0, l.SrcTrack < 0:
		return fmt.Errorf("%w: negative value in %+v", ErrInvalidLimits, l)
	case l.ConnRate > 0 && l.ConnRatePer <= 0:
		return fmt.Errorf("%w: max-src-conn-rate %d without a period", ErrInvalidLimits, l.ConnRate)
	case l.ConnRate == 0 && l.ConnRatePer != 0:
		return fmt.Errorf("%w: max-src-conn-rate period %v without a count", ErrInvalidLimits, l.ConnRatePer)
	}
	return nil
}

// Refusal says why Acquire refused a state. None is the zero value.
type Refusal uint8

// The refusals, in the order Acquire checks them (pf's order).
const (
	None          Refusal = iota
	Max                   // the rule's `max` states
	MaxSrcNodes           // the rule's `max-src-nodes`
	MaxSrcStates          // the rule's `max-src-states` for this source
	SrcNodesLimit         // `set limit src-nodes`: no node left
	numRefusals
)

// String is written by hand (not stringer) so that the names are pf.conf's
// own words.
func (r Refusal) String() string {
	switch r {
	case None:
		return "none"
	case Max:
		return "max"
	case MaxSrcNodes:
		return "max-src-nodes"
	case MaxSrcStates:
		return "max-src-states"
	case SrcNodesLimit:
		return "src-nodes-limit"
	}
	return fmt.Sprintf("Refusal(%d)", uint8(r))
}

// Exceeded is what Established found over a limit: a set of bits, 0 when
// nothing was. When it is not 0, pf kills the state whose handshake just
// completed (and drops the packet that completed it), adds the source to
// the overload table if the rule has one, and flushes as the rule says;
// the caller does all of that.
type Exceeded uint8

// The limits Established checks.
const (
	ExceededConn Exceeded = 1 << iota // max-src-conn
	ExceededRate                      // max-src-conn-rate
)

func (e Exceeded) String() string {
	switch e {
	case 0:
		return "none"
	case ExceededConn:
		return "max-src-conn"
	case ExceededRate:
		return "max-src-conn-rate"
	case ExceededConn | ExceededRate:
		return "max-src-conn,max-src-conn-rate"
	}
	return fmt.Sprintf("Exceeded(%#x)", uint8(e))
}

// rules is a tag's Limits in the units the hot path wants. It is replaced
// whole (atomic pointer), never changed in place.
type rules struct {
	Limits
	tracks    bool
	forgotten bool
	rateLimit uint64 // ConnRate in thousandths
	per       int64  // ConnRatePer in ns
	timeout   int64  // src.track in ns: the rule's, else Config.Timeout
}

var noRules rules

// tagState is one rule's counters. Padded to its own cache lines: the
// counters of two busy rules must not share one.
type tagState struct {
	rules atomic.Pointer[rules]
	// states counts the rule's states for `max`, nodes its source nodes
	// for `max-src-nodes`. Both change by compare-and-swap against the
	// limit, so they never pass it, even for a moment.
	states atomic.Int64
	nodes  atomic.Int64
	// everTracked is set by the first SetLimits that tracks sources and
	// never cleared: Release looks for a node whenever it is set, so that
	// limits changed (or forgotten) under live states cannot strand a
	// node.
	everTracked atomic.Bool
	_           [64 - 8 - 8 - 8 - 4]byte
}

func (ts *tagState) load() *rules {
	if r := ts.rules.Load(); r != nil {
		return r
	}
	return &noRules
}

// nodeKey names a source node: pf keys them by rule and address. The
// family byte keeps 1.2.3.4 apart from ::ffff:1.2.3.4. Comparable,
// pointer-free, 18 bytes, no padding.
type nodeKey struct {
	addr [16]byte
	tag  uint8
	fam  uint8 // 4, 6, or 0 for the invalid Addr
}

func makeKey(tag uint8, a netip.Addr) nodeKey {
	k := nodeKey{addr: a.As16(), tag: tag}
	switch {
	case a.Is4():
		k.fam = 4
	case a.Is6():
		k.fam = 6
	default:
		k.addr = [16]byte{}
	}
	return k
}

func (k nodeKey) netip() netip.Addr {
	switch k.fam {
	case 4:
		return netip.AddrFrom16(k.addr).Unmap()
	case 6:
		return netip.AddrFrom16(k.addr)
	}
	return netip.Addr{}
}

// node is pf's struct pf_src_node, reduced to what the limits need. Kept
// by value in the shard's map: no pointer per node for the collector, no
// node pool to manage, and a map keeps its slots after a delete, so a
// source that comes and goes allocates nothing (TestNoAllocs).
type node struct {
	created   int64
	expire    int64  // when it goes; meaningful only while states == 0
	rateLast  int64  // time of the last connection counted in rateCount
	rateCount uint64 // moving connection count, in thousandths
	states    int32
	conns     int32
}

// addRate is pf_add_threshold with nanoseconds instead of seconds: the
// count decays linearly with the time since the last connection (all of
// it after a full period), then counts this one. A now before rateLast
// (callers on other goroutines pass their own clocks) counts as no time.
func (n *node) addRate(now, per int64) {
	n.rateCount = decay(n.rateCount, n.rateLast, now, per) + rateUnit
	if now > n.rateLast {
		n.rateLast = now
	}
}

func decay(count uint64, last, now, per int64) uint64 {
	d := now - last
	switch {
	case per <= 0 || d >= per:
		return 0
	case d <= 0:
		return count
	}
	// count*d/per in 128 bits: count*d overflows 64 bits for a 100 s
	// period in nanoseconds after a few hundred connections. hi < per
	// because d < per, so Div64 cannot panic.
	hi, lo := bits.Mul64(count, uint64(d))
	q, _ := bits.Div64(hi, lo, uint64(per))
	return count - q
}

// shard holds the nodes whose key hashes to it. Padded so that two
// shards' locks never share a cache line.
type shard struct {
	mu    sync.Mutex
	nodes map[nodeKey]node
	_     [64 - 8 - 8]byte
}

type counters struct {
	refused    [numRefusals]atomic.Uint64
	inserted   atomic.Uint64
	expired    atomic.Uint64
	connLimit  atomic.Uint64
	rateLimit  atomic.Uint64
	overloads  atomic.Uint64
	mismatches atomic.Uint64
}

// Tracker keeps pf's source nodes and per-rule counts. It is safe for
// concurrent use by several goroutines; see the package comment for the
// locks.
type Tracker struct {
	seed     uint64
	limit    int64
	timeout  int64
	nodes    atomic.Int64 // all nodes, for Config.Limit
	nextReap atomic.Int64 // caller time before which a limit hit does not sweep
	stats    counters
	tags     [256]tagState
	shards   [numShards]shard
}

// New returns an empty Tracker. Each shard's map is sized for its share of
// Config.Limit up front, so that the map does not grow (and allocate) while
// the nodes stay within the limit and spread evenly.
func New(cfg Config) *Tracker {
	if cfg.Limit <= 0 {
		cfg.Limit = DefaultLimit
	}
	t := &Tracker{
		// The seed keeps the spread of sources over shards unknown to the
		// senders, so that they cannot pile into one shard's lock.
		seed:    rand.Uint64(),
		limit:   int64(cfg.Limit),
		timeout: max(int64(cfg.Timeout), 0),
	}
	hint := cfg.Limit/numShards + cfg.Limit/numShards/4 + 1
	for i := range t.shards {
		t.shards[i].nodes = make(map[nodeKey]node, hint)
	}
	return t
}

// SetLimits sets the limits of the rule with this tag, at load or reload.
// The tag's live counts stay: a reloaded rule keeps its states and source
// nodes. It also undoes Forget. Tag 0 is not a rule: SetLimits(0, ...)
// does nothing.
func (t *Tracker) SetLimits(tag uint8, l Limits) error {
	if err := l.validate(); err != nil {
		return err
	}
	if tag == 0 {
		return nil
	}
	r := &rules{
		Limits:    l,
		tracks:    l.tracksSources(),
		rateLimit: uint64(l.ConnRate) * rateUnit,
		per:       int64(l.ConnRatePer),
		timeout:   int64(l.SrcTrack),
	}
	if r.timeout == 0 {
		r.timeout = t.timeout
	}
	ts := &t.tags[tag]
	if r.tracks {
		ts.everTracked.Store(true)
	}
	ts.rules.Store(r)
	return nil
}

// Forget is for a rule that went away. Its limits stay for its remaining
// states (they are still checked by Established), its idle nodes go now
// and the others go with their last state, without waiting for src.track:
// no new state can come to revive them. RuleInfo.States and Nodes reach 0
// when the tag is free to be given to another rule.
func (t *Tracker) Forget(tag uint8) {
	if tag == 0 {
		return
	}
	ts := &t.tags[tag]
	old := ts.load()
	r := *old
	r.forgotten = true
	ts.rules.Store(&r)
	t.sweep(func(k nodeKey, n *node) bool { return k.tag == tag && n.states == 0 })
}

func (t *Tracker) shardOf(k *nodeKey) *shard {
	h := t.seed ^ uint64(k.tag)<<8 ^ uint64(k.fam)
	h = mix(h ^ binary.LittleEndian.Uint64(k.addr[:8]))
	h = mix(h ^ binary.LittleEndian.Uint64(k.addr[8:]))
	return &t.shards[h>>(64-shardBits)]
}

// mix is splitmix64's finalizer.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// reserve adds one to c unless that would pass limit (0: no limit).
func reserve(c *atomic.Int64, limit int64) bool {
	if limit <= 0 {
		c.Add(1)
		return true
	}
	for {
		v := c.Load()
		if v >= limit {
			return false
		}
		if c.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// unreserve takes one from c unless it is 0; false means it was 0 (a
// release without its acquire).
func unreserve(c *atomic.Int64) bool {
	for {
		v := c.Load()
		if v <= 0 {
			return false
		}
		if c.CompareAndSwap(v, v-1) {
			return true
		}
	}
}

// Acquire is called before a state of the rule tagged tag, from src, is
// committed. It checks, in pf's order, max, max-src-nodes, max-src-states
// and the global src-nodes limit, and on ok counts the state; a caller
// whose commit then fails calls Release(tag, src, false, now). Tag 0 is
// no rule: always ok, nothing counted.
//
// Allocation: none, except when a new source makes its shard's map grow
// past the size New gave it (TestNoAllocs).
func (t *Tracker) Acquire(tag uint8, src netip.Addr, now int64) (ok bool, why Refusal) {
	if tag == 0 {
		return true, None
	}
	ts := &t.tags[tag]
	r := ts.load()
	if !reserve(&ts.states, int64(r.Max)) {
		t.stats.refused[Max].Add(1)
		return false, Max
	}
	if !r.tracks {
		return true, None
	}
	k := makeKey(tag, src)
	sh := t.shardOf(&k)
	why = t.acquireNode(sh, ts, r, &k, now)
	if (why == MaxSrcNodes || why == SrcNodesLimit) && t.reapDue(now) {
		// The room may be held by nodes whose src.track ran out in shards
		// nobody has touched since. Sweep them (no shard lock is held
		// here) and try once more.
		t.Expire(now)
		why = t.acquireNode(sh, ts, r, &k, now)
	}
	if why != None {
		unreserve(&ts.states)
		t.stats.refused[why].Add(1)
		return false, why
	}
	return true, None
}

// acquireNode finds or makes k's node and counts a state on it.
func (t *Tracker) acquireNode(sh *shard, ts *tagState, r *rules, k *nodeKey, now int64) Refusal {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	n, found := sh.nodes[*k]
	switch {
	case found && n.states == 0 && now >= n.expire:
		// Idle past src.track and not yet swept: pf would have removed it
		// and would now insert a fresh one in the place it freed.
		n = node{created: now}
		t.stats.expired.Add(1)
		t.stats.inserted.Add(1)
	case found:
		if r.MaxSrcStates > 0 && int(n.states) >= r.MaxSrcStates {
			return MaxSrcStates
		}
	default:
		if !reserve(&ts.nodes, int64(r.MaxSrcNodes)) {
			return MaxSrcNodes
		}
		if !reserve(&t.nodes, t.limit) {
			unreserve(&ts.nodes)
			return SrcNodesLimit
		}
		n = node{created: now}
		t.stats.inserted.Add(1)
	}
	n.states++
	n.expire = 0
	sh.nodes[*k] = n
	return None
}

func (t *Tracker) reapDue(now int64) bool {
	for {
		next := t.nextReap.Load()
		if now < next {
			return false
		}
		if t.nextReap.CompareAndSwap(next, now+reapGap) {
			return true
		}
	}
}

// Release is called when a state counted by Acquire went away: expired,
// evicted, killed, or never committed. established says whether it had
// completed the TCP handshake, that is whether Established was called for
// it. It never blocks on anything but one shard lock and never calls out,
// so conntrack may call it with its own locks held.
func (t *Tracker) Release(tag uint8, src netip.Addr, established bool, now int64) {
	if tag == 0 {
		return
	}
	ts := &t.tags[tag]
	if !unreserve(&ts.states) {
		t.stats.mismatches.Add(1)
	}
	if !ts.everTracked.Load() {
		return
	}
	r := ts.load()
	k := makeKey(tag, src)
	sh := t.shardOf(&k)
	sh.mu.Lock()
	n, found := sh.nodes[k]
	if !found || n.states == 0 {
		sh.mu.Unlock()
		if r.tracks {
			t.stats.mismatches.Add(1)
		}
		return
	}
	n.states--
	if established {
		if n.conns > 0 {
			n.conns--
		} else {
			t.stats.mismatches.Add(1)
		}
	}
	if n.states == 0 {
		if r.forgotten || r.timeout <= 0 {
			delete(sh.nodes, k)
			unreserve(&ts.nodes)
			unreserve(&t.nodes)
			sh.mu.Unlock()
			t.stats.expired.Add(1)
			return
		}
		n.expire = now + r.timeout
	}
	sh.nodes[k] = n
	sh.mu.Unlock()
}

// Established is called when a TCP connection of the rule tagged tag, from
// src, completed its handshake (pf_src_connlimit). It counts the connection
// for max-src-conn and max-src-conn-rate and reports which of them it now
// exceeds; the count stays even then, as in pf: the caller kills the
// state, and its Release(..., true, ...) takes the connection back off.
func (t *Tracker) Established(tag uint8, src netip.Addr, now int64) Exceeded {
	if tag == 0 {
		return 0
	}
	ts := &t.tags[tag]
	if !ts.everTracked.Load() {
		return 0
	}
	r := ts.load()
	k := makeKey(tag, src)
	sh := t.shardOf(&k)
	sh.mu.Lock()
	n, found := sh.nodes[k]
	if !found || n.states == 0 {
		sh.mu.Unlock()
		if r.tracks {
			t.stats.mismatches.Add(1)
		}
		return 0
	}
	n.conns++
	if r.per > 0 {
		n.addRate(now, r.per)
	}
	var ex Exceeded
	if r.MaxSrcConn > 0 && int(n.conns) > r.MaxSrcConn {
		ex |= ExceededConn
	}
	if r.rateLimit > 0 && n.rateCount > r.rateLimit {
		ex |= ExceededRate
	}
	sh.nodes[k] = n
	sh.mu.Unlock()
	if ex != 0 {
		if ex&ExceededConn != 0 {
			t.stats.connLimit.Add(1)
		}
		if ex&ExceededRate != 0 {
			t.stats.rateLimit.Add(1)
		}
		if r.Overload {
			t.stats.overloads.Add(1)
		}
	}
	return ex
}

// Expire removes the nodes whose src.track ran out by now and returns how
// many it removed. The daemon calls it from a timer; nodes also go as the
// tracker meets them (see the package comment).
func (t *Tracker) Expire(now int64) int {
	return t.sweep(func(_ nodeKey, n *node) bool { return n.states == 0 && now >= n.expire })
}

// sweep deletes the nodes for which gone says so, one shard lock at a time.
func (t *Tracker) sweep(gone func(nodeKey, *node) bool) int {
	removed := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for k, n := range sh.nodes {
			if gone(k, &n) {
				delete(sh.nodes, k)
				unreserve(&t.tags[k.tag].nodes)
				unreserve(&t.nodes)
				removed++
			}
		}
		sh.mu.Unlock()
	}
	t.stats.expired.Add(uint64(removed))
	return removed
}

// SourceInfo is one source node, as pfctl -sS shows it.
type SourceInfo struct {
	Tag    uint8
	Addr   netip.Addr
	States int
	Conns  int // handshake-completed TCP connections now
	// Rate is the moving connection count at the time Sources was given
	// (pf's "rate 1.5/10s" is Rate 1.5, RatePer 10s); RatePer is 0 for a
	// rule without max-src-conn-rate.
	Rate    float64
	RatePer time.Duration
	Created int64
	Expires int64 // when the node goes; 0 while it has states
}

type entry struct {
	k nodeKey
	n node
}

// Sources calls fn for each live source node until fn returns false.
// Nodes past their src.track time that no one swept yet are left out.
// Each shard is copied under its lock and fn is called after the lock is
// released, so fn may call the Tracker. It allocates; it is for listing,
// not for the packet path.
func (t *Tracker) Sources(now int64, fn func(SourceInfo) bool) {
	var buf []entry
	for i := range t.shards {
		sh := &t.shards[i]
		buf = buf[:0]
		sh.mu.Lock()
		for k, n := range sh.nodes {
			buf = append(buf, entry{k, n})
		}
		sh.mu.Unlock()
		for _, e := range buf {
			if e.n.states == 0 && now >= e.n.expire {
				continue
			}
			r := t.tags[e.k.tag].load()
			si := SourceInfo{
				Tag:     e.k.tag,
				Addr:    e.k.netip(),
				States:  int(e.n.states),
				Conns:   int(e.n.conns),
				Created: e.n.created,
			}
			if r.per > 0 {
				si.RatePer = time.Duration(r.per)
				si.Rate = float64(decay(e.n.rateCount, e.n.rateLast, now, r.per)) / rateUnit
			}
			if e.n.states == 0 {
				si.Expires = e.n.expire
			}
			if !fn(si) {
				return
			}
		}
	}
}

// RuleInfo is one rule's counts.
type RuleInfo struct {
	Limits    Limits
	States    int // states counted against max
	Nodes     int // source nodes, idle ones awaiting src.track included
	Forgotten bool
}

// Rule reports the counts of the rule tagged tag.
func (t *Tracker) Rule(tag uint8) RuleInfo {
	ts := &t.tags[tag]
	r := ts.load()
	return RuleInfo{
		Limits:    r.Limits,
		States:    int(ts.states.Load()),
		Nodes:     int(ts.nodes.Load()),
		Forgotten: r.forgotten,
	}
}

// Stats are the tracker's counters, named after pf's where pf has one.
type Stats struct {
	Nodes    int    // source nodes now, idle ones awaiting src.track included
	Inserted uint64 // nodes made (pf "src-node inserts")
	Expired  uint64 // nodes removed (pf "src-node removals")
	// Refused counts Acquire's refusals by reason (Refused[None] is 0):
	// pf's "maximum states" (max), "source nodes" limit counter
	// (max-src-nodes), "src-limit" (max-src-states), and the src-nodes
	// pool limit.
	Refused       [numRefusals]uint64
	ConnLimit     uint64 // Established over max-src-conn (pf "max-src-conn")
	ConnRateLimit uint64 // Established over max-src-conn-rate (pf "max-src-conn-rate")
	Overloads     uint64 // of those, on rules with an overload table (pf "overload table insertion")
	// Mismatches counts releases and handshakes the tracker had no count
	// for: a Release without its Acquire, established without
	// Established, or limits that began tracking sources under live
	// states. Always 0 when the caller keeps the contract.
	Mismatches uint64
}

// Stats returns the counters. Each is read atomically; together they are
// not one snapshot.
func (t *Tracker) Stats() Stats {
	s := Stats{
		Nodes:         int(t.nodes.Load()),
		Inserted:      t.stats.inserted.Load(),
		Expired:       t.stats.expired.Load(),
		ConnLimit:     t.stats.connLimit.Load(),
		ConnRateLimit: t.stats.rateLimit.Load(),
		Overloads:     t.stats.overloads.Load(),
		Mismatches:    t.stats.mismatches.Load(),
	}
	for i := range s.Refused {
		s.Refused[i] = t.stats.refused[i].Load()
	}
	return s
}
