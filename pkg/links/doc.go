// Package links keeps the host's network interfaces and their addresses
// current, so that the daemon can map a queued packet's ifindex to a name
// and an interface name (pass in on eth1, antispoof for eth1) to the
// interface's prefixes, and follow renames, removals, re-creations and
// address changes without a restart.
//
// # What it watches
//
// A Watcher listens on an rtnetlink socket subscribed to RTNLGRP_LINK,
// RTNLGRP_IPV4_IFADDR and RTNLGRP_IPV6_IFADDR, in the network namespace
// Config.NetnsName names (the caller's when empty). A Link is the
// interface's index, name, administrative state (IFF_UP) and loopback flag,
// with every address the kernel lists for it, as configured: address and
// prefix length, IPv6 link-local and tentative addresses included. Callers
// filter what they do not want (netip.Addr.IsLinkLocalUnicast).
//
// # Subscribe, then dump
//
// The notification socket joins its groups before a second socket dumps
// the links and addresses. A change made between the two is then both in
// the dump and queued on the notification socket; a change made after the
// dump is queued. Every notification carries the whole state of one link
// or address, and the queue keeps the kernel's order, so applying the
// queued notifications after the dump converges on the kernel's state even
// when some of them are older than the dump (a link deleted and re-created
// during the dump, a dump that the kernel marks interrupted). The opposite
// order, dump then subscribe, would lose a change made in between for
// good. The dump uses its own socket because a socket subscribed to the
// groups interleaves notifications with the dump's replies.
//
// # Coalescing
//
// After one notification, the Watcher keeps reading while more arrive
// within Config.Coalesce (5 ms by default), for at most 20 times that, then
// builds one Snapshot and calls fn once: adding a thousand addresses with
// "ip -batch" costs a handful of rebuilds, not a thousand. A batch that
// changes nothing (a NEWLINK for a carrier or statistics change the
// Snapshot does not show) publishes nothing.
//
// # Overruns
//
// When notifications come faster than the Watcher reads them, the kernel
// drops them and the next read fails with ENOBUFS: the Watcher's view may
// then be wrong in ways no later notification repairs. It throws its view
// away, dumps everything again (still subscribed, so nothing after the new
// dump is lost either), publishes, and counts the overrun in
// Stats.Overruns. The socket's receive buffer is raised to
// Config.ReadBuffer (1 MiB by default) to make that rare.
//
// # Concurrency
//
// fn is called from one goroutine, never concurrently with itself: first
// from Start, with the initial Snapshot, before Start returns (so the
// daemon can bind its ruleset before it queues packets), then from the
// Watcher's goroutine after each change. While fn runs, notifications queue
// in the socket; a slow fn risks an overrun, which costs a re-dump and is
// otherwise harmless. A Snapshot is immutable once published and safe for
// concurrent use; the Watcher's methods are safe for concurrent use.
package links
