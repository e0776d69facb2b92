# testdata/kerneldiff/tcp-syn-rst-resync.pcap: a disagreement with the kernel's conntrack, minimized (was seed-5649.pcap)
#
# A SYN, a SYN+ACK that acknowledges another ISN (the generator sent a first
# SYN with another ISN, which the minimization dropped), a RST from the SYN's
# sender far from the window, then data from the same side. The kernel labels
# the RST established and then the data invalid (the RST closed the entry);
# statewall keeps the connection open and labels the data established. The
# kernel's bookkeeping of the SYN it resynchronises on (last_index, last_end,
# td_maxack) decides how it treats the RST; statewall does not follow it
# there.
#
# Found by the differential test (internal/kerneldiff, conversations from internal/convgen):
#   make fuzz-kernel SEEDS=5649 GATES=tcp-syn-rst
# which generated seed 5649 and found, in its batch, #5: kernel invalid, statewall established/original (conntrack: established);
# Minimize then shrank it against the kernel oracle (oracle.Options.KeepAddresses) to 4 packets in 24 runs.
# date:   2026-12-07T14:07:03Z
# kernel: Linux 6.18.44-fc-v1300
# go:     go1.26.8
#
# Packets: the kernel's label, statewall's (stateful replay, rules/default-pass.rules), the generator's note.
# '>' marks the packet the minimization kept disagreeing.
  #0 kernel new/original; statewall new/original (default)
    IPv6 fd00:198:18::1:0:1 > fd00:198:18::1:0:0, 68 bytes
    tcp s>c S seq=1865071927 ack=0 win=54130 len=0 opts=mss,ws8 [SYN again with another ISN]
  #1 kernel established/reply; statewall established/reply (conntrack: established)
    IPv6 fd00:198:18::1:0:0 > fd00:198:18::1:0:1, 72 bytes
    tcp c>s SA seq=c+0 ack=s+1 win=19118 len=0 opts=mss,sackOK,ws4
  #2 kernel established/original; statewall established/original (conntrack: established)
    IPv6 fd00:198:18::1:0:1 > fd00:198:18::1:0:0, 60 bytes
    tcp s>c R seq=s+305889 ack=0 win=54130 len=0 [RST at or just past the window edge]
> #3 kernel invalid; statewall established/original (conntrack: established)
    IPv6 fd00:198:18::1:0:1 > fd00:198:18::1:0:0, 756 bytes
    tcp s>c A seq=s+1 ack=c+1 win=54130 len=696
