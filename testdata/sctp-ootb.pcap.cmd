# testdata/sctp-ootb.pcap — SCTP packets with no association: chunks that may not start one (ABORT, SHUTDOWN COMPLETE, COOKIE ACK, DATA, SACK, an unknown type, an INIT with a vtag), and those that may (COOKIE ECHO, SHUTDOWN ACK, HEARTBEAT, ERROR, SHUTDOWN, INIT ACK), with their answers
# Crafted (no everyday tool sends these), raw IP, one packet a millisecond:
go run ./scripts/craft-sctp-gre -o testdata
# The kernel labels them live in pkg/replay's TestConntrackLabelsEqualKernel;
# internal/oracle/testdata/kernel-labels/sctp-ootb.jsonl keeps its answers.
# #0 ABORT: invalid
# #1 ABORT with T: invalid
# #2 SHUTDOWN COMPLETE: invalid
# #3 COOKIE ACK: invalid
# #4 DATA: invalid
# #5 SACK: invalid
# #6 FORWARD TSN (an unknown type to conntrack): invalid
# #7 INIT with a non-zero vtag: invalid
# #8 INIT whose chunk has no room for its header: invalid
# #9 HEARTBEAT bundled with DATA: invalid
# #10 INIT, vtag 0: new
# #11 COOKIE ECHO with a vtag: invalid
# #12 COOKIE ECHO with vtag 0: new
# #13 COOKIE ACK answering it, vtag 0
# #14 DATA, vtag 0
# #15 SHUTDOWN ACK: new, SHUTDOWN_ACK_SENT
# #16 SHUTDOWN COMPLETE with T answering it, the vtag reflected: invalid (the kernel expects 0 back)
# #17 SHUTDOWN COMPLETE without T, the same vtag
# #18 SHUTDOWN ACK: new
# #19 SHUTDOWN COMPLETE with T and vtag 0
# #20 HEARTBEAT: new, HEARTBEAT_SENT (a path of an association seen elsewhere)
# #21 HEARTBEAT again, same vtag
# #22 HEARTBEAT ACK answering it: ESTABLISHED
# #23 DATA with the HEARTBEAT's vtag
# #24 DATA from the server with the HEARTBEAT ACK's vtag
# #25 DATA from the server with another vtag: invalid
# #26 HEARTBEAT: new
# #27 HEARTBEAT from the other side
# #28 HEARTBEAT ACK from the client
# #29 ERROR with a vtag: invalid
# #30 ERROR with vtag 0: new, CLOSED
# #31 ABORT answering it with T, vtag 0
# #32 SHUTDOWN with a vtag: invalid
# #33 SHUTDOWN with vtag 0: new
# #34 INIT ACK with a vtag: invalid
# #35 INIT ACK with vtag 0: new
# #36 COOKIE ECHO answering it with its initiate tag
# #37 INIT from the server side first (the kernel does not know who is the client): new
# #38 INIT ACK from the client
# #39 INIT from the client on the same ports: a reply-direction INIT in COOKIE_WAIT
