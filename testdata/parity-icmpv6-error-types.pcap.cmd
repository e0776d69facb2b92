# testdata/parity-icmpv6-error-types.pcap — a UDP flow over IPv6, then ICMPv6 messages of types 0, 1, 5, 100 and 127 from the server quoting the client's datagram, and a Redirect from a router whose Redirected Header quotes it
# Crafted (no tool sends these), raw IP, one packet a millisecond:
go run ./scripts/craft-parity -o testdata
# The kernel labels them live in pkg/replay's TestConntrackLabelsEqualKernel.
# #0 UDP query
# #1 ICMPv6 type 0 quoting the query
# #2 ICMPv6 type 1 quoting the query
# #3 ICMPv6 type 5 quoting the query
# #4 ICMPv6 type 100 quoting the query
# #5 ICMPv6 type 127 quoting the query
# #6 Redirect quoting the query in a Redirected Header
