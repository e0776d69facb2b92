# testdata/parity-ipv6-no-next-header.pcap — IPv6 packets whose next header is 59 (no next header), bare and behind a destination options header, each sent twice
# Crafted (no tool sends these), raw IP, one packet a millisecond:
go run ./scripts/craft-parity -o testdata
# The kernel labels them live in pkg/replay's TestConntrackLabelsEqualKernel.
# #0 no next header
# #1 no next header again
# #2 destination options, then no next header
# #3 the same again
