#!/usr/bin/env python3
"""icmperr.py — send one crafted ICMP/ICMPv6 error that quotes a packet.

Used by scripts/make-attack-captures.sh (inside the client namespace) to
forge ICMP errors about flows that never existed. Standard library only.

  icmperr.py --src S --dst D --type T --code C [--mtu N] \
             --quote PROTO:QSRC:QSPORT:QDST:QDPORT [--seq N] [--count N]

The quoted packet is a complete, checksum-correct IPv4/IPv6 header plus a
full TCP (20 bytes, ACK|PSH, given seq) or UDP (8 bytes) header and 16
payload bytes, as a real router or host would quote it. The outer packet is
sent through a raw socket bound to S, so the kernel adds the outer IP header
(and, for ICMPv6, the checksum). The address family follows S/D. Only
198.18.0.0/15 and fd00:198:18::/64 addresses are accepted.
"""
import argparse
import ipaddress
import socket
import struct
import sys
import time

ALLOWED = [ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("fd00:198:18::/64")]
PAYLOAD = b"statewall-forged"  # 16 bytes


def checked(addr):
    a = ipaddress.ip_address(addr)
    if not any(a in n for n in ALLOWED if n.version == a.version):
        sys.exit(f"icmperr.py: {addr} is outside 198.18.0.0/15 and fd00:198:18::/64")
    return a


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def transport(proto, src, sport, dst, dport, seq):
    if src.version == 4:
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, proto, 0)
    else:
        pseudo = src.packed + dst.packed + struct.pack("!I3xB", 0, proto)
    if proto == socket.IPPROTO_TCP:
        hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, 1, 5 << 4, 0x18, 502, 0, 0)
    else:
        hdr = struct.pack("!HHHH", sport, dport, 8 + len(PAYLOAD), 0)
    seg = hdr + PAYLOAD
    if src.version == 4:
        pseudo = pseudo[:10] + struct.pack("!H", len(seg))
    else:
        pseudo = pseudo[:32] + struct.pack("!I3xB", len(seg), proto)
    c = csum(pseudo + seg)
    off = 16 if proto == socket.IPPROTO_TCP else 6
    return seg[:off] + struct.pack("!H", c) + seg[off + 2:]


def inner_packet(proto, src, sport, dst, dport, seq):
    seg = transport(proto, src, sport, dst, dport, seq)
    if src.version == 4:
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 0x1234, 0x4000, 64, proto, 0,
                          src.packed, dst.packed)
        hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    else:
        hdr = struct.pack("!IHBB16s16s", 6 << 28, len(seg), proto, 64, src.packed, dst.packed)
    return hdr + seg


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", required=True)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--type", type=int, required=True)
    ap.add_argument("--code", type=int, required=True)
    ap.add_argument("--mtu", type=int, default=0, help="next-hop MTU (v4 frag-needed) / MTU (v6 packet too big)")
    ap.add_argument("--quote", required=True, help="tcp|udp:QSRC:QSPORT:QDST:QDPORT (IPv6 in [brackets])")
    ap.add_argument("--seq", type=int, default=0x5EED5EED, help="TCP seq of the quoted segment")
    ap.add_argument("--count", type=int, default=1)
    a = ap.parse_args()

    src, dst = checked(a.src), checked(a.dst)
    proto_s, rest = a.quote.split(":", 1)
    proto = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}[proto_s]
    if rest.startswith("["):
        qsrc, rest = rest[1:].split("]:", 1)
        qsport, rest = rest.split(":", 1)
        qdst, qdport = rest[1:].split("]:", 1)
    else:
        qsrc, qsport, qdst, qdport = rest.split(":")
    qsrc, qdst = checked(qsrc), checked(qdst)
    if not (src.version == dst.version == qsrc.version == qdst.version):
        sys.exit("icmperr.py: mixed address families")
    if not 1 <= a.count <= 10:
        sys.exit("icmperr.py: --count must be 1..10")

    quoted = inner_packet(proto, qsrc, int(qsport), qdst, int(qdport), a.seq)
    if src.version == 4:
        # type/code/cksum + unused(2) + next-hop MTU(2) for frag-needed, else unused(4)
        msg = struct.pack("!BBHHH", a.type, a.code, 0, 0, a.mtu) + quoted
        msg = msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        s.bind((str(src), 0))
        dest = (str(dst), 0)
    else:
        # the kernel fills in the ICMPv6 checksum on raw ICMPv6 sockets
        msg = struct.pack("!BBHI", a.type, a.code, 0, a.mtu) + quoted
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        s.bind((str(src), 0))
        dest = (str(dst), 0, 0, 0)
    for i in range(a.count):
        if i:
            time.sleep(0.1)
        s.sendto(msg, dest)
    s.close()


if __name__ == "__main__":
    main()
