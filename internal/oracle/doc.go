// Package oracle asks the running Linux kernel what its connection tracking
// makes of every packet of a capture, so that statewall's own conntrack can
// be compared with it packet by packet. It is Linux-only and needs root.
//
//	labels, err := oracle.Labels(ctx, "capture.pcap")
//	// labels[i].CT is "new", "established", "related", "invalid",
//	// "untracked", or "" with labels[i].Note saying why.
//
// # How
//
// For each capture Run
//
//  1. rewrites it with pcaprewrite (unless Options.KeepAddresses): every address into 198.18.0.0/15 or
//     fd00:198:18::/64 (nothing from outside those ranges is ever put on an
//     interface), link layer and VLAN tags stripped, checksums adjusted so a
//     bad one stays bad; non-IP frames (ARP, MPLS, IS-IS...) keep their index
//     and get "not injected: <reason>";
//  2. creates a fresh network namespace sw-oracle-PID-N (so no state leaks
//     between captures) and in it:
//     - sysctls: rp_filter=0 and accept_local=1 (every source is a local
//     address here), no IPv6 RA/redirect/DAD processing and no link-local
//     address on the injection device; the conntrack sysctls are the kernel
//     defaults of a new namespace unless Options.Sysctls sets some
//     (Result.Sysctls, printed with -v);
//     - a tun device "swo0" (IFF_TUN, no packet-info header, MTU 65535);
//     - local routes "local 198.18.0.0/15 dev lo" and "local
//     fd00:198:18::/64 dev lo", so every packet is for the namespace itself
//     and reaches LOCAL_IN, where conntrack confirms new entries;
//     - an nftables table: a prerouting chain at priority -175 (after
//     conntrack at -200) that copies "ct state" into the packet mark
//     (new 1, established 2, related 3, invalid 4, untracked 5) and ORs in
//     0x10 for "ct direction reply"; a raw-priority chain that untracks the
//     sentinel (below); an output chain at priority -500 with policy drop,
//     so nothing the namespace answers (TCP resets, ICMP errors, echo
//     replies, ND) ever reaches its conntrack or leaves;
//     - NFQUEUE rules (the kernel here has the xt NFQUEUE target but neither
//     nft's queue expression nor NFQUEUE's conntrack glue), installed with
//     iptables-restore/ip6tables-restore (nf_tables backend; the legacy
//     backend is tried if that fails) in mangle PREROUTING (priority -150,
//     after the label chain) and mangle INPUT;
//  3. opens the queue (go-nfqueue) inside the namespace and replays the
//     packets ONE at a time: write the packet to the tun fd (the kernel
//     receives it as an incoming packet, CHECKSUM_NONE, so conntrack
//     verifies transport checksums), then write a sentinel, an untracked
//     UDP packet between two reserved addresses carrying a sequence number.
//     The queue reader accepts every packet (and drops the sentinel at
//     INPUT) and reports what it saw: hook, mark, payload. Verdicts are given
//     in arrival order and a verdict re-injects the packet synchronously, so
//     once the sentinel has reached INPUT every event of the packet before it
//     has been seen: the wait ends on the sentinel, never on a guess (the
//     timeout, 2 s by default, is only a safety net against losing
//     synchronisation, and fails the run);
//  4. labels the packet from its PREROUTING event's mark, checks that the
//     queued bytes are the injected ones and that the packet also reached
//     INPUT (otherwise the Note says the entry was not confirmed);
//  5. removes the namespace (also on error, panic in the namespace thread,
//     and SIGINT/SIGTERM/SIGHUP: a handler deletes the live namespaces and
//     re-raises the signal; namespaces of a process killed outright are
//     deleted by the next run, which removes every sw-oracle-PID-* whose PID
//     is gone).
//
// The namespace work runs on a dedicated, locked OS thread that has entered
// the namespace (vishvananda/netns) and is discarded afterwards; setup
// commands run through "ip netns exec" / "ip -n".
//
// # Fragments
//
// The kernel reassembles IPv4 and IPv6 (nf_defrag_ipv4/ipv6, priority -400)
// before conntrack. A fragment on its own produces no event; when the last
// missing fragment arrives, the queue sees the reassembled datagram once.
// Run keeps the fragments pending per datagram (addresses, id, and for IPv4
// the protocol) and gives every fragment of the datagram that label, with a
// note. It compares each pending fragment's bytes with the reassembled
// datagram: a fragment whose bytes are not in it (a later overlapping copy
// the kernel discarded, as in ipv6-malformed-fragments) gets no label and a
// note; an identical duplicate is discarded by the kernel's rule
// (IPFRAG_DUP) and is reported the same way, as inferred. Fragments of a
// datagram that never completes get no label ("never completed").
//
// IPv6 defrag also lets some fragments through unreassembled
// (nf_ct_frag6_gather returns 0, which ipv6_defrag accepts), and conntrack
// then labels the fragment itself: a first fragment that does not hold the
// header chain through the transport header's first bytes
// (ipv6frag_thdr_truncated; the fragments held for its datagram stay), and
// a non-last fragment whose length is not a multiple of 8 (nf_ct_frag6_queue
// answers -EPROTO after dropping the fragments held for its datagram, which
// then get no label). Run recognises the case by the queued bytes, which
// are the injected fragment's, and notes it.
//
// # Time
//
// By default packets are injected back to back; capture gaps are not waited
// out, while conntrack timeouts run on the wall clock. A capture whose gaps
// exceed a timeout that matters (UDP 30 s, ICMP 30 s, SYN_SENT 120 s, ...)
// could get different labels in a real-time replay. Run warns about gaps
// longer than GapWarning (25 s) in Result.Warnings and notes the packet
// after the gap.
//
// To compare expiry, Options.GapScale makes Run wait the gaps out (scaled,
// each packet at its time from the first, so that processing time does not
// add up), and Options.Sysctls lowers conntrack's timeouts in the namespace
// (they are per namespace: net.netfilter.nf_conntrack_*_timeout*); the
// ruleset statewall replays with then sets the same values (`set timeout`).
// The kernel's timeouts count whole seconds and its clock is the wall
// clock, so a comparison should keep every packet well away from a
// timeout's end (internal/convgen's Options.Gaps keeps 0.2 s).
//
// # Addresses
//
// Options.KeepAddresses injects the capture's own bytes instead of the
// rewritten ones, for captures made inside the test ranges (the
// conversation generator's): the rewriter maps addresses it finds, and an
// ICMP error whose quote it does not take for an IP header (cut short, or
// altered on purpose) would keep the original addresses while the flow it
// quotes got new ones. Run refuses a capture with any address outside the
// test ranges then.
//
// # Packets without a label
//
//   - not injected: non-IP frames, truncated captures, broken IPv4 headers
//     (see pcaprewrite);
//   - IPv4 packets with a bad header checksum: ip_rcv drops them before any
//     netfilter hook;
//   - fragments of datagrams that never complete, and duplicate fragments;
//   - anything else the kernel drops before mangle PREROUTING gets a generic
//     "no verdict" note.
package oracle
