// Package reject answers a packet that a rule blocked, as pf's
// "block return", "return-rst" and "return-icmp" do and as the kernel's
// REJECT target does: it crafts the answer (AppendRST, AppendICMP, or
// Reply, which picks one the way pf does) into a caller's buffer, and a
// Sender sends it through raw sockets.
//
//	s, err := reject.Open(reject.Config{NetnsName: ns, Mark: 0x5157})
//	...
//	buf := make([]byte, 0, reject.MaxLen) // one per worker
//	// in the NFQUEUE handler, for a packet a "block return" rule blocked:
//	if b, ok := reject.Reply{Kind: reject.Return}.AppendPacket(buf[:0], &decoded); ok {
//		s.SendIf(b, p.InDev)
//	}
//	return nfq.Drop
//
// # What is sent
//
// TCP (Return, ReturnRST): a RST as nf_send_reset and nf_send_reset6 build
// it: from the blocked segment's destination address and port to its
// source; RST with the sequence number the segment acknowledged if it had
// ACK, else RST|ACK acknowledging its sequence number plus SYN, FIN and
// its payload (counted from the IP header, so a copy that NFQUEUE cut
// short is answered right). IPv4 with DF and TTL 64, IPv6 with hop limit
// 64. A client then sees "connection refused" at once instead of waiting
// for its connect to time out.
//
// Everything else (Return), and every protocol with ReturnICMP: an ICMP
// destination unreachable (type 3) or ICMPv6 destination unreachable
// (type 1), from the blocked packet's destination to its source, quoting
// the packet from its IP header as icmp_send and icmp6_send do: at most
// 548 bytes for IPv4 (the answer fits 576 bytes, RFC 1812) and 1232 for
// IPv6 (it fits the minimum MTU, 1280, RFC 4443). The code is one of pf's
// (Code, ParseCode): port-unr by default, as in pf; net-unr, host-unr,
// proto-unr, net-prohib, host-prohib, filter-prohib for IPv4; noroute-unr,
// admin-unr, addr-unr for IPv6. A UDP client sees "connection refused"
// for port-unr; Linux turns filter-prohib into "no route to host" and
// admin-unr into "permission denied".
//
// TestKernelDifferential checks the answers byte for byte against the
// kernel's REJECT answers to the same packets.
//
// # What is never answered
//
// A RST never answers a RST (two firewalls would answer each other
// forever), nor a fragment: only a whole segment has the sequence space
// the RST must acknowledge (the kernel's checksum check refuses
// fragments; the daemon reassembles before it decides anyway).
//
// No ICMP error answers an ICMP error (RFC 1122 3.2.2, RFC 4443 2.4 (e):
// two hosts would answer each other's errors forever; the kernel also
// leaves out ICMP types it does not know, above 18), nor a non-first
// fragment (it quotes no transport header the sender could match).
//
// Neither answers a packet to a multicast or broadcast address, nor from
// an unspecified, multicast or broadcast one: one packet would draw
// answers from every host that saw it, at a victim whose address it
// forged (RFC 1122 3.2.2, RFC 1812 4.3.2.7). The kernel knows a subnet's
// broadcast address from its routes; a packet alone does not, so a
// daemon that blocks broadcast traffic should not ask for an answer to it
// (pf answers such rules with nothing either).
//
// Unlike the kernel, the crafting functions do not verify the blocked
// packet's checksum: NFQUEUE may copy only the start of a packet, and a
// packet sent by a local socket carries a partial checksum. A caller that
// wants that check calls (*packet.Packet).L4ChecksumOK when the checksum
// is ready.
//
// # Sending
//
// A Sender has two raw sockets, IPv4 (IPPROTO_RAW, IP_HDRINCL) and IPv6
// (IPPROTO_RAW, which implies the header is included), made in
// Config.NetnsName: the kernel routes each answer by its destination in
// that namespace, so it leaves by the interface that leads back to the
// blocked packet's source, like any packet the host sends. Send never
// waits: the sockets do not block, and an answer the kernel has no room
// for is dropped and counted. It allocates nothing.
//
// The answers are rate-limited, Config.Rate a second with bursts of
// Config.Burst (1000/s and 100 by default), as the kernel limits its ICMP
// errors and pf its return-icmp: blocked traffic from forged sources
// must not become as much traffic back at them. Stats counts what was
// sent, limited, dropped and failed.
//
// # The output hook, and Config.Mark
//
// An answer leaves through the netfilter output hook. A daemon that
// diverts that hook to NFQUEUE would be handed its own RSTs and ICMP
// errors to decide (and a rule that blocks them with return could answer
// its own answers). Config.Mark sets SO_MARK on the sockets so that every
// answer carries the mark; the divert rules must let marked packets pass
// undiverted: nfq.DivertConfig.SkipMark set to the same value does that
// ("-m mark --mark M/M -j RETURN" before the NFQUEUE rule). TestLive
// checks that marked answers never reach a queue that diverts unmarked
// RSTs and ICMP errors at the output hook.
package reject
