// Package pflog logs the packets that "log" rules decide in pf's log
// format: a pcap capture of link type PFLOG (117), which tcpdump and
// Wireshark read as they read pflogd's files on the BSDs:
//
//	tcpdump -n -e -r /var/log/statewall/pflog
//	rule 3/0(match): block in on eth1: 198.18.1.2.40000 > 198.18.2.2.80: Flags [S], ...
//
// -e makes tcpdump print the pflog header (rule, reason, action, direction,
// interface); without it only the packet is printed. A live feed works the
// same way: the daemon relays a Subscription and the client runs
// "tcpdump -n -e -r -".
//
// # Format
//
// A classic pcap file (little-endian, version 2.4, microsecond timestamps,
// snap length 65535, link type 117). Each record is a pflog header and the
// packet from its IP header on. The header is struct pfloghdr as tcpdump's
// print-pflog.c reads it, multi-byte fields big-endian:
//
//	off len field
//	  0   1 length     61: the NetBSD/Darwin layout (PFLOG_REAL_HDRLEN)
//	  1   1 af         2 for IPv4, 24 for IPv6 (BSD values, see below)
//	  2   1 action     0 pass, 1 block (PF_PASS, PF_DROP)
//	  3   1 reason     0 match (PFRES_MATCH); 1..14 as on every BSD
//	  4  16 ifname     NUL-terminated
//	 20  16 ruleset    empty (no anchors)
//	 36   4 rulenr     the rule's number
//	 40   4 subrulenr  0xffffffff: no anchor, so tcpdump prints "rule 3/"
//	 44   4 uid        0xffffffff: unknown, not printed
//	 48   4 pid        -1
//	 52   4 rule_uid   0xffffffff
//	 56   4 rule_pid   -1
//	 60   1 dir        1 in, 2 out (PF_IN, PF_OUT)
//	 61   3 pad        zero: readers round the length up to 4 (BPF_WORDALIGN)
//
// so the packet starts 64 bytes into the record. Length 61 is the value
// every tcpdump since 4.99.0 parses: 4.99.0 to 4.99.4 want at least 45,
// 4.99.5 and 4.99.6 at least 61, and the development branch 61 to 100,
// picking the BSD by it (69 FreeBSD, 100 OpenBSD, 61 the others; with 61
// it prints uid unless it is 0xffffffff or 0x7fffffff). The printed
// "rule 3/0(match)" is rulenr, a slash, then the reason as "number(name)".
//
// The address family is a BSD AF_ value because pflog is a BSD format:
// tcpdump accepts 2 for IPv4 and 24, 28 or 30 (NetBSD/OpenBSD, FreeBSD,
// Darwin) for IPv6, and prints Linux's AF_INET6 (10) as raw bytes. One
// wrinkle: libpcap on Linux compiles the filter "ip6" on a pflog capture
// into a test for its own AF_INET6, 10 (tcpdump -d shows "ldb [1]; jeq
// #0xa"), so "tcpdump -r FILE ip6", and any IPv6 host filter, matches
// nothing. "ip" and IPv4 host and port filters work (AF_INET is 2
// everywhere); "not ip" selects the IPv6 records.
//
// tcpdump 4.99.0 to 4.99.4 have a typo in their reason table that prints
// reason 4 as "3(short)" and reason 3 as "unkn(3)"; the "log" keyword only
// ever logs reason 0, which every version prints as "0(match)".
//
// # Logging without blocking
//
// Logger.Log is called on the packet path. It copies the record and the
// first SnapLen bytes of the packet into a preallocated ring and returns:
// no allocation and no waiting, one CAS on the ring's tail (and, for the
// first record after a quiet spell, a channel send that wakes the writer).
// A single goroutine drains the ring to the file and to subscribers. When
// the ring is full (the disk or the writer cannot keep up) Log drops the
// record and counts it in Stats.Dropped: the firewall never waits for its
// log. A subscriber that reads too slowly loses records from its own
// buffer, counted per subscriber and in Stats.SubscriberDrops, without
// slowing anything else.
//
// # Files
//
// With Config.Path set, records go to that file, created 0600 in a
// directory created 0700 if missing. When a record would take it past
// MaxSize, FILE becomes FILE.1 (FILE.1 becomes FILE.2, ...; at most Keep
// old files) and a new FILE starts with its own pcap header, so every file
// is complete on its own. A FILE left by an earlier run is rotated aside
// at start, not overwritten.
//
// # Defaults
//
// The zero Config means: no file (subscribers only), SnapLen 160 packet
// bytes, a ring of 4096 records, MaxSize 16 MiB, Keep 4, 256 KiB per
// subscriber. See the Default* constants for why.
//
// # Reading
//
// Reader reads such a capture (a file, a Subscription, or a pflogd file
// from a BSD) back into Records, and Format prints one as a line like
// tcpdump's, for the CLI and for tests.
package pflog
