# ipv6-hopbyhop-truncated.pcap (was seed-57165.pcap): a disagreement with the kernel's conntrack, minimized
# Found by the differential test (internal/kerneldiff, conversations from internal/convgen):
#   make fuzz-kernel SEEDS=57165 GATES=gre,self-reverse,no-next-header,icmpv6-odd-errors,short-quote,multi-sack,ext-past-payload,bad-ipv4-header-sum
# which generated seed 57165 and found, in its batch, #2725: kernel new/original, statewall established/original (conntrack: established);
# Minimize then shrank it against the kernel oracle (oracle.Options.KeepAddresses) to 3 packets in 6 runs.
# date:   2026-12-07T14:35:09Z
# kernel: Linux 6.18.44-fc-v1300
# go:     go1.26.8
#
# Packets: the kernel's label, statewall's (stateful replay, rules/default-pass.rules), the generator's note.
# '>' marks the packet the minimization kept disagreeing.
  #0 kernel new/original; statewall new/original (default)
    IPv6 fd00:198:18::1:0:1ec > fd00:198:18::1:0:1ed, 70 bytes
    proto 254 c>s len=22
  #1 kernel ""; statewall established/reply (conntrack: established)
    IPv6 fd00:198:18::1:0:1ed > fd00:198:18::1:0:1ec, 305 bytes
    proto 254 s>c len=257 [payload length ends 4 bytes into the extension headers]
    kernel's note: no verdict: dropped before the mangle PREROUTING hook (IP input checks, defrag or conntrack)
> #2 kernel new/original; statewall established/original (conntrack: established)
    IPv6 fd00:198:18::1:0:1ec > fd00:198:18::1:0:1ed, 217 bytes
    proto 254 c>s len=177
# Fixed in pkg/packet: a hop-by-hop header that is not all there is malformed (ip6_rcv drops it before netfilter).
