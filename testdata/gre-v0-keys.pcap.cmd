# testdata/gre-v0-keys.pcap — plain GRE (version 0) over IPv4 and IPv6 with different keys in each direction, GRE of versions 2 and 7, and GRE headers shorter than 4 bytes
# Crafted (no everyday tool sends these), raw IP, one packet a millisecond:
go run ./scripts/craft-sctp-gre -o testdata
# The kernel labels them live in pkg/replay's TestConntrackLabelsEqualKernel;
# internal/oracle/testdata/kernel-labels/gre-v0-keys.jsonl keeps its answers.
# #0 GRE v0, key 1, IPv4 inside: new
# #1 GRE v0 back, key 2: established (the key is not in the tuple)
# #2 GRE v0, no key: established
# #3 GRE version 2: the same tuple
# #4 GRE version 7: the same tuple
# #5 GRE of 2 bytes: the same tuple
# #6 GRE v0 over IPv6, key 7: new
# #7 GRE v0 over IPv6 back, key 8: established
# #8 GRE of 0 bytes over IPv6, another pair of addresses: new
