# testdata/kerneldiff/ipv6-frag-header-chain-pim.pcap: a disagreement with the kernel's conntrack, minimized (was seed-2812.pcap)
#
# A PIM packet, then an IPv6 first fragment of the answer whose 8 bytes
# hold only the first half of a 16-byte destination-options header. RFC 8200
# says to discard such a first fragment, and statewall's defrag does
# (rejected, invalid); the kernel's nf_ct_frag6_gather returns 0 for it
# ("Drop incomplete fragment", but 0 means NF_ACCEPT to ipv6_defrag), so the
# fragment passes through unreassembled and conntrack labels it as a packet:
# PIM is tracked by addresses, the fragment is the reply, established. The
# fragments held for its datagram stay held.
#
# Found by the differential test (internal/kerneldiff, conversations from internal/convgen):
#   make fuzz-kernel SEEDS=2812 GATES=ipv6-frag-header-chain
# which generated seed 2812 and found, in its batch, #6: kernel established/reply, statewall invalid (defrag: fragment rejected);
# Minimize then shrank it against the kernel oracle (oracle.Options.KeepAddresses) to 2 packets in 6 runs.
# date:   2026-12-07T14:07:01Z
# kernel: Linux 6.18.44-fc-v1300
# go:     go1.26.8
#
# Packets: the kernel's label, statewall's (stateful replay, rules/default-pass.rules), the generator's note.
# '>' marks the packet the minimization kept disagreeing.
  #0 kernel new/original; statewall new/original (default)
    IPv6 fd00:198:18::1:0:0 > fd00:198:18::1:0:1, 193 bytes
    proto 103 c>s len=153
> #1 kernel established/reply; statewall invalid (defrag: fragment rejected)
    IPv6 fd00:198:18::1:0:1 > fd00:198:18::1:0:0, 64 bytes
    proto 103 s>c len=10 [fragments id=0x673ee5c4: 4 pieces, piece 1 never sent] frag [0,8)
    kernel's note: fragment: passed through the kernel's defrag unreassembled, so conntrack labelled the fragment itself (a first fragment without the whole header chain: ipv6frag_thdr_truncated)
