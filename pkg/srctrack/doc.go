// Package srctrack is pf's source tracking: the per-rule and per-source
// limits of a stateful rule (pf.conf(5), "STATEFUL TRACKING OPTIONS") and
// the source nodes that count them.
//
// The engine owns the rules and the states; this package only counts. A
// rule is named by a small tag (1..255) that the caller assigns and keeps
// across reloads for rules that did not change; tag 0 means "no rule" and
// every call with it does nothing, so conntrack may call Release for
// every entry it removes. The calls, in the life of a state:
//
//	Acquire(tag, src, now)          before the state is committed: may refuse
//	Established(tag, src, now)      its TCP handshake completed: may say "exceeded"
//	Release(tag, src, est, now)     it went away (or its commit failed)
//
// # Semantics, as in OpenBSD's sys/net/pf.c
//
// max N: the rule's states, counted on the rule (pf_create_state checks
// states_cur >= max_states). A rule with only max makes no source nodes.
//
// Source nodes are keyed by rule and source address (pf_src_compare), made
// by the first state of a source (pf_insert_src_node) for rules with any
// per-source limit or SourceTrack. An IPv4 source is never the same node
// as an IPv6 one, not even ::ffff:a.b.c.d; an IPv6 zone is ignored.
//
// max-src-nodes N: a new source is refused when the rule has N nodes.
// Nodes idle under src.track count, as in pf (rule->src_nodes drops only
// when a node is removed).
//
// max-src-states N: a source with N states is refused a further one.
//
// set limit src-nodes N: all rules' nodes together (pf's pool limit); a
// new source past it is refused with SrcNodesLimit (pf: PFRES_SRCLIMIT).
//
// Acquire checks them in pf's order: max, then the node (max-src-states
// for a known source; max-src-nodes, then the global limit, for a new
// one), and counts nothing when it refuses.
//
// src.track T: when a node's last state goes, the node stays T longer
// (with its connection-rate history and its place under max-src-nodes);
// a new state in that time revives it. T is the rule's Limits.SrcTrack,
// else Config.Timeout (pf's default 0: the node goes with its last state).
//
// max-src-conn N and max-src-conn-rate N/S count TCP connections that
// completed the handshake (pf_src_connlimit, called when both peers reach
// ESTABLISHED). The connection is counted even when it exceeds, and
// Established reports what it exceeds: pf then drops the packet that
// completed the handshake and kills that state (PFTM_PURGE, "kill this
// state"), with or without an overload table; the caller does the same.
// With `overload <table>` pf inserts the source in the table, and with
// flush kills the source's other states of the rule (flush global: of all
// rules). Tables and killing belong to the caller; the tracker counts
// Stats.Overloads for rules whose Limits.Overload is set.
//
// The rate is pf's moving average (pf_add_threshold), not a sliding
// window: the count, kept in thousandths, first decays by count*d/S where
// d is the time since the previous counted connection (to 0 when d >= S),
// then grows by one; the limit is exceeded when the count is above N. So
// N connections at one instant pass and the N+1st exceeds; after S
// without connections the count is 0 again; in between it is lenient
// (N+1 connections spread over S seconds may pass). The one difference
// from pf: d is in nanoseconds, not whole seconds of uptime, so two
// connections 0.9 s apart decay by 0.9 s here where pf decays by 0 or 1 s
// depending on where the second boundary falls. Times from goroutines that
// run a little out of order count as no time passing, never negative.
//
// # Lifetimes, memory and reaping
//
// Nodes are kept by value in per-shard Go maps sized at New for their share
// of Config.Limit; the number of nodes never passes the limit, so memory
// is bounded by it (the maps keep the slots of their peak size). Acquire,
// Release and Established allocate nothing in steady state; a new source
// allocates only when its shard's map grows past its initial size
// (TestNoAllocs, BenchmarkAcquireRelease).
//
// A node past its src.track time goes: when Release leaves it idle and
// the timeout is 0; when Acquire meets it (it is renewed in place); when
// Expire(now) sweeps (the daemon's timer); and when max-src-nodes or the
// global limit refuses a new source, which first sweeps every shard (at
// most once per 100 ms of the caller's time, so that a flood at the limit
// does not sweep per packet) and tries once more. Stats.Nodes and
// RuleInfo.Nodes include idle nodes not yet swept; Sources leaves out the
// expired ones.
//
// Forget(tag) is for a rule that went away: its idle nodes go at once and
// the others with their last state. Since conntrack's entries carry only
// the tag, a tag must not be given to another rule while RuleInfo shows
// states or nodes for it: the counts would merge.
//
// Time is the caller's: int64 nanoseconds on any monotonic clock. The
// package never reads a clock.
//
// # Concurrency and lock order
//
// A Tracker is safe for concurrent use. There is no global lock: nodes
// live in 64 shards, each with its own mutex, picked by a seeded hash of
// (tag, address), so that senders cannot aim at one shard. The per-rule
// counts (max, max-src-nodes) and the global node count are atomics
// changed by compare-and-swap against their limit, so they are exact
// under concurrency and never pass a limit even for a moment; a rule's
// limits are swapped whole by an atomic pointer.
//
// Lock order: a shard lock is a leaf. At most one is held at a time, no
// other lock is taken under it, and nothing outside the package is called
// while holding it (Sources copies a shard and calls fn after unlocking).
// So the caller may call Acquire, Release and Established while holding
// its own locks, as conntrack does when it releases an entry under its
// shard lock; the tracker never calls back.
package srctrack
