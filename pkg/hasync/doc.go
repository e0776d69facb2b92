// Package hasync keeps the connection tables of two (or a few) statewall
// nodes in step, as pfsync and conntrackd do (ha-reference.md §1, §2),
// so that the node that takes over after a failover knows every
// connection, TCP windows included, and does not drop them as new.
//
// # Shape
//
// Each node dials each of its peers and sends its own changes on that
// connection (link Out); it receives a peer's changes on the connection
// the peer dialled (link In), where it sends back acks and keepalives.
// One direction of data per connection keeps each side simple: the
// sender owns what it sends, the receiver only applies and acks.
//
// A sending session starts with HELLO, then a bulk of the whole table
// (BULK_START, RECORDS, BULK_END), then streams changes, so that a peer
// that (re)starts gets everything when it reconnects; OpenBSD's pfsync
// does the same on join (§1.5).
//
// What goes out (sender.go):
//   - the table's events (conntrack.Subscribe, those not caused by a
//     peer: loop suppression, pfsync's PFSYNC_S_PFSYNC): NEW and UPDATE
//     put the key in a pending set, DESTROY a deletion; the set is sent
//     at once after a quiet time, and while changes keep coming at most
//     every FlushEvery (1 ms), each record exported as the entry is then,
//     so repeated changes of one entry merge, and a connection made and
//     gone in between costs nothing (§1.4, §2.4);
//   - every DirtyEvery (250 ms), the entries packets changed without an
//     event (window edges, timers: conntrack.ExportDirty), at that rate
//     however fast packets come;
//   - a bulk again when events were lost (the queue was full) or the
//     pending set outgrew MaxPending: a resync, counted.
//
// What comes in (receiver.go): each record is installed (a forward-only
// merge for a connection the table has), each deletion removed; then the
// frame is acked. Records a peer sends are never sent back to it.
//
// # Security
//
// TLS 1.3 with certificates on both ends, signed by one sync CA
// (transport.go; GenerateKeys makes a CA and node certificates), and
// optionally AllowedPeers. pfsync and conntrackd authenticate nothing
// and rely on a dedicated link (§1.8, §2.9); this package still wants
// one, for latency and so that sync does not share fate with the traffic
// it protects, but does not depend on it. A peer that fails the
// handshake gets nothing in or out. An authenticated peer that breaks
// the protocol (garbage, oversized or replayed frames, malformed
// records) is cut off and counted, and the node carries on; what a peer
// can make this node hold is bounded (one 64 KiB frame buffer, one ack),
// whatever it sends.
//
// # Lag
//
// The nodes' clocks are not comparable, so the lag is measured on the
// sender alone: from the moment this node saw an entry change (the event
// arrived, or the dirty export that found it ran) to the moment the
// peer's ack for the frame that carried it came back. It therefore
// includes the time in the pending set, on the wire both ways, and the
// peer's Install; for dirty entries it starts at the export, up to
// DirtyEvery after the packet. Every frame of changes asks for an ack;
// the receiver acks after installing and sends one ack per burst of
// frames (acks are cumulative). Stats gives p50 and p99 per peer, the
// Collector a histogram.
//
// # Deferral
//
// Announce (deferral.go) is pfsync's defer (§1.6): the daemon holds the
// first packet of a new connection until every peer has acked its entry,
// or until Config.Defer passes (then it sends the packet anyway).
//
// # Not done
//
//   - A bulk carries entries, not deletions: an entry deleted on the
//     sender while the receiver was away, or while a resync was due,
//     lives on at the receiver until its timeout there (conntrackd's
//     external cache has the same gap; pfsync's bulk the same).
//   - No carp-style demotion while a bulk is under way: Stats says
//     bulk-receiving; keepalived's track_script can read it.
package hasync
