# testdata/kerneldiff/udplite-checksum-v4.pcap: a disagreement with the kernel's conntrack, minimized (was seed-147.pcap)
#
# One IPv4 UDP-Lite datagram whose checksum is right (RFC 3828: the
# pseudo-header carries protocol 136 and the UDP-Lite length). The kernel
# calls it invalid: udplite_error checks the checksum with
# nf_checksum_partial(..., IPPROTO_UDP, ...), so the pseudo-header it sums
# carries protocol 17, and on IPv4 nf_ip_checksum_partial passes protocol and
# length to csum_tcpudp_nofold swapped, so the length is taken modulo 256.
# The kernel accepts (new) exactly the datagrams whose checksum was computed
# that way, and calls every correct one invalid. statewall checks the RFC's
# sum: new. Checked by hand on this kernel with datagrams of 28 and 308
# bytes, coverage 0, 8 and 12, both families.
#
# Found by the differential test (internal/kerneldiff, conversations from internal/convgen):
#   make fuzz-kernel SEEDS=147 GATES=udplite
# which generated seed 147 and found, in its batch, #0: kernel invalid, statewall new/original (default);
# Minimize then shrank it against the kernel oracle (oracle.Options.KeepAddresses) to 1 packets in 6 runs.
# date:   2026-12-07T14:07:00Z
# kernel: Linux 6.18.44-fc-v1300
# go:     go1.26.8
#
# Packets: the kernel's label, statewall's (stateful replay, rules/default-pass.rules), the generator's note.
# '>' marks the packet the minimization kept disagreeing.
> #0 kernel invalid; statewall new/original (default)
    IPv4 198.18.0.1 > 198.18.0.2, 172 bytes
    udplite c>s len=144
