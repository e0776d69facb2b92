// Package conntrack is a connection-tracking table that labels packets the
// way the Linux kernel's conntrack does (nftables `ct state`): new,
// established, related, invalid or untracked. See
// docs/conntrack-reference.md for the behaviour it reproduces; the kernel's
// net/netfilter/nf_conntrack_*.c are the reference.
//
// One packet takes one shard lock: the table is split in shards, each with
// its own mutex, index and slab, and a connection's two tuples hash to the
// same shard. Time is passed in (nanoseconds of the caller's clock:
// capture timestamps in replay), so tests advance a clock instead of
// sleeping, and replays are deterministic. The TCP state machine is the
// pure package tcpstate.
//
// The table's clock never goes back. Every call takes the latest now the
// table has been given (clock): a caller whose time steps back (a capture
// merged from several hosts, a stepped wall clock) has its packets decided
// at the latest time seen instead. So whether an entry is alive depends
// only on its deadline and that clock, never on whether the incremental
// sweep happened to reap it: an entry reaped at time T is dead at every
// later time, and no earlier time is ever asked about again. The same
// holds at the limit: before a live entry is evicted early or a new
// connection is refused, every expired entry of the table is reaped
// (reapExpired), so the table is full only when its live entries fill it.
//
// Like the kernel, a connection's entry is created only when its first
// packet is accepted: Track labels the packet, the rules decide, and Commit
// stores the entry.
package conntrack

import (
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/statewall/statewall/pkg/conntrack/tcpstate"
	"github.com/statewall/statewall/pkg/packet"
)

// Label is the conntrack state of one packet (nftables `ct state`). The
// zero value is LabelNew.
type Label uint8

const (
	// LabelNew: the first packet of a connection, or an original-direction
	// packet of one that has not seen a reply yet.
	LabelNew Label = iota
	// LabelEstablished: a reply-direction packet, or an original-direction
	// packet once a reply was seen.
	LabelEstablished
	// LabelRelated: an ICMP or ICMPv6 error about a tracked connection.
	LabelRelated
	// LabelInvalid: no entry could be attached (see Result.Reason).
	LabelInvalid
	// LabelUntracked: not tracked at all (ICMPv6 neighbour discovery and
	// MLD, as in the kernel).
	LabelUntracked
)

var labelNames = [...]string{"new", "established", "related", "invalid", "untracked"}

// String returns the name nftables uses.
func (l Label) String() string {
	if int(l) < len(labelNames) {
		return labelNames[l]
	}
	return "label?"
}

// Reason says why a packet got its label. The zero value is ReasonNone.
type Reason uint8

const (
	ReasonNone Reason = iota
	// New.
	ReasonNewConn   // no entry: the packet can start a connection
	ReasonUnreplied // an entry, no reply seen yet
	ReasonReopen    // a SYN reopened a closed TCP connection
	ReasonTableFull // new, but the table is full and nothing could be evicted: Commit will refuse it
	// Established.
	ReasonReply     // reply direction
	ReasonSeenReply // original direction after a reply
	// Related.
	ReasonICMPError // an ICMP error about a tracked connection
	// Untracked.
	ReasonNDMLD // ICMPv6 neighbour discovery, MLD or multicast router discovery
	// Invalid.
	ReasonNotDecoded       // not a whole decoded IP packet (precondition of Track)
	ReasonShortHeader      // transport header cut short
	ReasonBadLength        // UDP length field beyond the packet or below 8; UDP-Lite coverage
	ReasonBadChecksum      // transport checksum wrong
	ReasonTCP              // the TCP state machine said no (see Result.ReasonString)
	ReasonICMPType         // ICMPv4 type above 18
	ReasonICMPFamily       // ICMP in IPv6 or ICMPv6 in IPv4
	ReasonReplyNoRequest   // an ICMP reply that matches no request
	ReasonICMPUnsolicited  // an informational ICMP type that cannot start a connection
	ReasonErrorNoQuote     // an ICMP error without a usable quoted packet
	ReasonErrorUnknownConn // an ICMP error for unknown connection
	ReasonErrorOuterDst    // an ICMP error whose outer destination is not the connection's endpoint
	ReasonSCTPChunks       // SCTP chunks that break the basic rules (bad length, INIT not alone)
	ReasonSCTPNoInit       // SCTP packet that cannot start an association (DATA, SACK, ...)
	ReasonNoNextHeader     // IPv6 "no next header" (59): no transport protocol to track
	ReasonSCTPVtag         // SCTP verification tag not the one the association expects
	ReasonSCTPState        // SCTP chunk the association's state does not allow
	ReasonGREProto         // enhanced GRE (version 1) that does not carry PPP
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonNone:             "",
	ReasonNewConn:          "new connection",
	ReasonUnreplied:        "no reply yet",
	ReasonReopen:           "reopened",
	ReasonTableFull:        "table full",
	ReasonReply:            "reply",
	ReasonSeenReply:        "seen reply",
	ReasonICMPError:        "ICMP error for tracked connection",
	ReasonNDMLD:            "neighbour discovery/MLD",
	ReasonNotDecoded:       "not decoded",
	ReasonShortHeader:      "short header",
	ReasonBadLength:        "bad length",
	ReasonBadChecksum:      "bad checksum",
	ReasonTCP:              "tcp",
	ReasonICMPType:         "invalid ICMP type",
	ReasonICMPFamily:       "ICMP of the other IP version",
	ReasonReplyNoRequest:   "ICMP reply without request",
	ReasonICMPUnsolicited:  "unsolicited ICMP message",
	ReasonErrorNoQuote:     "ICMP error without quoted packet",
	ReasonErrorUnknownConn: "ICMP error for unknown connection",
	ReasonErrorOuterDst:    "ICMP error not sent to the connection's endpoint",
	ReasonSCTPChunks:       "malformed SCTP chunks",
	ReasonSCTPNoInit:       "SCTP chunk cannot start an association",
	ReasonNoNextHeader:     "IPv6 no next header",
	ReasonSCTPVtag:         "wrong SCTP verification tag",
	ReasonSCTPState:        "SCTP chunk not allowed in this state",
	ReasonGREProto:         "enhanced GRE not carrying PPP",
}

// String returns a short text ("bad checksum").
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "reason?"
}

// Result is what Track makes of one packet. It is a small value (24
// bytes), copied freely; it holds no pointers. It does not carry the new
// connection's tuple or initial TCP state: Commit, which gets the same
// packet, computes them again, which costs less on the new-connection path
// than copying them on every packet's costs. The zero value is a LabelNew
// result that Commit ignores.
type Result struct {
	Label Label
	// Reply: the packet is in the reply direction of its entry (for
	// related packets: the quoted packet's connection, seen from the
	// error's direction, as the kernel's IP_CT_RELATED_REPLY).
	Reply  bool
	Reason Reason
	// Assured: this packet made its entry assured (for TCP: it completed
	// the three-way handshake), the first time.
	Assured bool
	// Mark is the caller's byte on the entry: for a packet of a known
	// connection (established, or related to it) the one stored when
	// the connection was committed; before Commit, the one to store.
	// Conntrack gives it no meaning (the engine marks connections whose
	// packets are all logged).
	Mark uint8

	// What Commit needs, computed once by Track.
	tcpReason tcpstate.Reason
	insert    bool  // Track missed and the packet may create the entry
	full      bool  // Track found the table full (and counted the refusal)
	flags     uint8 // initial entry flags (assured)
	hash      uint64
	timeout   time.Duration
}

// Summary is what a Result says about the packet, without what Commit
// needs: 5 bytes where a Result is 32, so decisions that carry it stay
// cheap to copy.
type Summary struct {
	Label     Label
	Reply     bool
	Reason    Reason
	tcpReason tcpstate.Reason
	Mark      uint8 // Result.Mark
}

// Pending reports whether r's packet still wants an entry: Track found
// none and the packet may create one, and no Commit has stored it yet (a
// Commit that found the entry made by a concurrent packet leaves it
// pending).
func (r *Result) Pending() bool { return r.insert }

// Summary returns what r says about the packet.
func (r *Result) Summary() Summary {
	return Summary{Label: r.Label, Reply: r.Reply, Reason: r.Reason, tcpReason: r.tcpReason, Mark: r.Mark}
}

// ReasonString is the reason as text; when the TCP state machine decided,
// its own reason ("SYN+FIN").
func (s Summary) ReasonString() string {
	if s.Reason == ReasonTCP && s.tcpReason != 0 {
		return s.tcpReason.String()
	}
	return s.Reason.String()
}

// ReasonString is the reason as text; when the TCP state machine decided,
// its own reason ("SYN+FIN").
func (r Result) ReasonString() string {
	if r.Reason == ReasonTCP && r.tcpReason != 0 {
		return r.tcpReason.String()
	}
	return r.Reason.String()
}

// Config configures a Table. The zero value means the kernel's defaults.
type Config struct {
	// Timeouts; zero fields mean the kernel's defaults.
	Timeouts Timeouts
	// Limit is the maximum number of entries (nf_conntrack_max); 0 means
	// 262144.
	Limit int
	// Shards is the number of independently locked parts, rounded up to a
	// power of two. 0 means 64, fewer for a Limit under 4096 (so that a
	// full shard holds at least 64 entries for early drop to choose from),
	// more for a Limit over 2^28. More shards mean less lock contention.
	Shards int
	// Seed seeds the hash; 0 picks a random seed. Fix it only for
	// reproducible tests: a known seed lets an attacker aim connections at
	// one slot.
	Seed uint64
	// NoChecksum skips the transport checksum checks (the kernel's
	// nf_conntrack_checksum=0). By default, as in the kernel, a bad TCP,
	// UDP or ICMP checksum makes a packet invalid. Captures made on the
	// sending host carry unfinished checksums (offload), which the kernel
	// never checks on its output path; replay them with NoChecksum
	// (statewall replay --no-checksum).
	NoChecksum bool
	// OnRemove, if set, is called for every entry with a mark (Result.Mark
	// at Commit) when it leaves the table, however it leaves: expired,
	// evicted, reopened, deleted. k is its original tuple; assured says
	// whether it was assured (for TCP: it completed its handshake). It is
	// called with the entry's shard locked: it must not call the table,
	// and should be quick.
	OnRemove func(k *Key, mark uint8, assured bool)
}

// DefaultLimit is the entry limit when Config.Limit is 0.
const DefaultLimit = 262144

// Table is the connection-tracking table. It is safe for concurrent use:
// a packet locks the one shard its connection lives in (see shard for the
// lock order: one lock at a time), everything else is immutable after New
// or atomic. Its zero value is not usable: call New.
type Table struct {
	hash     hasher
	shards   []shard
	mask     uint64
	limit    int64
	checksum bool
	to       Timeouts

	// count is written by every insertion and deletion, from every core;
	// the padding keeps it off the cache lines the packet path reads.
	_     [64]byte
	count atomic.Int64 // entries, expired ones included until reaped
	_     [56]byte

	// latest is the table's clock: the latest now it was given. Read by
	// every packet, written when time advances (once per packet in
	// replay, once per clock tick in the daemon).
	latest atomic.Int64
	// soonest is a lower bound of every entry's deadline (math.MaxInt64
	// when there is none): while now < soonest, no entry has expired,
	// and reapExpired has nothing to do. Lowered by a shard whose own
	// bound goes below it, recomputed by reapExpired.
	soonest atomic.Int64
	_       [48]byte

	// events are the subscriptions to the table's events (events.go).
	events eventHub
}

// New returns an empty table.
func New(cfg Config) *Table {
	limit := cfg.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	n := cfg.Shards
	if n <= 0 {
		// Early drop only looks inside the new connection's shard: give
		// each at least 64 entries of a full table to choose from, so a
		// small limit does not refuse connections while another shard
		// holds unassured ones.
		n = 64
		for n > 1 && n*64 > limit {
			n /= 2
		}
	}
	// Keep every shard far from the 2^24 entries a slot can address, even
	// with a skewed spread: at most 2^22 entries per shard on average.
	for n < limit>>22 {
		n *= 2
	}
	shards := 1
	for shards < n {
		shards *= 2
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t := &Table{
		hash:     newHasher(seed),
		shards:   make([]shard, shards),
		mask:     uint64(shards - 1),
		limit:    int64(limit),
		checksum: !cfg.NoChecksum,
		to:       cfg.Timeouts.WithDefaults(),
	}
	t.latest.Store(math.MinInt64)
	t.soonest.Store(math.MaxInt64)
	t.events.clock = &t.latest
	for i := range t.shards {
		s := &t.shards[i]
		s.hash = &t.hash
		s.count = &t.count
		s.tableSoonest = &t.soonest
		s.soonest.Store(math.MaxInt64)
		s.onRemove = cfg.OnRemove
		s.events = &t.events
		s.slabMax = uint32(min(limit, maxShardEntries))
	}
	return t
}

// clock advances the table's clock to now, if now is later, and returns
// the clock: the time every call decides at. It never goes back.
func (t *Table) clock(now int64) int64 {
	for {
		l := t.latest.Load()
		if now <= l {
			return l
		}
		if t.latest.CompareAndSwap(l, now) {
			return now
		}
	}
}

// Now returns the table's clock: the latest time it was given
// (math.MinInt64 before the first).
func (t *Table) Now() int64 { return t.latest.Load() }

// Len returns the number of entries, counting expired entries not yet
// reaped: Live counts only the live ones.
func (t *Table) Len() int { return int(t.count.Load()) }

// Live reaps the entries expired at now (or at the table's clock, if that
// is later) and returns the number of entries left: the live ones. What
// status and metrics show.
func (t *Table) Live(now int64) int {
	t.reapExpired(t.clock(now))
	return int(t.count.Load())
}

// Stats are the table's counters since New.
type Stats struct {
	Entries  uint64 `json:"entries"`  // entries now (Len)
	Inserted uint64 `json:"inserted"` // entries created by Commit
	Evicted  uint64 `json:"evicted"`  // unassured entries dropped to make room (the kernel's early_drop)
	Refused  uint64 `json:"refused"`  // new connections dropped because the table was full
	Expired  uint64 `json:"expired"`  // entries reaped after their timeout
	Deleted  uint64 `json:"deleted"`  // entries ended by the protocol (TCP RST, reopen)
	Invalid  uint64 `json:"invalid"`  // packets labelled invalid
	Clash    uint64 `json:"clash"`    // Commits that found their entry already made by a concurrent packet
	Restored uint64 `json:"restored"` // entries loaded from a state file (Load)
	// Liberal counts TCP packets accepted although out of window, because
	// their entry was restored or picked up mid-stream (liberal tracking).
	Liberal uint64 `json:"liberal"`
	// State sync: records from peers that made a new entry (PeerInstalled),
	// moved one forward (PeerMerged), changed nothing (PeerStale), or
	// found the table full (PeerFull); entries deleted on a peer's word
	// (PeerDeleted); TCP entries installed from a peer whose first packet
	// here came (TakenOver: their windows are learnt again from the
	// packets, see sync.go) and that left liberal tracking, a packet
	// having been seen each way (PickedUp).
	PeerInstalled uint64 `json:"peer_installed"`
	PeerMerged    uint64 `json:"peer_merged"`
	PeerStale     uint64 `json:"peer_stale"`
	PeerFull      uint64 `json:"peer_full"`
	PeerDeleted   uint64 `json:"peer_deleted"`
	TakenOver     uint64 `json:"taken_over"`
	PickedUp      uint64 `json:"picked_up"`
}

// Stats returns the counters. It takes no lock; each counter is exact, the
// set is not a single snapshot. Entries counts expired entries not yet
// reaped: call Live (or Sweep) first for the live count.
func (t *Table) Stats() Stats {
	st := Stats{Entries: uint64(max(t.count.Load(), 0))}
	for i := range t.shards {
		c := &t.shards[i].st
		st.Inserted += c.inserted.Load()
		st.Evicted += c.evicted.Load()
		st.Refused += c.refused.Load()
		st.Expired += c.expired.Load()
		st.Deleted += c.deleted.Load()
		st.Restored += c.restored.Load()
		st.Liberal += c.liberal.Load()
		st.Invalid += c.invalid.Load()
		st.Clash += c.clash.Load()
		st.PeerInstalled += c.installed.Load()
		st.PeerMerged += c.merged.Load()
		st.PeerStale += c.peerStale.Load()
		st.PeerFull += c.peerFull.Load()
		st.PeerDeleted += c.peerDeleted.Load()
		st.TakenOver += c.takenOver.Load()
		st.PickedUp += c.pickedUp.Load()
	}
	return st
}

// Sweep reaps every expired entry now (or at the table's clock, if that is
// later), one shard at a time, and returns how many. Track already reaps
// as it goes; Sweep is for a periodic timer in a daemon whose traffic may
// stop, and for tests.
func (t *Table) Sweep(now int64) int {
	return t.reapExpired(t.clock(now))
}

// reapExpired reaps every entry expired at now, in every shard whose
// deadline bound says it may hold one, and recomputes the bounds. Shards
// are locked one at a time: the caller holds no shard lock. It costs
// nothing while now is before every deadline, and one pass over the
// shards that hold an expired entry otherwise.
//
// The bounds are exact for one caller at a time; with concurrent packets
// a deadline lowered during the pass is caught by the second look below.
func (t *Table) reapExpired(now int64) int {
	if now < t.soonest.Load() {
		return 0
	}
	n := 0
	next := int64(math.MaxInt64)
	for i := range t.shards {
		s := &t.shards[i]
		if s.soonest.Load() <= now {
			s.mu.Lock()
			n += s.sweepAll(now)
			s.compact()
			s.mu.Unlock()
		}
		next = min(next, s.soonest.Load())
	}
	t.soonest.Store(next)
	// A shard that lowered its bound after the loop read it, and before
	// the store, compared itself with the old table bound: look again.
	for i := range t.shards {
		lowerBound(&t.soonest, t.shards[i].soonest.Load())
	}
	return n
}

// lowerBound lowers b to v, if v is lower.
func lowerBound(b *atomic.Int64, v int64) {
	for {
		cur := b.Load()
		if v >= cur || b.CompareAndSwap(cur, v) {
			return
		}
	}
}

func (t *Table) shard(h uint64) *shard { return &t.shards[h&t.mask] }

// invalid labels a packet invalid before any lookup. The counter goes to a
// shard picked from the ports, to spread an invalid flood over cache lines
// without hashing.
func (t *Table) invalid(r *Result, p *packet.Packet, why Reason) {
	t.shards[uint64(p.SrcPort^p.DstPort)&t.mask].st.invalid.Add(1)
	r.Label, r.Reason = LabelInvalid, why
}

// Track classifies p (decoded, Kind OK, not a fragment: the caller
// reassembles) at time now and updates the connection it belongs to. For a
// packet that could start a connection, Label is LabelNew and nothing is
// stored yet: Commit stores it once the rules accept the packet, as the
// kernel confirms an entry only when its first packet leaves the hooks.
//
// Track does not allocate.
func (t *Table) Track(p *packet.Packet, now int64) (r Result) {
	t.TrackInto(&r, p, now)
	return r
}

// TrackInto is Track storing its result in *r, for the per-packet path.
// Built whole and returned by value, a Result (more fields than the
// compiler keeps in registers) is assembled on the stack by byte stores
// and then copied by 16-byte loads, which the CPU cannot forward from
// those stores: a store-forwarding stall at every level it is returned
// through. The trackers below set the fields they mean in place, on *r
// zeroed here. Side by side (BenchmarkStatefulKnown, conns=1k) this and
// tcpstate.StepInto took a decision in the caches from 134 to 102 ns.
func (t *Table) TrackInto(r *Result, p *packet.Packet, now int64) {
	t.trackInto(r, p, nil, now)
}

// trackInto is TrackInto with p's tuple, if the caller has it (a Batch).
func (t *Table) trackInto(r *Result, p *packet.Packet, pre *tuple, now int64) {
	*r = Result{}
	now = t.clock(now)
	if p.Kind != packet.KindOK || p.Frag.IsFragment || (p.IPVersion != 4 && p.IPVersion != 6) {
		t.invalid(r, p, ReasonNotDecoded)
		return
	}
	switch p.Proto {
	case packet.ProtoTCP:
		t.trackTCP(r, p, pre, now)
	case packet.ProtoUDP:
		t.trackUDP(r, p, pre, now)
	case packet.ProtoUDPLite:
		t.trackUDPLite(r, p, pre, now)
	case packet.ProtoICMP:
		if p.IPVersion != 4 {
			t.invalid(r, p, ReasonICMPFamily)
			return
		}
		t.trackICMP(r, p, now)
	case packet.ProtoICMPv6:
		if p.IPVersion != 6 {
			t.invalid(r, p, ReasonICMPFamily)
			return
		}
		t.trackICMPv6(r, p, now)
	case packet.ProtoSCTP:
		t.trackSCTP(r, p, now)
	case packet.ProtoGRE:
		t.trackGRE(r, p, now)
	case packet.ProtoIPv6NoNext:
		if p.IPVersion == 6 {
			// The kernel's ipv6_skip_exthdr gives up at "no next
			// header" (an extension header to it), so get_l4proto
			// finds no protocol and the packet gets no entry: invalid.
			t.invalid(r, p, ReasonNoNextHeader)
			return
		}
		t.trackGeneric(r, p, now)
	default:
		t.trackGeneric(r, p, now)
	}
}

// checksumOK applies the kernel's nf_conntrack_checksum.
func (t *Table) checksumOK(p *packet.Packet) bool {
	return !t.checksum || p.L4ChecksumOK()
}

// hit is a found, live entry, with its shard locked. The tracker that got
// it ends with unlock, which also recounts the entry if the packet changed
// its kind; an entry removed meanwhile must be removed through the hit
// (remove), so that unlock does not look at it.
type hit struct {
	s   *shard
	e   *entry
	pos uint32
	dir uint8
	// The entry's kind at lookup is in s.hitKind, not here: a fifth
	// field made the hit, returned by value from lookup, cost 13 ns a
	// packet (BenchmarkTrackEstablished/udp/conns=1k, 51 -> 64 ns).
}

// recount moves the entry to its kind's count if the packet changed its
// kind since the lookup.
func (h *hit) recount() {
	if k := kindOf(h.e); k != h.s.hitKind {
		h.s.kinds[h.s.hitKind]--
		h.s.kinds[k]++
		h.s.hitKind = k
	}
}

// unlock recounts the entry, tells the event subscribers if the packet
// changed it (events.go), and unlocks the shard.
func (h *hit) unlock() {
	if h.e != nil {
		if subs := h.s.events.subs.Load(); subs != nil {
			h.s.emitUpdate(subs, h.e)
		}
		h.recount()
	}
	h.s.mu.Unlock()
}

// remove deletes the entry (which the packet may have changed: it leaves
// the count of the kind it has now).
func (h *hit) remove() {
	h.recount()
	h.s.remove(h.pos)
	h.e = nil
}

// lookup locks k's shard, runs the incremental sweep and finds k. An
// expired entry is reaped and reported as a miss. The shard stays locked
// in both cases; the caller ends with the hit's unlock.
func (t *Table) lookup(k *Key, h uint64, now int64) (hit, bool) {
	s := t.shard(h)
	s.mu.Lock()
	s.tick(now)
	pos, idx, dir, ok := s.find(k, h)
	if !ok {
		return hit{s: s}, false
	}
	e := s.at(idx)
	if e.expired(now) {
		s.remove(pos)
		s.st.expired.Add(1)
		return hit{s: s}, false
	}
	s.hitKind, s.hitFlags = kindOf(e), e.flags
	return hit{s: s, e: e, pos: pos, dir: dir}, true
}

// label sets r to the label of a packet of h's connection in h's direction,
// decided before the packet updates the entry (the kernel's
// resolve_normal_ct, before the protocol's packet function runs).
func (h *hit) label(r *Result) {
	r.Mark = h.e.mark
	switch {
	case h.dir == 1:
		r.Label, r.Reply, r.Reason = LabelEstablished, true, ReasonReply
	case h.e.seenReply():
		r.Label, r.Reason = LabelEstablished, ReasonSeenReply
	default:
		r.Label, r.Reason = LabelNew, ReasonUnreplied
	}
}

// accept refreshes the timer (when d > 0), counts the packet and, for a
// reply, marks the entry as having seen one: the kernel's
// nf_ct_refresh_acct followed by the IPS_SEEN_REPLY update in
// nf_conntrack_in.
func (h *hit) accept(p *packet.Packet, now int64, d time.Duration) {
	if d > 0 {
		h.s.setDeadline(h.e, now+int64(d))
	}
	h.e.packets[h.dir]++
	h.e.bytes[h.dir] += uint64(p.IPLen)
	h.seen()
}

// seen sets seen-reply for a reply-direction packet the protocol let
// through (also when it changed nothing, like TCP's IGNORE). The entry is
// now this node's (not FromPeer) and dirty for state sync; a TCP entry
// taken over from a peer leaves liberal tracking once both directions
// have been seen here (pickedUp).
func (h *hit) seen() {
	f := h.e.flags&^flagPeer | flagDirty
	if h.dir == 1 {
		f |= flagSeenReply
	}
	if f&flagPickup != 0 {
		f = h.pickedUp(f)
	}
	h.e.flags = f
}

// miss sets r for a packet that may start a connection with hash h, in
// shard s (locked). At the limit it makes room now, as the
// kernel's allocation of the new entry does (early_drop runs for every
// such packet, whatever the rules then decide); when nothing can go, the
// packet is still new but marked table full, and Commit will refuse it.
func (t *Table) miss(r *Result, s *shard, h uint64, now int64, timeout time.Duration) {
	r.Label, r.Reason, r.insert, r.hash, r.timeout = LabelNew, ReasonNewConn, true, h, timeout
	if t.count.Load() >= t.limit && !t.makeRoom(s, h, now) {
		r.Reason, r.full = ReasonTableFull, true
		s.st.refused.Add(1)
	}
}

// makeRoom frees one entry for a new connection with hash h at the limit;
// s, h's shard, is locked on entry and on return (it is unlocked in
// between when other shards must be reaped). Expired entries go first: one
// near h, else every expired entry of the table; only when no entry has
// expired anywhere, so that the live entries alone fill the table, is a
// live unassured entry near h evicted (early drop). Which live entry that
// is depends on the hash, as in the kernel; whether one is evicted at all
// does not.
func (t *Table) makeRoom(s *shard, h uint64, now int64) bool {
	if s.evictNear(h, now, false, false) {
		return true
	}
	if now >= t.soonest.Load() {
		s.mu.Unlock()
		t.reapExpired(now)
		s.mu.Lock()
		if t.count.Load() < t.limit {
			return true
		}
	}
	return s.evictNear(h, now, true, t.limit >= closingDropLimit)
}

// closingDropLimit is the smallest limit at which a full table drops
// closing TCP connections (see entry.droppable).
const closingDropLimit = 100

// Commit stores the entry of a new connection whose first packet the rules
// accepted; r is Track's result for that same packet. It reports false when
// the table is full and no entry could be evicted, when Track found it so
// (r.Reason is ReasonTableFull) or now: the packet must then be dropped,
// as the kernel drops it.
//
// Commit does nothing and reports true when r did not come from a packet
// that can create an entry (a retransmitted first packet of a connection
// already stored, established packets), or when a concurrent packet of the
// same connection stored it first.
func (t *Table) Commit(p *packet.Packet, r *Result, now int64) bool {
	if !r.insert {
		return true
	}
	if r.full {
		// The kernel drops such a packet when it allocates the entry,
		// before any rule sees it; the refusal was counted then.
		return false
	}
	now = t.clock(now)
	if t.count.Load() >= t.limit {
		// Track made room, but a concurrent packet may have taken it:
		// expired entries go before a live one is evicted below.
		t.reapExpired(now)
	}
	var k Key
	packetKey(&k, p)
	var conn tcpstate.Conn
	if k.proto == packet.ProtoTCP {
		// Track accepted this packet as a connection's first, so Start
		// and Step accept it again and give the same state.
		tcpstate.Start(&conn, p)
		tcpstate.Step(&conn, p, tcpstate.Original, tcpstate.Status{}, &t.to.TCP)
	}
	s := t.shard(r.hash)
	s.mu.Lock()
	defer s.mu.Unlock()
	if pos, idx, _, ok := s.find(&k, r.hash); ok {
		if !s.at(idx).expired(now) {
			s.st.clash.Add(1)
			return true
		}
		s.remove(pos)
		s.st.expired.Add(1)
	}
	if t.count.Add(1) > t.limit {
		if !s.evictNear(r.hash, now, true, t.limit >= closingDropLimit) {
			t.count.Add(-1)
			t.refuse(s, r)
			return false
		}
	}
	s.reserveSlot(now)
	idx, ok := s.alloc()
	if !ok {
		t.count.Add(-1)
		t.refuse(s, r)
		return false
	}
	e := s.at(idx)
	*e = entry{
		key:   k,
		flags: r.flags,
		mark:  r.Mark,
		tcp:   conn,
	}
	s.setDeadline(e, now+int64(r.timeout))
	if k.proto == packet.ProtoUDP {
		*e.streamTS() = now + int64(udpStreamAfter)
	}
	if k.proto == packet.ProtoSCTP {
		sctpCommit(e, p)
	}
	e.packets[0] = 1
	e.bytes[0] = uint64(p.IPLen)
	s.insertSlot(r.hash, idx)
	s.n++
	s.st.inserted.Add(1)
	if subs := s.events.subs.Load(); subs != nil {
		s.emit(subs, EventNew, e, now)
	}
	r.insert = false
	return true
}

func (t *Table) refuse(s *shard, r *Result) {
	if !r.full {
		s.st.refused.Add(1)
	}
	r.Reason, r.full = ReasonTableFull, true
}
