# testdata/parity-icmp-short-quote.pcap — a UDP flow over IPv4, then port-unreachable errors from the server quoting the client's datagram with only the 4 bytes of ports, with all 8 bytes, and with the quoted IPv4 header's version nibble set to 5
# Crafted (no tool sends these), raw IP, one packet a millisecond:
go run ./scripts/craft-parity -o testdata
# The kernel labels them live in pkg/replay's TestConntrackLabelsEqualKernel.
# #0 UDP query
# #1 port unreachable quoting IPv4 header + 4 bytes
# #2 port unreachable quoting IPv4 header + 8 bytes
# #3 port unreachable quoting a header with version 5
