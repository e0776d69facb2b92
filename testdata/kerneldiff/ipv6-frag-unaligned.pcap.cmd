# testdata/kerneldiff/ipv6-frag-unaligned.pcap: a disagreement with the kernel's conntrack, minimized (was seed-63.pcap)
#
# One IPv6 fragment: offset 0, more fragments, 67 bytes of data (not a
# multiple of 8), protocol 253. nf_ct_frag6_queue answers -EPROTO, which
# nf_ct_frag6_gather turns into 0: the fragment passes through unreassembled
# (after the kernel drops whatever was held for its datagram) and conntrack
# labels it itself: new. statewall's defrag drops the datagram: invalid.
#
# Found by the differential test (internal/kerneldiff, conversations from internal/convgen):
#   make fuzz-kernel SEEDS=63 GATES=ipv6-frag-unaligned
# which generated seed 63 and found, in its batch, #3: kernel new/original, statewall invalid (defrag: impossible datagram);
# Minimize then shrank it against the kernel oracle (oracle.Options.KeepAddresses) to 1 packets in 4 runs.
# date:   2026-12-07T14:07:05Z
# kernel: Linux 6.18.44-fc-v1300
# go:     go1.26.8
#
# Packets: the kernel's label, statewall's (stateful replay, rules/default-pass.rules), the generator's note.
# '>' marks the packet the minimization kept disagreeing.
> #0 kernel new/original; statewall invalid (defrag: impossible datagram)
    IPv6 fd00:198:18::1:0:1 > fd00:198:18::1:0:0, 123 bytes
    proto 253 s>c len=124 frag [0,67)
    kernel's note: fragment: passed through the kernel's defrag unreassembled, so conntrack labelled the fragment itself (a non-last fragment whose length is not a multiple of 8: IPv6 defrag lets it through and drops the fragments held for its datagram)
