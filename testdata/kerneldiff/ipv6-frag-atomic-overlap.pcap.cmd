# testdata/kerneldiff/ipv6-frag-atomic-overlap.pcap: a disagreement with the kernel's conntrack, minimized (was seed-97605.pcap)
#
# An ICMPv6 echo request's first fragment [0,8) (more fragments), then an
# atomic fragment (offset 0, M clear) of the same id, [0,12), then the echo
# reply. nf_ct_frag6_gather queues the atomic fragment under its id like any
# other: as the last fragment [0,12) it overlaps the held [0,8)
# (inet_frag_queue_insert: IPFRAG_OVERLAP), so nf_ct_frag6_queue kills the
# datagram (insert_error: inet_frag_kill) and drops the fragment: no entry,
# the reply is invalid. statewall decoded the atomic fragment as a whole
# packet (new), so the reply was established.
#
# Found by the differential test (internal/kerneldiff, conversations from internal/convgen):
#   make fuzz-kernel SEEDS=97605 GATES=gre,self-reverse,no-next-header,icmpv6-odd-errors,short-quote,multi-sack,ext-past-payload,bad-ipv4-header-sum
# which generated seed 97605 and found, in its batch, #5: kernel invalid, statewall established/reply (conntrack: established);
# Minimize then shrank it against the kernel oracle (oracle.Options.KeepAddresses) to 3 packets in 13 runs.
# date:   2026-12-07T16:37:21Z
# kernel: Linux 6.18.44-fc-v1300
# go:     go1.26.8
#
# Packets: the kernel's label, statewall's (stateful replay, rules/default-pass.rules), the generator's note.
# '>' marks the packet the minimization kept disagreeing.
  #0 kernel ""; statewall invalid (defrag: incomplete datagram at end of capture)
    IPv6 fd00:198:18::1:0:0 > fd00:198:18::1:0:1, 56 bytes
    icmp6 c>s type=128 code=0 id=42496 seq=12655 len=4 [fragments id=0x739837b2: 2 pieces, overlapping piece [0,12)] frag [0,8)
    kernel's note: fragment: no verdict, the kernel's defrag never completed the datagram (a fragment is missing, or overlapping fragments made it drop the whole datagram)
  #1 kernel ""; statewall new/original (default)
    IPv6 fd00:198:18::1:0:0 > fd00:198:18::1:0:1, 60 bytes
    icmp6 c>s type=128 code=0 id=42496 seq=12655 len=4 frag [0,12)
    kernel's note: no verdict: dropped before the mangle PREROUTING hook (IP input checks, defrag or conntrack)
> #2 kernel invalid; statewall established/reply (conntrack: established)
    IPv6 fd00:198:18::1:0:1 > fd00:198:18::1:0:0, 131 bytes
    icmp6 s>c type=129 code=0 id=42496 seq=12655 len=83
