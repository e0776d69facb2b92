# testdata/kerneldiff/tcp-syn-rst-open.pcap: a disagreement with the kernel's conntrack, minimized (was seed-30097.pcap)
#
# A SYN (with ECE and CWR), data from the other side without a SYN+ACK,
# the same side's SYN again one sequence number on, then a RST+ACK from it
# inside the window. The kernel labels the RST invalid, statewall
# established. Like tcp-syn-rst-resync.pcap: RSTs around a SYN the kernel
# ignores or resynchronises on.
#
# Found by the differential test (internal/kerneldiff, conversations from internal/convgen):
#   make fuzz-kernel SEEDS=30097 GATES=tcp-syn-rst
# which generated seed 30097 and found, in its batch, #12: kernel invalid, statewall established/original (conntrack: established);
# Minimize then shrank it against the kernel oracle (oracle.Options.KeepAddresses) to 4 packets in 39 runs.
# date:   2026-12-07T14:07:04Z
# kernel: Linux 6.18.44-fc-v1300
# go:     go1.26.8
#
# Packets: the kernel's label, statewall's (stateful replay, rules/default-pass.rules), the generator's note.
# '>' marks the packet the minimization kept disagreeing.
  #0 kernel new/original; statewall new/original (default)
    IPv4 198.18.0.1 > 198.18.0.2, 48 bytes
    tcp c>s SEW seq=c+0 ack=0 win=65535 len=0 opts=mss,sackOK
  #1 kernel established/reply; statewall established/reply (conntrack: established)
    IPv4 198.18.0.2 > 198.18.0.1, 571 bytes
    tcp s>c PA seq=s+1444 ack=c+1 win=35448 len=531
  #2 kernel established/original; statewall established/original (conntrack: established)
    IPv4 198.18.0.1 > 198.18.0.2, 48 bytes
    tcp c>s S seq=c+1 ack=0 win=65535 len=0 opts=mss,ws4 [SYN in an open connection]
> #3 kernel invalid; statewall established/original (conntrack: established)
    IPv4 198.18.0.1 > 198.18.0.2, 40 bytes
    tcp c>s RA seq=c+13632 ack=s+1975 win=65535 len=0 [RST inside the window, not exact]
