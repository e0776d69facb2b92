# testdata/gre-pptp-callid.pcap — enhanced GRE (version 1, PPTP) over IPv4 and IPv6: each direction carries the peer's call id, so without a PPTP helper the two directions are two connections; call id 0, a header cut short, a protocol other than PPP
# Crafted (no everyday tool sends these), raw IP, one packet a millisecond:
go run ./scripts/craft-sctp-gre -o testdata
# The kernel labels them live in pkg/replay's TestConntrackLabelsEqualKernel;
# internal/oracle/testdata/kernel-labels/gre-pptp-callid.jsonl keeps its answers.
# #0 v1 to the server, call id 0x4001: new
# #1 v1 to the client, call id 0x8002: new (another tuple)
# #2 v1 to the server again: new (never a reply)
# #3 v1 acknowledgement to the client: new
# #4 v1 to the server, call id 0x4003: new (a third tuple)
# #5 v1 carrying IPv4 instead of PPP: invalid
# #6 v1, call id 0: new
# #7 v1 back, call id 0: established
# #8 v0 back: established (the same tuple as call id 0)
# #9 v1 cut to 6 bytes (no call id): established, key 0
# #10 v1 cut to 6 bytes with another protocol: established, key 0
# #11 v1 over IPv6, call id 0x0101: new
# #12 v1 over IPv6 back, call id 0x0202: new
# #13 v1 over IPv6 again: new
# #14 ICMP unreachable from the server quoting the client's v1 packet, call id 0x4001: related
# #15 ICMP unreachable quoting a v1 packet of call id 0x4002, unknown: invalid
# #16 ICMP unreachable quoting a v1 packet carrying IPv4, not PPP: invalid
# #17 ICMP unreachable quoting the v0 packet (key 0): related
