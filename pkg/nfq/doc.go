// Package nfq is statewall's packet path on Linux: it diverts packets to
// NFQUEUE with iptables rules of its own (Install, Remove, Cleanup), has
// the kernel reassemble fragments before they are diverted (EnableDefrag,
// DisableDefrag), and reads the queues, handing every packet to a Handler
// and sending the kernel the Handler's verdict (Open, Reader).
//
//	d, err := nfq.Install(nfq.DivertConfig{FailOpen: true})
//	...
//	defer d.Remove()
//	r, err := nfq.Open(nfq.QueueConfig{FailOpen: true}, handler, log)
//	...
//	err = r.Run(ctx) // until ctx is done; every packet read gets one verdict
//
// Every change statewall makes to netfilter is made here: the iptables
// divert chains and jumps in the mangle and security tables (see "Where
// statewall runs"; divert_linux.go, scripts built in rules.go) and
// the nft defragmentation table (defrag.go, defrag_linux.go), both named
// after DivertConfig.Tag, which CheckTag vets before it reaches a command
// run as root. Nothing else in statewall runs iptables or nft.
//
// # Diversion
//
// Install writes chains named <Tag>-INPUT and <Tag>-FORWARD in the mangle
// table and <Tag>-OUTPUT in the security table, each ending in an NFQUEUE
// rule, and a jump to each, commented "statewall", appended at the end of
// the built-in chain of the same hook. It does so in one iptables-restore
// --noflush run per address family, which commits one transaction per
// table (both backends commit each "*table" block on its own): in each
// table the same transaction first removes what a crashed or restarting
// earlier run left (jumps to those chain names from built-in chains with
// that comment, and the chains), so a restart never leaves a window in
// which packets are not diverted. The leftovers of a statewall from before
// #14, which diverted in the filter table, are removed last, after the new
// jumps are in: for that moment a packet may be diverted twice, never
// not at all. Nothing else in the ruleset is touched; a rule of somebody
// else's that jumps to one of our chains is an error, not something to
// delete. On the nf_tables backend, a mangle or security table that
// statewall leaves holding nothing but empty built-in chains that accept
// everything (iptables-nft makes the table for the first rule and leaves
// it behind) is deleted with nft; the legacy backend cannot delete a
// table, so there those empty built-in chains stay.
//
// # Several queues
//
// With several queues (DivertConfig.Queues) the divert chain spreads the
// packets as DivertConfig.Spread says. The default, SpreadFlow, hashes
// each packet's addresses, ports and protocol with the kernel's HMARK
// target, a keyed jhash (the key drawn at Install) that is the same for
// both directions of a flow, into the packet's mark (FlowMark: the
// queue's index above FlowMarkBase), and one rule per queue queues the
// packets of its mark. HMARK writes the whole mark, so only packets with
// mark 0 are hashed; a packet with a mark of the host's keeps it and is
// spread by addresses (--queue-balance) instead. The reader gives every
// packet carrying its queue's flow mark its 0 back in the verdict
// (NFQA_MARK), so the rest of the host's firewall sees the packet's mark
// as it was; only a packet the kernel accepts without asking (fail-open
// with a full queue or no reader) goes on with its flow mark. Where the
// kernel lacks HMARK (Install probes it), Install falls back to
// SpreadAddr and says so in Divert.Config. The kernel's own
// --queue-balance hashes the addresses only: one client and one server
// then share one queue whatever their flows (8 packets on one queue and
// 183,916 on the other, issue #16). SpreadCPU (--queue-cpu-fanout)
// queues by the CPU that handles the packet, which need not be the same
// for the two directions of a flow.
//
// # Offload
//
// With DivertConfig.OffloadMark (one connmark bit), each divert chain
// first returns the packets of connections whose kernel conntrack mark
// has the bit ("-m connmark --mark B/B -j RETURN"): the kernel carries
// them past the queue. A Handler sets the bit on a connection by
// setting Packet.SetMark: the verdict carries the packet's mark with the
// bit, and a chain <Tag>-OFFLOAD, jumped to from security INPUT and
// FORWARD (after the filter table: only a packet the host's firewall
// passed too hands its connection over) and from mangle POSTROUTING (for
// output, diverted in security OUTPUT), saves the bit into the
// connection's mark and clears it from the packet's (CONNMARK
// --save-mark and MARK with the bit as mask: no other bit of either mark
// changes). The connmark match makes the kernel track connections in the
// namespace. CT, CTEvents (ct_linux.go) read and change the kernel's
// conntrack for the daemon, which follows the connections it offloaded
// (pkg/daemon, offload.go).
//
// # Where statewall runs, and what its verdicts mean
//
// A verdict is final only for the table it is given in: NF_ACCEPT from a
// queue ends that table's chain for the packet, which then goes on to the
// hook's next table or nft base chain, in priority order; NF_DROP ends it
// everywhere. So statewall diverts from tables whose accept ends nothing
// of the host's firewall, and a pass means "statewall has no objection":
// the filter table (ufw, Docker, fail2ban, firewalld's iptables rules) and
// every nft base chain still decide. A block is final.
//
//	input, forward: mangle, priority -150: after defragmentation (-400),
//	                raw (-300) and conntrack (-200), before filter (0)
//	output:         security, priority 50 (legacy) or 150 (iptables-nft,
//	                as nft list shows): after nat (-100) and filter (0)
//
// Output cannot divert from mangle: nat OUTPUT (-100) comes after it, and
// a locally made connection that nat rewrites (Docker's published ports
// seen from the host, kube-proxy's services) would be seen with the
// address before the rewrite, while its replies come back, on input, from
// the address after it, so stateful rules would block them (pkg/daemon
// TestCoexistLocalDNAT). In security the output packet is seen as filter
// sees it, as before #14. On input and forward, mangle sees what filter
// sees (nothing between -150 and 0 rewrites a packet) and also what the
// filter table then drops.
//
// The rejected alternative was to stay in filter and answer NF_REPEAT with
// a mark the divert rule skips (Suricata's repeat mode): it needs a mark
// bit of the host's (which policy routing, kube-proxy or WireGuard may use,
// and which changes the route of an output packet when it changes), a
// verdict per packet carrying it, and fail-open would still end the filter
// table: with --queue-bypass and no reader, and when a fail-open queue is
// full, the kernel accepts the packet for the table that queued it. From
// mangle and security, fail-open lets the rest of the host's firewall
// decide.
//
// The jumps are appended so that the rules already in those chains
// (TCPMSS clamping in mangle FORWARD, SELinux's SECMARK in security) still
// see every packet; a rule appended after statewall started does not see
// the packets statewall passes (a restart puts statewall last again), and
// a rule before statewall's jump that ends in ACCEPT lets packets by it.
//
// The kernel this was written on has the xt NFQUEUE target but not nft's
// native queue expression, so the rules go through iptables: the nf_tables
// backend (iptables-nft) or the legacy one, whichever actually accepts an
// NFQUEUE rule (DetectBackend tries, preferring the backend the system's
// "iptables" command uses).
//
// # Queues and verdicts
//
// A Reader has one netlink socket and one reader goroutine per queue. The
// Handler runs on that goroutine, and verdicts go out in packet order
// (those decided since the socket was last empty together). Every packet
// the Reader reads gets exactly one verdict, also at shutdown: Close first
// tells the kernel to stop queueing (queue length 0: new packets then pass
// with FailOpen and are dropped without), then waits until the kernel has
// answered a probe sent behind every packet already queued, so the packets
// in flight get the verdict the Handler computes for them; only then is
// the socket closed.
// Packets the kernel could not deliver because the socket buffer was full
// (ENOBUFS) were never queued: the kernel accepted (FailOpen) or dropped
// them, and the Reader counts the overruns.
//
// # Order
//
// Open, then Install, then Run; at the end Close, then Remove. Opening
// first means no packet reaches a queue while it is being bound (see Open);
// closing first means the packets in flight are decided by the Handler, and
// the kernel applies the FailOpen choice until the rules are gone.
//
// # Files
//
// The reader, in the order a packet takes: reader_linux.go is the Reader's
// lifecycle (Open, Run, Close and the drain at shutdown); queue_linux.go
// one queue, its socket and how it is bound; read_linux.go the queue's
// reader goroutine, from the socket to the Handler; parse_linux.go the
// packet message; verdict_linux.go and batch.go the verdicts going back.
// The nfnetlink_queue numbers and messages are in internal/nfqnl, shared
// with the reference readers.
//
// # Costs, and the references
//
// The reader reads each queue's netlink socket itself: up to 16 datagrams
// (the kernel sends every packet as one) per recvmmsg(2), each into a
// reused buffer of the copy range plus 16 KiB, no peek, the messages
// parsed in place, the Handler given a reused Packet whose Payload points
// into that buffer. The verdicts wait until a read finds the socket empty
// (at most 64 of them, half the queue length, or about 1 ms after the
// first) and then go out in one write, each run of equal verdicts as one
// NFQNL_MSG_VERDICT_BATCH (see verdicts in batch.go for why that gives
// every packet exactly its own verdict). It allocates nothing per packet.
//
// It is tested and measured against readers built on
// github.com/florianl/go-nfqueue, in pkg/nfq/nfqref, which only the tests
// and benchmarks use: the reader tests run every implementation (named
// "raw" for this one, "go-nfqueue" and "go-nfqueue-batch"), and
// BenchmarkReaderImpls compares them on a 2-core VM (kernel 6.18; numbers
// and command in bench/results/nfq-reader.md): this reader costs a
// fraction of the CPU per packet of go-nfqueue, works off a full queue
// several times faster, and keeps TCP bulk transfers (GSO super-packets)
// close to their speed without diversion.
package nfq
