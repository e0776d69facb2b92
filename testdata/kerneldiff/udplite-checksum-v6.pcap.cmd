# testdata/kerneldiff/udplite-checksum-v6.pcap: a disagreement with the kernel's conntrack, minimized (was seed-65.pcap)
#
# One IPv6 UDP-Lite datagram whose checksum is right (protocol 136 in the
# pseudo-header). The kernel calls it invalid: nf_checksum_partial is given
# IPPROTO_UDP, so it sums the pseudo-header with protocol 17 (the IPv6 length
# is right). statewall: new. See udplite-checksum-v4.pcap.cmd.
#
# Found by the differential test (internal/kerneldiff, conversations from internal/convgen):
#   make fuzz-kernel SEEDS=65 GATES=udplite
# which generated seed 65 and found, in its batch, #1: kernel invalid, statewall new/original (default);
# Minimize then shrank it against the kernel oracle (oracle.Options.KeepAddresses) to 1 packets in 5 runs.
# date:   2026-12-07T14:07:01Z
# kernel: Linux 6.18.44-fc-v1300
# go:     go1.26.8
#
# Packets: the kernel's label, statewall's (stateful replay, rules/default-pass.rules), the generator's note.
# '>' marks the packet the minimization kept disagreeing.
> #0 kernel invalid; statewall new/original (default)
    IPv6 fd00:198:18::1:0:1 > fd00:198:18::1:0:0, 229 bytes
    udplite s>c len=181
