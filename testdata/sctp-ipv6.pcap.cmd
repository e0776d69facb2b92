# testdata/sctp-ipv6.pcap — an SCTP association over IPv6: handshake, DATA with right and wrong verification tags, SHUTDOWN
# Crafted (no everyday tool sends these), raw IP, one packet a millisecond:
go run ./scripts/craft-sctp-gre -o testdata
# The kernel labels them live in pkg/replay's TestConntrackLabelsEqualKernel;
# internal/oracle/testdata/kernel-labels/sctp-ipv6.jsonl keeps its answers.
# #0 v6: INIT, vtag 0, initiate tag 0xa1a1a1a1
# #1 v6: INIT ACK, vtag 0xa1a1a1a1, initiate tag 0xb2b2b2b2
# #2 v6: COOKIE ECHO, vtag 0xb2b2b2b2
# #3 v6: COOKIE ACK, vtag 0xa1a1a1a1: ESTABLISHED
# #4 v6: DATA
# #5 v6: SACK
# #6 v6: DATA with a wrong vtag: invalid
# #7 v6: SHUTDOWN
# #8 v6: SHUTDOWN ACK
# #9 v6: SHUTDOWN COMPLETE: CLOSED
