# testdata/sctp-bundling.pcap — SCTP chunks bundled where the kernel allows it and where it does not (COOKIE ECHO, COOKIE ACK not first; INIT, INIT ACK, SHUTDOWN COMPLETE not alone), chunk lengths of 0, 1-3 and beyond the packet, trailing bytes, no chunk at all
# Crafted (no everyday tool sends these), raw IP, one packet a millisecond:
go run ./scripts/craft-sctp-gre -o testdata
# The kernel labels them live in pkg/replay's TestConntrackLabelsEqualKernel;
# internal/oracle/testdata/kernel-labels/sctp-bundling.jsonl keeps its answers.
# #0 INIT bundled with DATA: invalid
# #1 DATA then INIT: invalid
# #2 INIT
# #3 INIT ACK bundled with DATA: invalid
# #4 INIT ACK
# #5 DATA then COOKIE ECHO: invalid
# #6 COOKIE ECHO then DATA
# #7 SACK then COOKIE ACK: invalid
# #8 COOKIE ACK then SACK
# #9 DATA and SACK
# #10 DATA then SHUTDOWN COMPLETE: invalid
# #11 SHUTDOWN COMPLETE then DATA: invalid
# #12 no chunk: invalid
# #13 a chunk of length 0: invalid
# #14 a DATA chunk of length 1
# #15 a DATA chunk of length 3
# #16 a DATA chunk longer than the packet
# #17 DATA then a chunk of length 0: invalid
# #18 DATA, then 3 bytes
# #19 HEARTBEAT then DATA, with a wrong vtag: invalid (a HEARTBEAT's tag may change only alone)
# #20 HEARTBEAT with a wrong vtag bundled with DATA: invalid
# #21 ABORT with a wrong vtag behind DATA: invalid
# #22 DATA then ABORT, right vtag: CLOSED
