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
// divert chains and jumps (divert_linux.go, scripts built in rules.go) and
// the nft defragmentation table (defrag.go, defrag_linux.go), both named
// after DivertConfig.Tag, which CheckTag vets before it reaches a command
// run as root. Nothing else in statewall runs iptables or nft.
//
// # Diversion
//
// Install writes, in one iptables-restore --noflush transaction per address
// family, chains named <Tag>-INPUT, <Tag>-OUTPUT and <Tag>-FORWARD in the
// filter table, each ending in an NFQUEUE rule, and a jump to each from the
// built-in chain of the same hook, inserted at position 1 and commented
// "statewall". The same transaction first removes what a crashed earlier run
// left (jumps to those chain names from built-in chains with that comment,
// and the chains), so a restart never leaves a window in which packets are
// not diverted. Nothing else in the ruleset is touched; a rule of somebody
// else's that jumps to one of our chains is an error, not something to
// delete.
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
