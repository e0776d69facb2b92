# testdata/kerneldiff/bad-ipv4-header-sum.pcap: a disagreement with the kernel's conntrack, minimized (was seed-79.pcap)
#
# A handshake, then a data segment whose IPv4 header checksum is wrong, then
# the other side's ACK of that data. ip_rcv drops the bad header before
# netfilter, so the kernel never tracks the data and finds the ACK acking
# data never sent: invalid. statewall's replay does not check the IPv4
# header checksum, tracks the data, and labels the ACK established. (A live
# statewall never sees such a packet: the kernel drops it before the queue.
# The replay of a capture does.)
#
# Found by the differential test (internal/kerneldiff, conversations from internal/convgen):
#   make fuzz-kernel SEEDS=79 GATES=bad-ipv4-header-sum
# which generated seed 79 and found, in its batch, #3: kernel invalid, statewall established/reply (conntrack: established);
# Minimize then shrank it against the kernel oracle (oracle.Options.KeepAddresses) to 4 packets in 16 runs.
# date:   2026-12-07T14:07:06Z
# kernel: Linux 6.18.44-fc-v1300
# go:     go1.26.8
#
# Packets: the kernel's label, statewall's (stateful replay, rules/default-pass.rules), the generator's note.
# '>' marks the packet the minimization kept disagreeing.
  #0 kernel new/original; statewall new/original (default)
    IPv4 198.18.0.1 > 198.18.0.2, 60 bytes
    tcp c>s S seq=c+0 ack=0 win=704 len=0 opts=mss,sackOK,ts,ws6
  #1 kernel established/reply; statewall established/reply (conntrack: established)
    IPv4 198.18.0.2 > 198.18.0.1, 52 bytes
    tcp s>c SA seq=s+0 ack=c+1 win=65535 len=0 opts=mss,sackOK,eol
  #2 kernel ""; statewall established/original (conntrack: established)
    IPv4 198.18.0.1 > 198.18.0.2, 1383 bytes
    tcp c>s PA seq=c+1 ack=s+1 win=704 len=1334 [trailing bytes after the IP packet]
    kernel's note: no verdict: bad IPv4 header checksum, dropped by ip_rcv before netfilter
> #3 kernel invalid; statewall established/reply (conntrack: established)
    IPv4 198.18.0.2 > 198.18.0.1, 744 bytes
    tcp s>c A seq=s+1 ack=c+1335 win=65535 len=704
