// Package rules reads statewall rules files and matches packets against
// them: rule text -> tokens -> Ruleset (settings and []Rule, the AST) ->
// compiled matcher. Parse does all of it once; Match then finds the first
// matching rule for a decoded packet without allocating. A Ruleset is
// immutable and safe for concurrent use: to reload, parse a new one and
// swap the pointer.
//
// # Grammar as implemented
//
// A file is UTF-8 text, one statement a line. `#` starts a comment that
// runs to the end of the line. A `\` as the last character of a line joins
// the next line to it; error positions still name the physical line.
// Words are separated by blanks; `{ } , ! = "` and `$name` need none.
//
//	file      = { statement NEWLINE } .
//	statement = setting | define | table | include | rule | antispoof .
//
//	setting   = "set" "default" ( "pass" | "block" )   verdict when no rule matches (block)
//	          | "set" "invalid" ( "pass" | "block" )   stateful: verdict for conntrack-invalid packets (block)
//	          | "set" "local" addrs                    this host's addresses (no negation, no `any`)
//	          | "set" "limit" "states" NUMBER          1..2147483647 (262144)
//	          | "set" "limit" "src-nodes" NUMBER       source nodes of the tracking options (10000)
//	          | "set" "timeout" NAME DURATION .        NAME as in conntrack.TimeoutNames, or src.track (0s)
//
//	define    = "define" NAME "=" term .               NAME: letters, digits, '_', not starting with a digit
//	table     = "table" "<" TNAME ">" [ "persist" ] [ "const" ]
//	            ( "{" [ addrs ] "}" | "file" STRING { "file" STRING } ) .
//	include   = "include" STRING .                     a file of statements, relative to this one
//
//	rule      = ( "pass" | "block" [ return ] ) [ "in" | "out" ] [ log ] [ "on" ifaces ]
//	            [ "inet" | "inet6" ] [ "proto" PROTO ]
//	            [ "all" | [ "from" endpoint ] [ "to" endpoint ] ]
//	            [ "flags" FLAGS ] [ "icmp-type" TYPE [ "code" NUMBER ] ]
//	            [ "no" "state" | "keep" "state" [ opts ] | opts ] [ log ] [ "label" STRING ] .
//	return    = "drop" | "return" | "return-rst"
//	          | "return-icmp" [ "(" CODE [ "," CODE6 ] ")" ] | "return-icmp6" [ "(" CODE6 ")" ] .
//	opts      = "(" opt { "," opt } ")" .
//	opt       = "max" N | "max-src-nodes" N | "max-src-states" N | "max-src-conn" N
//	          | "max-src-conn-rate" N "/" SECONDS | "overload" "<" TNAME ">" [ "flush" [ "global" ] ] .
//	log       = "log" [ "(" "all" ")" ] .              at most once, in either place
//	antispoof = "antispoof" [ "log" ] [ "for" ] ifaces [ "inet" | "inet6" ] [ "label" STRING ] .
//	ifaces    = term .                                 of interface names
//	endpoint  = "any" [ "port" ports ] | addrs [ "port" ports ] | "port" ports .
//	addrs     = term .                                 of addresses and prefixes
//	ports     = term .                                 of ports and ranges
//	term      = ITEM | "$" NAME | "!" term | "{" term { [ "," ] term } "}" .
//
// The parts of a rule must come in the order shown; each at most once.
// Settings and defines may appear anywhere, but a $name must be defined
// before it is used, and each setting (each timeout name) may be set once.
//
// Tokens:
//   - PROTO: tcp, udp, icmp, icmp6 (also ipv6-icmp, icmpv6), sctp, udplite,
//     gre, esp, ah, igmp, ospf, pim, vrrp, or a number 1-255.
//   - Address items: 198.18.0.1, fd00:198:18::1, 198.18.0.0/24. Host bits
//     of a prefix are cleared (198.18.0.5/24 is 198.18.0.0/24); zones are
//     not allowed.
//   - Port items: a number 0-65535, a range LO-HI of numbers, or one of the
//     service names ssh, http, https, domain, smtp, ntp, ... (names.go).
//   - FLAGS: SET/MASK of the letters F S R P A U E W (FIN SYN RST PSH ACK
//     URG ECE CWR), e.g. S/SA; /SA (SET empty); SET alone, which means
//     SET/FSRPAUEW, i.e. exactly those flags and no other (pf requires the
//     mask; we read its absence as "all"); or "any" (no condition).
//   - TYPE: an ICMP type name for the rule's protocol or a number 0-255.
//     Names for icmp: echo-reply 0, dest-unreach 3, source-quench 4,
//     redirect 5, echo-request 8, router-advert 9, router-solicit 10,
//     time-exceeded 11, param-problem 12, timestamp 13, timestamp-reply 14,
//     info-request 15, info-reply 16, mask-request 17, mask-reply 18. For
//     icmp6: dest-unreach 1, packet-too-big 2, time-exceeded 3,
//     param-problem 4, echo-request 128, echo-reply 129, mld-query 130,
//     mld-report 131, mld-done 132, router-solicit 133, router-advert 134,
//     neighbor-solicit 135, neighbor-advert 136, redirect 137,
//     mld2-report 143. pf's and nft's spellings are accepted as aliases.
//   - DURATION: NUMBER UNIT pairs, units d h m s ms, e.g. 30s, 2m, 1h30m,
//     5d; at most 3650d.
//   - STRING: "..." with \" and \\ as the only escapes; no control
//     characters.
//   - TNAME: a table name, up to 31 letters, digits, '_' and '-', written
//     in angle brackets (<blocklist>); a table is used wherever an address
//     may stand, negated or in a list: from ! <bad>, { <a>, 198.18.0.1 }.
//   - CODE: an ICMP unreachable code by pf's name: net-unr, host-unr,
//     proto-unr, port-unr (the default), net-prohib, host-prohib,
//     filter-prohib. CODE6: noroute-unr, admin-unr, addr-unr, port-unr
//     (the default).
//   - IFACE: a Linux interface name, 1-15 characters starting with a
//     letter, without '/', ':' or blanks (eth0, eth0.100, wg0). A ruleset
//     may name at most 63 interfaces (MaxIfaceNames).
//
// A define holds addresses, ports or interface names, never a mix; which
// is decided by its items (a word that is neither an address nor a port
// is an interface name), and using it in another place is an error.
//
// # Meaning
//
// First match wins: Match returns the first rule, in file order, whose
// every condition holds, or nil (then `set default` applies). `quick` is
// not needed and not accepted.
//
//   - in/out: the rule matches only packets the caller says travel in that
//     direction (Dir). Rules without in/out match every direction,
//     including DirUnknown; DirUnknown packets match only those.
//   - Forwarded packets (the daemon's forward hook, replay with
//     --iface-out; DirForward): pf filters a packet it routes twice, and
//     so does statewall: the packet is matched as inbound on the interface
//     it arrived on, and if that passes, as outbound on the one it leaves
//     by; it passes only if both pass (the default applies to each
//     evaluation that no rule matches). In stateful mode the pair makes one
//     connection entry, unless either deciding rule says `no state`, and
//     later packets of the connection pass by state whichever way they
//     go. Without any in, out or on in the ruleset, both evaluations are
//     the same and one is made.
//   - on IFACES: the rule matches only packets on those interfaces: the
//     input interface when inbound, the output interface when outbound
//     (for DirUnknown, whichever the caller gives). Names are matched, not
//     indexes: the caller binds the ruleset to the host's interfaces
//     (Ruleset.Bind) and binds again when they change. `on !eth0` matches
//     every other interface, and packets on none.
//   - antispoof for IFACES [inet|inet6]: pf's, expanded for each interface
//     into two block rules at its place in the file (see Antispoof):
//     packets from the interface's networks arriving on any interface but
//     it and lo, and packets from its own addresses arriving on any but
//     lo. The addresses are the interface's at the time of Bind,
//     link-local ones left out; with none (or no such interface) the rules
//     match nothing. Numbered like other rules, printed once in canonical
//     form.
//   - log: every packet the rule decides is logged (the daemon's pflog
//     capture and `statewall log`, replay's --log); a forwarded packet
//     once per evaluation whose rule logs. log (all), on a pass rule that
//     keeps state: also every later packet of the connection it creates.
//   - inet/inet6: the rule matches only IPv4 or only IPv6 packets. The
//     family is also implied by proto icmp (IPv4) and proto icmp6 (IPv6),
//     and by addresses when all of an endpoint's items are of one family.
//     A written address of the other family is an error. Items of the
//     other family that come from a $name are dropped, as pf does (so a
//     define can hold a host's IPv4 and IPv6 addresses); if that leaves no
//     positive item, it is an error.
//   - Sets of addresses or ports: a value is in the set when some positive
//     item holds it (or there are no positive items) and no negated item
//     holds it. So { 198.18.0.0/24, !198.18.0.3 } is the /24 but .3, and
//     { !a, !b } is "neither a nor b" (pf reads the latter as "not a or not
//     b", which matches everything). Lists nest and may contain $names;
//     !{ ... } negates every item and is an error if one is already negated.
//     `any` stands alone: it cannot be negated or listed.
//   - port needs a proto with ports (tcp, udp, sctp, udplite) earlier in the
//     rule, as in pf; flags needs proto tcp; icmp-type needs proto icmp or
//     icmp6.
//   - flags SET/MASK: (TCP flags & MASK) == SET. flags any: every TCP
//     packet.
//   - Stateful mode (MatchNew): a pass rule that keeps state and names no
//     flags opens a TCP connection only with a SYN, as pf's default
//     `flags S/SA` does. An ACK with no connection (a mid-stream pickup, an
//     ACK scan) is then not matched by it; write `flags any` (or A/A) to
//     let a rule pick connections up mid-stream. Stateless matching (Match)
//     has no such default: the rule matches every TCP packet.
//   - A rule with a port, flags or icmp-type condition (even a negated one)
//     matches only packets that carry a transport header: not a fragment
//     other than the first (its ports and flags are not in it), nor a
//     packet whose transport header did not decode (Packet.L4Off == 0).
//     Rules without such conditions match fragments by address and proto.
//   - no state: stateful mode creates no conntrack entry when this rule
//     passes a packet. keep state is the default and is not printed.
//   - label is carried to the verdict; it does not change matching.
//   - Tables: `table <NAME> { ... }` or `file "PATH"` (one address or
//     prefix a line, `#` comments; several file clauses add up; a bad line
//     is an error at PATH:LINE:COL). Unlike a define, a table is a run-time
//     object the caller makes (ParseOptions.Tables): the daemon's change
//     through `statewall table NAME add|delete|replace|flush` without a
//     reload, and a reload keeps a table's run-time content unless its
//     definition changed (then it starts from the new one). const: no
//     run-time change. A table no rule uses is not created unless it says
//     persist (as in pf; Lint warns).
//   - block return: the packet is dropped and answered (by the daemon;
//     replay shows the action and sends nothing): return, a TCP RST for TCP
//     and an ICMP/ICMPv6 unreachable otherwise; return-rst, a RST, TCP only;
//     return-icmp, an ICMP (IPv4) or ICMPv6 unreachable for every
//     protocol, with the codes given (default port-unr); return-icmp6,
//     ICMPv6 only. drop (the default) answers nothing.
//   - Stateful tracking options, pf's, on a pass rule that keeps state:
//     max N (states of the rule), max-src-nodes N (sources with states of
//     it), max-src-states N (states per source): a new connection beyond
//     them is blocked. max-src-conn N and max-src-conn-rate N/S count the
//     TCP connections of a source that completed their handshake
//     (simultaneous, and per S seconds as a moving average): the one that
//     passes a limit is killed, and with overload <T> its source goes into
//     table T, and with flush its states of this rule (global: all its
//     states) are killed. Source nodes are bounded by set limit src-nodes
//     and kept set timeout src.track after their last state. Stateless
//     matching (Match) has no states: the options do not apply there.
//   - include "PATH": PATH's statements, as if written in place (defines
//     and settings are shared); nested includes are allowed, loops are
//     errors, and errors name the included file.
//
// # Warnings
//
// Ruleset.Lint reports rules that parse but can never match where they
// run (`statewall check`, `run` and `reload` print them; `check --strict`
// makes them errors): in or out rules on hooks that never see that
// direction, `on` or antispoof for an interface the host does not have,
// antispoof for one with no addresses, an empty ruleset, and on the input
// and output hooks an IPv6 ruleset that blocks neighbour discovery.
//
// # Timeouts
//
// `set timeout NAME DURATION` sets one conntrack timeout (stateful mode);
// the ones not set keep the Linux kernel's defaults. The names follow the
// kernel's sysctls net.netfilter.nf_conntrack_<proto>_timeout_<state>,
// with a dot for the last underscore:
//
//	tcp.syn_sent 2m, tcp.syn_sent2 2m, tcp.syn_recv 1m, tcp.established 5d,
//	tcp.fin_wait 2m, tcp.close_wait 1m, tcp.last_ack 30s, tcp.time_wait 2m,
//	tcp.close 10s, tcp.max_retrans 5m, tcp.unacknowledged 5m
//	udp 30s          unreplied, or replied but not yet a stream
//	udp.stream 2m    an assured UDP (and UDP-Lite) flow
//	icmp 30s, icmpv6 30s
//	sctp.closed 10s, sctp.cookie_wait 3s, sctp.cookie_echoed 3s,
//	sctp.established 3m30s, sctp.shutdown_sent 3s, sctp.shutdown_recd 3s,
//	sctp.shutdown_ack_sent 3s, sctp.heartbeat_sent 30s
//	                 an SCTP association, by its conntrack state
//	gre 30s          GRE (and PPTP's enhanced GRE), unreplied
//	gre.stream 3m    GRE once a reply was seen (assured)
//	generic 10m      every other protocol
//
// Each may be set once. `statewall check` prints the ruleset with the
// timeouts it sets, sorted by name.
//
// # Errors
//
// Parse stops at the first error and returns it as *Error, printed as
// file:line:col: message, where col counts bytes from 1. Messages say what
// was expected and what was found, e.g.
//
//	host.rules:12:18: expected port or '{' after 'port', got "ssh2"
//
// # Limits
//
// Parse refuses a file, with an error at the place where it passes the
// limit, when
//   - it is larger than MaxFileSize (16 MiB);
//   - '{' and '!' nest more than MaxNesting (64) deep;
//   - it holds more than MaxRules (131,072) rules;
//   - one rule (its from and to addresses and ports together), one define
//     or 'set local' holds more than MaxRuleEntries (262,144) addresses and
//     ports, counted after $name expansion: { $a, $a } counts $a twice;
//   - the whole file holds more than MaxTotalEntries (1,048,576) of them
//     after expansion: each define's, and again each use's, so a define of
//     100,000 addresses used in four rules counts 500,000.
//
// So no file, however built, takes more than about a second and a few
// hundred MB to parse, or refuse: without the limits a few hundred bytes
// of defines that each double the one before expand without end. Lists
// longer than these belong in a table, not a define.
//
// # Canonical form
//
// Ruleset.String prints the settings the file wrote (timeouts sorted by
// name), then each rule on one line with defines expanded, names for
// protocols and ICMP types, numbers for ports, flags as SET/MASK,
// durations in their largest exact unit, and inet/inet6 only where nothing
// else implies the family. Parsing that text gives an equal Ruleset.
//
// # Matching
//
// Parse compiles every rule into flat integers, with single ranges inline
// and longer or negated lists as sorted range lists (crule), then builds an
// index: a table by direction, family and protocol, and under it a
// decision tree that splits on addresses, ports and ICMP type, stored flat
// with bucket hints on wide nodes (index.go). Match walks the tree to a
// short, ordered list of candidate rules and tests them in order, so
// first-match stays exact. On generated rulesets, 10,000 rules match in
// about 1.4 times the time of 10 (BenchmarkMatchScale: 23 ns and 16 ns);
// matchLinear, the plain scan, is kept as the reference the index is
// tested against. Building the tree sorts at most a few times as many
// ranges as the rules hold; where a ruleset built to defeat it would need
// more, the rest of the tree is left as plain lists, so matching stays
// exact and only gets slower.
package rules
