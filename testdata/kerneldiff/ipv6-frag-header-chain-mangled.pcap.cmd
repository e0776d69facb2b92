# testdata/kerneldiff/ipv6-frag-header-chain-mangled.pcap: a disagreement with the kernel's conntrack, minimized (was seed-73.pcap)
#
# An IPv6 first fragment of a TCP SYN whose 8 bytes are a destination-
# options header with other bytes (the generator's "copy with other bytes"
# of a fragment): next header 92, length 736. ipv6frag_thdr_truncated sees
# the header chain run past the fragment, the kernel lets the fragment
# through unreassembled, and conntrack, walking the same chain, finds
# protocol 92 past the end of the packet and tracks it generically: new.
# statewall's defrag rejects the fragment: invalid.
#
# Found by the differential test (internal/kerneldiff, conversations from internal/convgen):
#   make fuzz-kernel SEEDS=73 GATES=ipv6-frag-header-chain
# which generated seed 73 and found, in its batch, #1: kernel new/original, statewall invalid (defrag: fragment rejected);
# Minimize then shrank it against the kernel oracle (oracle.Options.KeepAddresses) to 1 packets in 10 runs.
# date:   2026-12-07T14:07:01Z
# kernel: Linux 6.18.44-fc-v1300
# go:     go1.26.8
#
# Packets: the kernel's label, statewall's (stateful replay, rules/default-pass.rules), the generator's note.
# '>' marks the packet the minimization kept disagreeing.
> #0 kernel new/original; statewall invalid (defrag: fragment rejected)
    IPv6 fd00:198:18::1:0:0 > fd00:198:18::1:0:1, 56 bytes
    tcp c>s S seq=c+0 ack=0 win=33579 len=0 opts=mss,sackOK,ws7 [simultaneous open] frag [0,8)
    kernel's note: fragment: passed through the kernel's defrag unreassembled, so conntrack labelled the fragment itself (a first fragment without the whole header chain: ipv6frag_thdr_truncated)
