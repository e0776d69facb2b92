// Package pcaprewrite rewrites a packet capture's IP addresses into the test
// ranges 198.18.0.0/15 and fd00:198:18::/64, so that the packets can be put
// on an interface (the kernel oracle injects them into a network namespace)
// without any address from outside those ranges ever appearing there.
//
// # Mapping
//
// A Mapper gives each distinct original address its own new address, in order
// of first appearance in the capture (and within a packet: source,
// destination, then addresses further in). IPv4 gets 198.18.0.1, 198.18.0.2,
// ... 198.18.0.254, 198.18.1.1, ... then 198.19.x.y (a last octet of 0 or 255
// is never used; 198.19.255.0/24 is reserved for tools). IPv6 gets
// fd00:198:18::1, ::2, ... (fd00:198:18:0:ffff::/80 is reserved). The map is
// one-to-one, so equal addresses stay equal and distinct ones stay distinct:
// everything conntrack keys on is preserved.
//
// Every address is mapped, special ones included: 0.0.0.0 and ::,
// 255.255.255.255 and other broadcasts, 224.0.0.0/4 and ff00::/8 multicast,
// fe80::/10 link-local, ::1 and 127.0.0.0/8 loopback, IPv4-mapped IPv6. They
// lose their special meaning (a multicast destination becomes a unicast
// one), which is deliberate: they would otherwise be outside addresses, and
// conntrack does not care. Its only address-independent special case that
// matters here, ICMPv6 neighbour discovery and MLD being "untracked", depends
// on the ICMPv6 type, which is kept.
//
// # What is rewritten
//
//   - IPv4 source and destination, and the addresses in the record-route,
//     loose/strict source-route and timestamp options;
//   - IPv6 source and destination, routing-header addresses (types 0, 2 and
//     4) and the home-address destination option;
//   - packets quoted in ICMP errors (types 3, 4, 5, 11, 12) and ICMPv6 errors
//     (types 1-4) and in the ND redirected-header option, recursively, with
//     the quoted IPv4 header checksum and quoted TCP/UDP/ICMPv6 checksum
//     adjusted as far as the quote reaches; the ICMP redirect gateway and
//     ICMP router-advertisement addresses;
//   - addresses in ICMPv6 ND (NS/NA/redirect targets, prefix-information,
//     route-information and RDNSS options) and MLD/IGMP (group and source
//     addresses of every version): a prefix is mapped like an address with
//     zero host bits;
//   - packets tunnelled in IPv4/IPv6-in-IP (protocols 4 and 41) and GRE
//     (GREv0 carrying IPv4, IPv6 or Ethernet-bridged IP; enhanced GRE v1 with
//     PPP-framed IP as PPTP uses), recursively. Only the outer addresses
//     matter to conntrack; the inner ones are rewritten too so that no
//     outside address is carried, and inner checksums stay as valid as they
//     were. GRE routing (the obsolete R bit) is left alone.
//
// Application payload (DNS answers, SDP, routing protocol updates such as
// EIGRP or OSPF) and UDP-encapsulated tunnels (VXLAN, GTP, Teredo) are not
// addresses in the IP sense and are not rewritten.
//
// # Checksums
//
// Every checksum is updated incrementally (RFC 1624, HC' = ~(~HC + ~m + m'))
// over what changed: IPv4 header checksums, the pseudo-header part of
// TCP/UDP/UDP-Lite/DCCP/ICMPv6 (and IPv6 PIM/OSPFv3) checksums, and the
// quoted or tunnelled bytes inside ICMP/ICMPv6/IGMP/GRE checksums. A checksum
// that was wrong by d stays wrong by d, so a bad checksum stays bad and a good
// one stays good; that matters because conntrack labels a TCP/UDP/ICMP packet
// with a bad checksum invalid. A UDP checksum of 0 ("none") is kept as 0. For
// fragments the transport checksum lives in whichever fragment holds its
// bytes (usually the first, but ipv4-frag-tcp-syn splits the TCP header over
// three 8-byte fragments), and only the pseudo-header delta is applied, which
// is exact because the rest of the datagram does not change. As a safety net
// Rewrite compares each unfragmented packet's checksum validity before and
// after and, if it ever differed, restores it (recompute, then corrupt if it
// was bad) and adds a Note; the tests check that this never happens.
//
// # Link layers and skipped packets
//
// Link types 0 (BSD loopback), 1 (Ethernet, with any number of 802.1Q/802.1ad
// tags, LLC/SNAP and PPPoE session framing), 12/14/101 (raw IP), 108
// (OpenBSD loopback), 113 and 276 (Linux cooked v1/v2), 228 and 229 (raw
// IPv4/IPv6), in pcap and pcapng files. Packet.Data starts at the IP header:
// link-layer headers and VLAN tags are stripped and Ethernet padding after
// the IP total length is cut off.
//
// Packets that cannot be injected keep their index and get a Skip reason
// instead of Data: frames that carry no IP (ARP, MPLS-labelled frames, 802.3
// LLC such as IS-IS, Ethernet loopback...: a Linux host would not run IP
// conntrack on them either), captures truncated below the IP length (the
// packet that was on the wire cannot be reproduced), and IPv4 headers too
// broken to rewrite (IHL < 5 or a total length below the header length; the
// kernel drops those in ip_rcv before netfilter anyway).
package pcaprewrite
