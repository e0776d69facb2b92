# testdata/parity-ipv6-odd-chains.pcap — IPv6 header chains the kernel's parser takes its own way: a destination options header longer than the packet before UDP (invalid: no ports to read) and before GRE (tracked by addresses)
# Crafted (no tool sends these), raw IP, one packet a millisecond:
go run ./scripts/craft-parity -o testdata
# The kernel labels them live in pkg/replay's TestConntrackLabelsEqualKernel.
# #0 destination options longer than the packet
# #1 GRE behind destination options longer than the packet
