# testdata/parity-self-tuple.pcap — tuples equal to their own reverse: a UDP socket sending to its own address and port, and a LAND SYN (198.18.0.1:5000 to itself), then a SYN/ACK and an ACK on the same tuple
# Crafted (no tool sends these), raw IP, one packet a millisecond:
go run ./scripts/craft-parity -o testdata
# The kernel labels them live in pkg/replay's TestConntrackLabelsEqualKernel.
# #0 UDP to itself
# #1 UDP to itself again
# #2 LAND SYN
# #3 SYN/ACK on the same tuple
# #4 ACK on the same tuple
