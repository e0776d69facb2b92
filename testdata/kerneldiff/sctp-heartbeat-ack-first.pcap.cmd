# testdata/kerneldiff/sctp-heartbeat-ack-first.pcap: a disagreement with the kernel's conntrack, minimized (was seed-23.pcap)
#
# An SCTP HEARTBEAT ACK opens an entry (new), then a HEARTBEAT ACK comes back
# with another verification tag. The kernel labels it established (the
# heartbeat chunks set the tag of their direction when it is unknown);
# statewall: invalid, wrong verification tag.
#
# Found by the differential test (internal/kerneldiff, conversations from internal/convgen):
#   make fuzz-kernel SEEDS=23 GATES=sctp
# which generated seed 23 and found, in its batch, #8: kernel established/reply, statewall invalid (conntrack: invalid (wrong SCTP verification tag));
# Minimize then shrank it against the kernel oracle (oracle.Options.KeepAddresses) to 2 packets in 7 runs.
# date:   2026-12-07T14:07:05Z
# kernel: Linux 6.18.44-fc-v1300
# go:     go1.26.8
#
# Packets: the kernel's label, statewall's (stateful replay, rules/default-pass.rules), the generator's note.
# '>' marks the packet the minimization kept disagreeing.
  #0 kernel new/original; statewall new/original (default)
    IPv6 fd00:198:18::1:0:0 > fd00:198:18::1:0:1, 64 bytes
    sctp c>s vtag=0x67f9fe19 [HEARTBEAT_ACK]
> #1 kernel established/reply; statewall invalid (conntrack: invalid (wrong SCTP verification tag))
    IPv6 fd00:198:18::1:0:1 > fd00:198:18::1:0:0, 64 bytes
    sctp s>c vtag=0x338ab49d [HEARTBEAT_ACK]
