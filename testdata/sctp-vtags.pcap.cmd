# testdata/sctp-vtags.pcap — SCTP associations over IPv4 through their states (INIT, INIT ACK, COOKIE ECHO, COOKIE ACK, DATA, HEARTBEAT, SHUTDOWN, SHUTDOWN ACK, SHUTDOWN COMPLETE, a restart, ABORT) with right and wrong verification tags
# Crafted (no everyday tool sends these), raw IP, one packet a millisecond:
go run ./scripts/craft-sctp-gre -o testdata
# The kernel labels them live in pkg/replay's TestConntrackLabelsEqualKernel;
# internal/oracle/testdata/kernel-labels/sctp-vtags.jsonl keeps its answers.
# #0 A: INIT, vtag 0, initiate tag 0x11111111
# #1 A: INIT ACK, vtag 0x11111111, initiate tag 0x22222222
# #2 A: COOKIE ECHO, vtag 0x22222222
# #3 A: COOKIE ACK, vtag 0x11111111: ESTABLISHED
# #4 A: DATA, right vtag
# #5 A: SACK from the server, right vtag
# #6 A: DATA with a wrong vtag from the client: invalid
# #7 A: DATA from the server with the client's vtag: invalid
# #8 A: DATA from the server, right vtag
# #9 A: HEARTBEAT, right vtag
# #10 A: HEARTBEAT ACK, right vtag
# #11 A: HEARTBEAT with a new vtag (another path): accepted, vtag check failed noted, timer not refreshed
# #12 A: HEARTBEAT ACK from the server with a new vtag: the tags of both directions are replaced
# #13 A: DATA with the client's old vtag: its tag is now unknown (0): invalid
# #14 A: HEARTBEAT with the client's vtag: learnt again
# #15 A: DATA, right vtag again
# #16 A: DATA from the server with its new vtag
# #17 A: DATA from the server with its old vtag: invalid
# #18 A: SHUTDOWN: SHUTDOWN_SENT
# #19 A: SHUTDOWN ACK from the server: SHUTDOWN_ACK_SENT
# #20 A: SHUTDOWN COMPLETE with a wrong vtag: invalid
# #21 A: SHUTDOWN COMPLETE, right vtag: CLOSED
# #22 A: DATA after CLOSED, right vtag: no state change
# #23 A: INIT again on the CLOSED association (restart): CLOSED, timer not refreshed
# #24 A: INIT ACK, vtag the new initiate tag: COOKIE_WAIT
# #25 A: COOKIE ECHO with the old vtag: invalid
# #26 A: COOKIE ECHO, new vtag: COOKIE_ECHOED
# #27 A: COOKIE ACK with the old vtag: invalid
# #28 A: COOKIE ACK, new vtag: ESTABLISHED
# #29 A: DATA, new vtag
# #30 B: INIT, vtag 0, initiate tag 0xa0a0a0a
# #31 B: INIT ACK, vtag 0xa0a0a0a, initiate tag 0xb0b0b0b
# #32 B: COOKIE ECHO bundled with DATA, vtag 0xb0b0b0b
# #33 B: COOKIE ACK, vtag 0xa0a0a0a: ESTABLISHED
# #34 B: ABORT without T, the peer's vtag: invalid
# #35 B: ABORT with T, its own vtag: invalid
# #36 B: ABORT with T, the peer's vtag reflected: CLOSED
# #37 B: DATA after the ABORT, right vtag
# #38 C: INIT, vtag 0, initiate tag 0xc0c0c0c
# #39 C: INIT ACK, vtag 0xc0c0c0c, initiate tag 0xd0d0d0d
# #40 C: COOKIE ECHO, vtag 0xd0d0d0d
# #41 C: COOKIE ACK, vtag 0xc0c0c0c: ESTABLISHED
# #42 C: SHUTDOWN from the server: SHUTDOWN_RECD
# #43 C: SHUTDOWN ACK from the client: SHUTDOWN_ACK_SENT
# #44 C: SHUTDOWN COMPLETE from the server with T, the client's vtag reflected: CLOSED
# #45 D: INIT from the client
# #46 D: INIT from the server (collision)
# #47 D: INIT ACK from the client with another initiate tag: invalid
# #48 D: INIT ACK from the client with its INIT's tag
# #49 D: INIT ACK from the server with its INIT's tag: COOKIE_WAIT
# #50 D: COOKIE ECHO from the client
# #51 D: COOKIE ACK from the server: ESTABLISHED
# #52 E: INIT
# #53 E: INIT ACK with a vtag other than the INIT's tag: invalid
# #54 E: INIT retransmitted: no refresh
# #55 E: INIT ACK, right vtag
# #56 E: INIT ACK again with another initiate tag
# #57 E: COOKIE ECHO with the first INIT ACK's tag: invalid
# #58 E: COOKIE ECHO with the second INIT ACK's tag
